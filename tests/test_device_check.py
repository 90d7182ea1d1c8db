"""The prepared GPU check runs end to end on the CPU (``--smoke``), so that a GPU run cannot fail on
a typo: every section finishes, and each reports the numbers RESULTS.md quotes."""

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
    assert tests["tests"] >= 9 and tests["failures"] == tests["errors"] == tests["skipped"] == 0

    training = sections["training"]
    assert set(training["samples_per_second"]) == {"genbench", "plain"}
    assert all(rate > 0 for rate in training["samples_per_second"].values())
    assert training["speedup_over_plain"] == pytest.approx(
        training["samples_per_second"]["genbench"] / training["samples_per_second"]["plain"]
    )
    assert "aten::" in training["profile"]["genbench"]  # the profiler's table of operators

    conv = sections["conv"]
    assert {"eager", "eager_bf16_channels_last", "genbench_2_members"} <= set(conv["samples_per_second"])
    assert conv["over_eager"]["eager"] == 1.0 and all(rate > 0 for rate in conv["samples_per_second"].values())

    default = sections["default"]
    assert default["exit_codes"] == {"device": 0, "cpu": 0} and default["measures"] == 3
    # the same experiment on the same device in two processes: every tau equal
    assert set(default["tau_differences"]) == {"param-norm", "path-norm", "dist-from-init"}
    assert all(difference == 0.0 for difference in default["tau_differences"].values())
