"""The prepared GPU check runs end to end on the CPU (``--smoke``), so that a GPU run cannot fail on
a typo: a plumbing test — every section finishes and reports its numbers in the shape the GPU run
will (the CPU stands in for the device, so the comparisons themselves are trivially equal)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_device_check_smoke_run_finishes_every_section(tmp_path):
    out = tmp_path / "check"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "device_check.py"), str(out), "--smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=540, check=False,
    )
    report = json.loads((out / "device-check.json").read_text())
    sections = report["sections"]
    assert {name: section["status"] for name, section in sections.items()} == dict.fromkeys(
        ("tests", "training", "conv", "default"), "ok"
    ), done.stdout + done.stderr
    assert done.returncode == 0
    assert report["machine"]["device"] == "cpu" and report["smoke"] is True

    tests = sections["tests"]
    # test_gpu.py and test_no_sync.py, with the CPU standing in for CUDA: only the test that needs
    # CUDA's own synchronization debug mode skips
    assert tests["tests"] >= 10 and tests["failures"] == tests["errors"] == 0 and tests["skipped"] == 1

    training = sections["training"]
    assert training["rounds"] == ["genbench-first", "plain-first", "genbench-first"]
    for side in ("genbench", "plain"):
        rates = training["samples_per_second"][side]
        assert len(rates) == 3 and all(rate > 0 for rate in rates)
        assert training["median_samples_per_second"][side] == sorted(rates)[1]
        assert training["spread_samples_per_second"][side] == [min(rates), max(rates)]
    assert "aten::" in training["profile"]["genbench"]  # the profiler's table of operators
    assert isinstance(training["target_met"], bool)

    conv = sections["conv"]
    assert {"eager", "eager_bf16_channels_last", "genbench_2_members"} <= set(conv["samples_per_second"])
    assert all(rate > 0 for rate in conv["samples_per_second"].values())

    default = sections["default"]
    assert default["exit_codes"] == {"device": 0, "cpu": 0} and default["measures"] == 3
    # the same experiment on the same device in two processes: every tau equal, the target met
    assert set(default["tau_differences"]) == {"param-norm", "path-norm", "dist-from-init"}
    assert all(difference == 0.0 for difference in default["tau_differences"].values())
    assert default["target_met"] is True
