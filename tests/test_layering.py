"""The package's layering, checked by import-linter's contracts in pyproject.toml: a backward
import (a measure importing the trainer, rendering importing scoring, …) fails here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path, env: dict | None = None, config: Path | None = None) -> subprocess.CompletedProcess:
    command = [str(LINT), "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)


def test_the_import_contracts_are_kept():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken", result.stdout), result.stdout[-1000:]


def renamed_copy(tmp_path: Path) -> tuple[Path, Path]:
    """The package copied as ``gbprobe`` (its own imports renamed) with the same contracts."""
    package = tmp_path / "gbprobe"
    shutil.copytree(ROOT / "genbench", package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in package.rglob("*.py"):
        path.write_text(re.sub(r"\bgenbench\b(?=[. ])", "gbprobe", path.read_text()))
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[importlinter]", "root_package = gbprobe"]
    for number, contract in enumerate(settings["contracts"]):
        lines.append(f"\n[importlinter:contract:{number}]")
        for key, value in contract.items():
            values = value if isinstance(value, list) else [value]
            rendered = "\n    ".join(str(v).replace("genbench", "gbprobe") for v in values)
            lines.append(f"{key} =\n    {rendered}" if isinstance(value, list) else f"{key} = {rendered}")
    config = tmp_path / ".importlinter"
    config.write_text("\n".join(lines) + "\n")
    return package, config


@pytest.mark.parametrize(
    "module, backward_import",
    [
        ("measures/margins.py", "from gbprobe.engine import Engine"),  # a measure reaching the engine
        ("measures/margins.py", "from gbprobe.measures.norms import ParamNorm"),  # one family importing another
        ("scoring/board.py", "from gbprobe.plugins import registry"),  # scoring asking the registry
        ("report/leaderboard.py", "from gbprobe.scoring import score_measures"),  # rendering that scores
        ("store.py", "from gbprobe.engine import Engine"),  # a lower layer importing a higher one
    ],
)
def test_a_backward_import_breaks_a_contract(tmp_path, module, backward_import):
    package, config = renamed_copy(tmp_path)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    assert lint(tmp_path, env, config).returncode == 0  # the renamed copy keeps every contract
    with open(package / module, "a") as handle:
        handle.write(f"\n{backward_import}  # the probe\n")
    result = lint(tmp_path, env, config)
    assert result.returncode != 0 and re.search(r"[1-9]\d* broken", result.stdout), result.stdout[-2000:]
