"""The tutorials of CONTRIBUTING.md work as written.

Every python block of CONTRIBUTING.md whose first line is ``# genbench_<name>/__init__.py`` is a
plugin module: it is written into a package under ``tmp_path``, loaded through a hand-built entry
point (as an installed plugin would be), and its component is exercised, by hand and with
genbench's conformance kit where that is quick.

Every tutorial also gives a ``# tests/test_<name>_conformance.py`` block, the test file that
replaces the scaffold's; (slow) the scaffold of every tutorial is rendered, both of its files are
replaced by the tutorial's blocks, and the packages' tests run unchanged in one pytest process.
"""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
import tomllib
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import torch

import genbench
import genbench.plugins
from genbench.datasets import Dataset, load_dataset
from genbench.errors import SpecError
from genbench.plugins import HOOKS, load_plugins
from genbench.scaffold import KINDS, plugin_names, write_plugin
from genbench.schemas import TrainConfig

from measure_helpers import make_ctx, make_run, seeded_mlp

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"
MARKER = re.compile(r"^# (genbench_\w+)/__init__\.py\n")
TEST_MARKER = re.compile(r"^# (tests/test_\w+_conformance\.py)\n")
SCAFFOLD_COMMAND = re.compile(r"genbench plugin new ([a-z0-9-]+) --kind (\w+)\n")


def text() -> str:
    return CONTRIBUTING.read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", text(), re.S)


def plugin_blocks() -> dict[str, str]:
    """module name -> source of every block marked as a plugin module."""
    blocks = {}
    for block in python_blocks():
        match = MARKER.match(block)
        if match:
            assert match.group(1) not in blocks, f"two blocks of CONTRIBUTING.md define {match.group(1)}"
            blocks[match.group(1)] = block
    return blocks


def conformance_blocks() -> dict[str, str]:
    """test file path (``tests/test_<name>_conformance.py``) -> source of every block marked as one."""
    blocks = {}
    for block in python_blocks():
        match = TEST_MARKER.match(block)
        if match:
            assert match.group(1) not in blocks, f"two blocks of CONTRIBUTING.md define {match.group(1)}"
            blocks[match.group(1)] = block
    return blocks


def hook_of(source: str) -> str:
    tree = ast.parse(source)
    (hook,) = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(decorator) == "genbench.hookimpl" for decorator in node.decorator_list)
    ]
    return hook


def tutorial_sections() -> dict[str, str]:
    """``### heading`` -> its text, for the sections of "## Write a plugin"."""
    part = text().split("## Write a plugin", 1)[1].split("\n## ", 1)[0]
    out = {}
    for chunk in part.split("\n### ")[1:]:
        heading, _, body = chunk.partition("\n")
        out[heading.strip()] = body
    return out


def tutorials() -> list[tuple[str, str, str]]:
    """(heading, NAME, kind) of every tutorial: each section that starts with `genbench plugin new`."""
    found = []
    for heading, body in tutorial_sections().items():
        parts = body.split("```", 2)
        command = SCAFFOLD_COMMAND.fullmatch(parts[1].lstrip("\n")) if len(parts) > 2 else None
        if command:
            found.append((heading, *command.groups()))
    return found


