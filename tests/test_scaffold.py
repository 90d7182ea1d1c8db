"""``genbench plugin new``: the package it writes, its bad-input lines, and (slow) every kind's
package installed in an isolated environment, passing its own tests and loaded by genbench."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import site
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genbench.cli.main import app
from genbench.errors import ExitCode, UsageError
from genbench.scaffold import KINDS, plugin_files, plugin_names, write_plugin

#: The conformance check each kind's generated tests call.
CHECKS = {"measure": "check_measure", "model": "check_model", "corruption": "check_corruption", "dataset": "check_dataset"}


def new_plugin(*arguments: str):
    return CliRunner().invoke(app, ["plugin", "new", *arguments])


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


@pytest.mark.parametrize("kind", KINDS)
def test_the_package_of_each_kind(kind, tmp_path):
    name = f"my-{kind}2"
    result = new_plugin(name, "--kind", kind, "--directory", str(tmp_path))
    assert result.exit_code == 0, result.output
    root = tmp_path / f"genbench-{name}"
    module = f"genbench_my_{kind}2"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == sorted(["README.md", "pyproject.toml", f"{module}/__init__.py", f"tests/test_my_{kind}2_conformance.py"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [root.name]  # no staging folder left behind
    for path in files:
        text = (root / path).read_text()
        assert "{{" not in text and "}}" not in text, f"{path} keeps a template marker"
        assert name in text or path.endswith("conformance.py")

    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == f"genbench-{name}"
    assert project["project"]["version"] == "0.1.0"
    assert "genbench" in project["project"]["dependencies"]
    assert project["project"]["entry-points"]["genbench"] == {name: module}
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"

    source = (root / module / "__init__.py").read_text()
    tree = ast.parse(source)
    assert ast.get_docstring(tree)
    hooks = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == f"register_{kind}s"]
    assert len(hooks) == 1 and ast.unparse(hooks[0].decorator_list[0]) == "genbench.hookimpl"
    assert [arg.arg for arg in hooks[0].args.args] == ["register"]
    component = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == plugin_names(name, kind).class_name)
    assert len((ast.get_docstring(component) or "").splitlines()) >= 2
    assert f'name: ClassVar[str] = "{name}"' in source

    tests = ast.parse((root / f"tests/test_my_{kind}2_conformance.py").read_text())
    imported = {alias.name for node in ast.walk(tests) if isinstance(node, ast.ImportFrom) and node.module == "genbench.testing" for alias in node.names}
    assert imported == {CHECKS[kind]}
    assert len([node for node in tests.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]) >= 3

    readme = (root / "README.md").read_text()
    assert 'pip install -e ".[test]"' in readme and "pytest" in readme and f"{module}/__init__.py" in readme


def test_the_names_a_plugin_name_implies():
    names = plugin_names("3d-edge-net", "model")
    assert (names.distribution, names.module, names.class_name, names.test_file) == (
        "genbench-3d-edge-net",
        "genbench_3d_edge_net",
        "Plugin3dEdgeNetModel",
        "tests/test_3d_edge_net_conformance.py",
    )
    assert plugin_names("edge-model", "model").class_name == "EdgeModel"
    assert plugin_names("edge-model", "dataset").class_name == "EdgeModelDataset"
    for kind in KINDS:
        for name in ("3d-edge-net", kind, f"edge-{kind}"):
            for path, text in plugin_files(name, kind).items():
                if path.endswith(".py"):
                    tree = ast.parse(text, path)  # valid Python, even for a name that starts with a digit
                    defined = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
                    imported = [alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names]
                    assert not set(defined) & set(imported), (name, kind, defined, imported)


def test_the_generated_module_registers_its_component(tmp_path, monkeypatch):
    root = write_plugin("hand-check", "model", tmp_path)
    spec = importlib.util.spec_from_file_location("genbench_hand_check", root / "genbench_hand_check" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "genbench_hand_check", module)  # as an import would (pydantic looks it up)
    spec.loader.exec_module(module)
    registered = []
    module.register_models(registered.append)
    [model] = registered
    assert model.name == "hand-check" and model.vmappable is True
    network = model.build((1, 8, 8), 10, model.Options())
    import torch

    assert network(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_the_directory_is_created_when_missing(tmp_path):
    result = new_plugin("nested", "--kind", "dataset", "-d", str(tmp_path / "a" / "b"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "b" / "genbench-nested" / "genbench_nested" / "__init__.py").is_file()
    assert "genbench-nested" in result.stdout


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("My-Measure", "lower-case letters and digits joined by '-'"),
        ("my_measure", "lower-case letters and digits joined by '-'"),
        ("my--measure", "lower-case letters and digits joined by '-'"),
        ("-measure", "lower-case letters and digits joined by '-'"),
        ("measure-", "lower-case letters and digits joined by '-'"),
        ("my measure", "lower-case letters and digits joined by '-'"),
        ("genbench-thing", "without the 'genbench-' prefix"),
    ],
)
def test_a_bad_name_is_one_line_and_exit_code_2(name, message, tmp_path):
    result = new_plugin("--directory", str(tmp_path), "--", name)
    assert result.exit_code == ExitCode.USAGE
    assert message in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_the_command_itself_answers_a_bad_name_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "from genbench.cli.main import main; main()", "plugin", "new", "Not_Valid"],
        cwd=tmp_path, capture_output=True, text=True, env=_environment(), timeout=120, check=False,
    )
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.strip() == (
        "error: plugin name 'Not_Valid' must be lower-case letters and digits joined by '-' (e.g. 'my-measure')"
    )
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_an_unknown_kind_is_one_line_and_exit_code_2(tmp_path):
    result = new_plugin("fine", "--kind", "executor", "--directory", str(tmp_path))
    assert result.exit_code == ExitCode.USAGE
    assert "unknown plugin kind 'executor'; choose one of measure, model, corruption, dataset" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_target_is_never_touched(tmp_path):
    target = tmp_path / "genbench-mine"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = new_plugin("mine", "--directory", str(tmp_path))
    assert result.exit_code == ExitCode.USAGE
    assert "already exists" in one_error_line(result)
    assert [p.name for p in target.iterdir()] == ["keep.txt"] and (target / "keep.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="already exists"):
        write_plugin("mine", "measure", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genbench-mine"]


def test_a_directory_that_is_a_file_is_one_line(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    result = new_plugin("fine", "--directory", str(afile))
    assert result.exit_code == ExitCode.USAGE
    assert "is a file" in one_error_line(result)


@pytest.mark.parametrize(("name", "kind"), [("mlp", "model"), ("labels", "corruption"), ("param-norm", "measure")])
def test_a_name_an_installed_component_has_is_refused(name, kind, tmp_path):
    result = new_plugin(name, "--kind", kind, "--directory", str(tmp_path))
    assert result.exit_code == ExitCode.USAGE
    assert f"a {kind} named '{name}' is already registered (by genbench" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- installed for real
def _isolated_python(root: Path) -> Path:
    """A fresh virtual environment that sees this test environment's packages (through a .pth
    file that adds its site folders) but installs into its own: the test environment is never
    changed."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    parents = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    lines = [f"import site; site.addsitedir({folder!r})" for folder in parents if os.path.isdir(folder)]
    (Path(purelib) / "genbench_test_environment.pth").write_text("\n".join(lines) + "\n")
    return python


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GENBENCH_LOAD_PLUGINS", "GENBENCH_RAISE_ERRORS", "PYTHONPATH")}
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """One isolated environment with a generated plugin of every kind installed (editable)."""
    for needed in ("pip", "setuptools"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed in the test environment")
    root = tmp_path_factory.mktemp("scaffold")
    packages = {}
    for kind in KINDS:
        name = f"scaffolded-{kind}"
        result = new_plugin(name, "--kind", kind, "--directory", str(root / "plugins"))
        assert result.exit_code == 0, result.output
        packages[kind] = (name, root / "plugins" / f"genbench-{name}")
    python = _isolated_python(root / "env")
    editable = [arg for _, folder in packages.values() for arg in ("-e", str(folder))]
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", *editable],
        capture_output=True, text=True, env=_environment(), check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return python, packages


def _genbench(python: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-c", "from genbench.cli.main import main; main()", *arguments],
        capture_output=True, text=True, env=_environment(), timeout=300, check=False,
    )


@pytest.mark.slow
def test_the_test_environment_is_unchanged(installed):
    from importlib import metadata

    distributions = {dist.metadata["Name"] for dist in metadata.distributions()}
    assert not {f"genbench-scaffolded-{kind}" for kind in KINDS} & distributions
    assert importlib.util.find_spec("genbench_scaffolded_measure") is None


@pytest.mark.slow
def test_genbench_loads_every_generated_plugin(installed):
    python, packages = installed
    result = _genbench(python, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    records = {record["name"]: record for record in json.loads(result.stdout)}
    for kind, (name, _) in packages.items():
        record = records[name]
        assert record["status"] == "loaded", record["error"]
        assert record["distribution"] == f"genbench-{name}" and record["version"] == "0.1.0"
        assert record["registered"] == {f"{kind}s": [name]}
        assert name not in result.stderr  # no warning line about it
    assert records["genbench"]["status"] == "loaded"  # the built-ins still load beside them


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_the_generated_tests_pass_in_the_isolated_environment(kind, installed):
    python, packages = installed
    _, folder = packages[kind]
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
        cwd=folder, capture_output=True, text=True, env=_environment(), timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout and "skipped" not in result.stdout