def section_blocks(body: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", body, re.S)


@pytest.fixture(autouse=True)
def clean_plugin_state(plugin_sandbox):
    """Every test here loads plugins of its own (see conftest's plugin_sandbox)."""
    yield


@pytest.fixture
def load_tutorial(tmp_path, monkeypatch, capsys):
    """Load a tutorial's plugin module through an entry point; its registered component."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def load(module: str):
        source = plugin_blocks()[module]
        package = f"gbcontrib_{module}_{uuid.uuid4().hex[:8]}"
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(source)
        entry_name = module.removeprefix("genbench_").replace("_", "-")
        point = EntryPoint(name=entry_name, value=package, group="genbench")
        plugins = load_plugins(entry_points=[point])
        (record,) = [r for r in plugins.records if r.name == entry_name]
        assert (record.status, record.error) == ("loaded", None)
        key = HOOKS[hook_of(source)][0]
        (name,) = record.registered[key]
        registry = plugins.registry(key)
        assert registry.origin(name).plugin == entry_name
        assert capsys.readouterr().err == ""
        return registry.get(name)

    return load


# -- the page ---------------------------------------------------------------------------------


def test_every_plugin_block_has_its_check_here():
    assert set(plugin_blocks()) == set(CHECKS), (
        "every '# genbench_<name>/__init__.py' block of CONTRIBUTING.md needs a check in tests/test_contributing.py"
    )


def test_every_python_block_compiles():
    blocks = python_blocks()
    assert len(blocks) >= len(plugin_blocks()) + 1
    for index, block in enumerate(blocks):
        compile(block, f"CONTRIBUTING.md block {index}", "exec")


def test_every_toml_block_parses_and_names_its_module():
    blocks = re.findall(r"```toml\n(.*?)```", text(), re.S)
    assert blocks
    for block in blocks:
        entry_points = tomllib.loads(block)["project"]["entry-points"]["genbench"]
        for name, module in entry_points.items():
            assert plugin_names(name).module == module


def test_each_tutorial_starts_with_the_scaffold_command_of_its_kind():
    tutorials = tutorial_sections()
    seen = set()
    for heading, body in tutorials.items():
        modules = [m for m in plugin_blocks() if f"# {m}/__init__.py" in body]
        if not modules:
            continue
        first_block = body.split("```", 2)
        command = re.fullmatch(r"genbench plugin new ([a-z0-9-]+) --kind (\w+)\n", first_block[1].lstrip("\n"))
        assert command, f"tutorial '{heading}' does not start with `genbench plugin new NAME --kind KIND`"
        name, kind = command.groups()
        assert kind in KINDS
        (module,) = modules
        assert plugin_names(name, kind).module == module
        assert hook_of(plugin_blocks()[module]) == plugin_names(name, kind).hook
        seen.add(module)
    assert seen == set(plugin_blocks())


def test_every_tutorial_gives_both_files_and_says_to_replace_both():
    found = tutorials()
    assert len(found) == len(plugin_blocks()) == len(conformance_blocks()) == 5
    for heading, name, kind in found:
        names = plugin_names(name, kind)
        body = tutorial_sections()[heading]
        blocks = section_blocks(body)
        modules = [b for b in blocks if MARKER.match(b) and MARKER.match(b).group(1) == names.module]
        tests = [b for b in blocks if TEST_MARKER.match(b) and TEST_MARKER.match(b).group(1) == names.test_file]
        assert len(modules) == 1, f"tutorial '{heading}' needs one '# {names.module}/__init__.py' block"
        assert len(tests) == 1, f"tutorial '{heading}' needs one '# {names.test_file}' block"
        prose = " ".join(body.lower().split())
        assert "replace both of the scaffold's files" in prose, f"tutorial '{heading}' must say to replace both files"
        # the test file imports the tutorial's component from its module, never the scaffold's example
        imported, defined = imported_from(tests[0], names.module), defined_in(modules[0])
        assert imported and imported <= defined, f"tutorial '{heading}': its test imports {sorted(imported - defined)}"


def imported_from(source: str, module: str) -> set[str]:
    """The names ``source`` imports from ``module`` (``from module import ...``)."""
    return {
        alias.name
        for node in ast.parse(source).body
        if isinstance(node, ast.ImportFrom) and node.module == module
        for alias in node.names
    }


def defined_in(source: str) -> set[str]:
    """The classes and functions ``source`` defines at its top level."""
    return {node.name for node in ast.parse(source).body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}


def count_tests(source: str) -> int:
    return sum(isinstance(node, ast.FunctionDef) and node.name.startswith("test_") for node in ast.parse(source).body)


@pytest.mark.slow
def test_every_tutorial_replaces_the_scaffolds_files_and_its_tests_pass(tmp_path):
    """Render the scaffold of each tutorial, overwrite its module and its test file with the
    tutorial's blocks, and run the packages' tests unchanged: all of them in one pytest process,
    so that the conformance kit trains its check runs once."""
    folders, expected = [], 0
    for _, name, kind in tutorials():
        names = plugin_names(name, kind)
        folder = write_plugin(name, kind, tmp_path / "plugins")
        module_file, test_file = folder / names.module / "__init__.py", folder / names.test_file
        # the scaffold wrote both files the tutorial replaces, and the tutorial's module lacks what
        # the scaffold's test imports: the scaffold's test file cannot stay
        assert module_file.is_file() and test_file.is_file()
        assert not imported_from(test_file.read_text(encoding="utf-8"), names.module) <= defined_in(
            plugin_blocks()[names.module]
        )
        module_file.write_text(plugin_blocks()[names.module], encoding="utf-8")
        test_file.write_text(conformance_blocks()[names.test_file], encoding="utf-8")
        folders.append(folder)
        expected += count_tests(conformance_blocks()[names.test_file])
    assert len(folders) == 5 and expected == 11  # 2 + 2 + 3 + 2 + 2 test functions, by tutorial
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GENBENCH_RAISE_ERRORS", "GENBENCH_STRICT_PLUGINS")}
    env.update(
        PYTHONPATH=os.pathsep.join(str(folder) for folder in folders),
        GENBENCH_LOAD_PLUGINS="",
        GENBENCH_STORE=str(tmp_path / "store"),
        OMP_NUM_THREADS=str(torch.get_num_threads()),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(folder / "tests") for folder in folders)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    summary = result.stdout.strip().splitlines()[-1]
    assert re.match(rf"{expected} passed\b", summary) and "skipped" not in summary, output


def test_the_breakage_section_names_every_exit_code():
    section = text().split("## When your plugin breaks", 1)[1].split("\n## ", 1)[0]
    for code in genbench.errors.ExitCode:
        assert f"| {int(code)} | `{code.name}` |" in section
    for variable in ("GENBENCH_STRICT_PLUGINS", "GENBENCH_RAISE_ERRORS", "GENBENCH_LOAD_PLUGINS"):
        assert variable in section
    assert "genbench plugins" in section


# -- each tutorial's component works ------------------------------------------------------------


def check_my_measure(measure):
    network = seeded_mlp([4, 5, 3], seed=0)
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(2))
    ctx = make_ctx(network, x, network(x).argmax(1).detach(), 3)
    weights = [m.weight.detach().double().numpy() for m in network if isinstance(m, torch.nn.Linear)]
    expected = sum(float((w**2).sum()) for w in weights)
    estimate = measure.compute(ctx, measure.Options())
    assert isinstance(estimate, genbench.Estimate)
    assert estimate.value == pytest.approx(expected, rel=1e-12)
    assert estimate.details == {"layers": 2}
    assert measure.compute(ctx, measure.Options(squared=False)).value == pytest.approx(math.sqrt(expected), rel=1e-12)


def check_shuffled_fit(measure):
    assert isinstance(measure, genbench.RetrainingMeasure) and "retrain" in measure.requires
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(24, 4, generator=generator)
    y = torch.randint(0, 3, (24,), generator=generator)
    run = make_run([16], train=TrainConfig(lr=0.1, schedule="constant", max_steps=60), seed=5)
    network = seeded_mlp([4, 16, 3], seed=0)
    ctx = make_ctx(network, x, y, 3, run=run)
    options = measure.Options(seed=1)

    (job,) = measure.jobs(ctx, options)
    assert isinstance(job, genbench.RetrainJob) and job.seed == 5
    assert torch.equal(job.labels.sort().values, y.sort().values) and not torch.equal(job.labels, y)
    value = measure.compute(ctx, options)
    assert isinstance(value, float) and 0.0 <= value <= 1.0
    # the value is the training accuracy of the retrained network on the shuffled labels
    (retrained,) = ctx.retrainer.train([job])
    assert isinstance(retrained, genbench.Retrained) and retrained.job is job
    accuracy = (retrained.model(x).argmax(1) == job.labels).double().mean().item()
    assert value == pytest.approx(accuracy, abs=1e-12)
    assert measure.finish(ctx, options, [retrained]) == pytest.approx(value, abs=1e-12)


def check_seq_cnn(model):
    from genbench.testing import check_model

    torch.manual_seed(0)
    network = model.build((1, 40), 10, model.Options())
    logits = network(torch.randn(3, 1, 40))
    assert logits.shape == (3, 10) and bool(torch.isfinite(logits).all())
    narrow = model.build((2, 9), 4, model.Options(channels=3, kernel=3))
    assert narrow(torch.randn(2, 2, 9)).shape == (2, 4)
    assert sum(p.numel() for p in narrow.parameters()) == (2 * 3 * 3 + 3) + (3 * 3 * 3 + 3) + (3 * 4 + 4)
    with pytest.raises(SpecError, match="channels, length"):
        model.build((1, 8, 8), 10, model.Options())
    check_model(model)


def check_feature_dropout(corruption):
    from genbench.testing import check_corruption

    generator = torch.Generator().manual_seed(0)
    data = Dataset(
        name="toy",
        x_train=torch.randn(400, 1, 5, 5, generator=generator) + 3.0,  # no value is 0 by chance
        y_train=torch.randint(0, 3, (400,), generator=generator),
        x_test=torch.randn(100, 1, 5, 5, generator=generator) + 3.0,
        y_test=torch.randint(0, 3, (100,), generator=generator),
        num_classes=3,
    )
    options = corruption.Options(fraction=0.4)
    same = corruption.apply(data, 0.0, 1, options)
    assert same.x_train is data.x_train and same.x_test is data.x_test
    half = corruption.apply(data, 0.5, 1, options)
    full = corruption.apply(data, 1.0, 1, options)
    touched = (half.x_train == 0).flatten(1).any(1)
    assert 150 < int(touched.sum()) < 250
    assert bool(((full.x_train == 0) | ~(half.x_train == 0)).all())  # nested in p, the same masks
    assert 0.35 < (full.x_train == 0).double().mean().item() < 0.45
    assert torch.equal(half.x_train[~touched], data.x_train[~touched])
    assert torch.equal(half.y_train, data.y_train) and half.x_test is data.x_test
    with_test = corruption.apply(data, 1.0, 1, corruption.Options(apply_to_test=True))
    assert bool((with_test.x_test == 0).any()) and torch.equal(with_test.x_train, corruption.apply(data, 1.0, 1, corruption.Options()).x_train)
    check_corruption(corruption)
    check_corruption(corruption, {"fraction": 1.0, "apply_to_test": True})


def check_two_moons(dataset):
    from genbench.testing import check_dataset

    data = load_dataset(dataset, dataset.Options(), None)
    assert (data.num_train, data.num_test, data.input_shape, data.num_classes) == (750, 250, (2,), 2)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    mean = data.x_train.double().mean(0)
    assert np.allclose(mean.numpy(), 0.0, atol=1e-5)  # standardized with the training statistics
    again = load_dataset(dataset, dataset.Options(), None)
    assert torch.equal(again.x_test, data.x_test)
    small = load_dataset(dataset, dataset.Options(subset=100, examples=400), None)
    assert (small.num_train, small.num_test) == (100, 100)
    check_dataset(dataset)
    check_dataset(dataset, {"noise": 0.0, "examples": 200})


CHECKS = {
    "genbench_my_measure": check_my_measure,
    "genbench_shuffled_fit": check_shuffled_fit,
    "genbench_seq_cnn": check_seq_cnn,
    "genbench_feature_dropout": check_feature_dropout,
    "genbench_two_moons": check_two_moons,
}


@pytest.mark.parametrize("module", sorted(CHECKS))
def test_the_tutorial_plugin_loads_and_works(module, load_tutorial):
    CHECKS[module](load_tutorial(module))
