"""docs/hooks.md against the hooks: a section per hookspec with its exact signature, every member
of the protocols it registers, and an example that works through a real plugin load.

The hooks are read from ``genbench.hookspecs``; each example is the first python block of its
hook's section, written into a module under ``tmp_path`` and loaded through a hand-built entry
point, as an installed plugin would be.
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import math
import re
import textwrap
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench import hookspecs
from genbench.datasets import Dataset, load_dataset
from genbench.executors import ExecutorOptions, UnitFailure
from genbench.plugins import HOOKS, load_plugins
from genbench.testing import check_corruption, check_dataset, check_model

from measure_helpers import make_ctx, seeded_mlp

TESTS = Path(__file__).resolve().parent
HOOKS_PAGE = TESTS.parent / "docs" / "hooks.md"

#: (name, function) of every hookspec genbench declares, in definition order.
HOOKSPECS = [
    (name, function)
    for name, function in vars(hookspecs).items()
    if callable(function) and hasattr(function, f"{hookspecs.PROJECT}_spec")
]
HOOK_NAMES = [name for name, _ in HOOKSPECS]

#: The protocols a hook's section must at least document (a hook added later needs only the
#: protocols its own section names).
PROTOCOLS = {
    "register_datasets": ("genbench.datasets.base.DatasetFactory",),
    "register_corruptions": ("genbench.corruptions.Corruption",),
    "register_models": ("genbench.models.ModelFactory",),
    "register_measures": ("genbench.measures.base.Measure", "genbench.measures.base.RetrainingMeasure"),
    "register_executors": ("genbench.executors.Executor",),
}


def page_sections(text: str) -> dict[str, str]:
    """``## heading`` -> the section's text (up to the next ``## ``)."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def sections() -> dict[str, str]:
    return page_sections(HOOKS_PAGE.read_text(encoding="utf-8"))


def unescaped(section: str) -> str:
    """The section with markdown table escapes of ``|`` undone."""
    return section.replace("\\|", "|")


def example_code(section: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the section has no python example"
    return blocks[0]


def contract(section: str) -> list[type]:
    """The classes the section's ``Contract:`` line names, imported."""
    (line,) = [line for line in section.splitlines() if line.startswith("Contract: ")]
    classes = []
    for dotted in re.findall(r"`([\w.]+)`", line):
        module, _, name = dotted.rpartition(".")
        classes.append(getattr(importlib.import_module(module), name))
    return classes


def documented_forms(cls: type) -> list[str]:
    """How each public member the class itself defines must appear in its section: attributes as
    ``name: annotation``, methods as ``name(signature)``, properties by name."""
    forms = []
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if not name.startswith("_"):
            forms.append(f"`{name}: {annotation if isinstance(annotation, str) else annotation.__name__}`")
    for name, value in cls.__dict__.items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(value):
            forms.append(f"`{name}{inspect.signature(value)}`")
        elif isinstance(value, property):
            forms.append(f"`{name}`")
    return forms


@pytest.fixture(autouse=True)
def clean_plugin_state(plugin_sandbox):
    """Every test here loads plugins of its own (see conftest's plugin_sandbox)."""
    yield


@pytest.fixture
def load_example(tmp_path, monkeypatch, capsys):
    """Write the example of a hook's section into a module and load it as a plugin: returns the
    registry of the hook's kind and the one component the example registered."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def load(hook: str):
        module = f"gbdoc_{hook}_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{module}.py").write_text(example_code(sections()[hook]))
        point = EntryPoint(name=f"doc-{hook}", value=module, group="genbench")
        plugins = load_plugins(entry_points=[point])
        (record,) = [r for r in plugins.records if r.name == point.name]
        assert (record.status, record.error) == ("loaded", None)
        key = HOOKS[hook][0]
        assert list(record.registered) == [key] and len(record.registered[key]) == 1
        registry = plugins.registry(key)
        name = record.registered[key][0]
        assert registry.origin(name).plugin == point.name
        assert capsys.readouterr().err == ""
        return registry, registry.get(name)

    return load


# -- the page against the hookspecs ---------------------------------------------------------


def test_the_hooks_are_read_from_the_hookspecs():
    assert HOOK_NAMES == list(HOOKS)
    assert len(HOOK_NAMES) >= 5


def test_every_section_is_a_hook():
    hook_sections = [heading for heading in sections() if heading.startswith("register_")]
    assert hook_sections == HOOK_NAMES


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hookspec_has_a_section_with_its_exact_signature(name):
    section = sections().get(name)
    assert section is not None, f"docs/hooks.md has no section '## {name}'"
    lines = [line for line in section.splitlines() if line.startswith("Signature: ")]
    assert len(lines) == 1, f"{name}: one 'Signature: `...`' line expected"
    function = dict(HOOKSPECS)[name]
    assert lines[0] == f"Signature: `{name}{inspect.signature(function)}`"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_protocol_member_is_in_its_hooks_section(name):
    section = unescaped(sections()[name])
    classes = contract(section)
    assert classes, f"{name}: the section names no protocol"
    doc = inspect.getdoc(dict(HOOKSPECS)[name]) or ""
    assert classes[0].__name__ in doc, f"{name}: its hookspec does not name {classes[0].__name__}"
    named = {f"{cls.__module__}.{cls.__qualname__}" for cls in classes}
    assert set(PROTOCOLS.get(name, ())) <= named, f"{name}: the section's Contract line leaves out a protocol"
    for cls in classes:
        forms = documented_forms(cls)
        assert forms, f"{cls.__qualname__} defines no public member"
        missing = [form for form in forms if form not in section]
        assert not missing, f"{name}: docs/hooks.md does not document {cls.__qualname__}'s {', '.join(missing)}"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_example_implements_its_hook(name):
    tree = ast.parse(example_code(sections()[name]))
    hooks = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(decorator) == "genbench.hookimpl" for decorator in node.decorator_list)
    ]
    assert hooks == [name]


def test_every_hook_has_a_test():
    defined = set()
    for path in TESTS.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                defined.add(node.name)
    missing = [name for name in HOOK_NAMES if f"test_hook_{name}" not in defined]
    assert not missing, f"hooks without a test_hook_<name> test: {', '.join(missing)}"


def test_a_changed_protocol_fails_the_page():
    class Changed:
        name: str
        weight: float

        def build(self, input_shape: "tuple[int, ...]", depth: "int") -> "None": ...

    section = unescaped(sections()["register_models"])
    assert [form in section for form in documented_forms(Changed)] == [True, False, False]


# -- each hook's example, loaded as a plugin, works -------------------------------------------


def test_hook_register_datasets(load_example):
    registry, blobs = load_example("register_datasets")
    assert blobs.name == "blobs" and blobs.description
    data = load_dataset(blobs, blobs.Options(), None)
    assert isinstance(data, Dataset)
    assert (data.num_train, data.num_test, data.input_shape, data.num_classes) == (150, 50, (4,), 3)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert set(data.y_train.tolist()) <= {0, 1, 2}
    again = load_dataset(blobs, blobs.Options(), None)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    other = load_dataset(blobs, blobs.Options(seed=1), None)
    assert not torch.equal(other.x_train, data.x_train)
    small = load_dataset(blobs, blobs.Options(subset=20, features=6), None)
    assert (small.num_train, small.input_shape) == (20, (6,))
    # the blobs are separable: the nearest class mean classifies the test set well
    means = torch.stack([data.x_train[data.y_train == k].mean(0) for k in range(3)])
    nearest = torch.cdist(data.x_test, means).argmin(1)
    assert (nearest == data.y_test).double().mean() > 0.7
    check_dataset(blobs)


def test_hook_register_corruptions(load_example):
    registry, corruption = load_example("register_corruptions")
    assert corruption.name == "next-class" and corruption.uninformative_at_full is False
    generator = torch.Generator().manual_seed(0)
    data = Dataset(
        name="toy",
        x_train=torch.randn(300, 3, generator=generator),
        y_train=torch.randint(0, 4, (300,), generator=generator),
        x_test=torch.randn(100, 3, generator=generator),
        y_test=torch.randint(0, 4, (100,), generator=generator),
        num_classes=4,
    )
    options = corruption.Options()

    untouched = corruption.apply(data, 0.0, 7, options)
    assert torch.equal(untouched.y_train, data.y_train)
    everything = corruption.apply(data, 1.0, 7, options)
    assert torch.equal(everything.y_train, (data.y_train + 1) % 4)
    assert torch.equal(corruption.apply(data, 1.0, 7, corruption.Options(shift=2)).y_train, (data.y_train + 2) % 4)

    low, high = corruption.apply(data, 0.3, 7, options), corruption.apply(data, 0.6, 7, options)
    changed_low, changed_high = low.y_train != data.y_train, high.y_train != data.y_train
    assert 40 < int(changed_low.sum()) < 140 and int(changed_high.sum()) > int(changed_low.sum())
    assert bool((changed_high | ~changed_low).all()), "raising p must only add examples"
    assert torch.equal(corruption.apply(data, 0.3, 7, options).y_train, low.y_train)  # pure
    assert not torch.equal(corruption.apply(data, 0.3, 8, options).y_train, low.y_train)

    assert torch.equal(low.y_test, data.y_test)  # test labels clean by default
    assert low.x_train is data.x_train and low.x_test is data.x_test
    assert torch.equal(low.y_train_clean, data.y_train) and torch.equal(low.y_test_clean, data.y_test)
    noisy_test = corruption.apply(data, 0.6, 7, options, test_labels="corrupted")
    assert torch.equal(noisy_test.y_train, high.y_train)
    assert 20 < int((noisy_test.y_test != data.y_test).sum()) < 100
    assert torch.equal(noisy_test.y_test_clean, data.y_test)
    check_corruption(corruption)
    check_corruption(corruption, {"shift": 3})


def test_hook_register_models(load_example):
    registry, model = load_example("register_models")
    assert model.name == "tiny-mlp" and model.vmappable is True
    torch.manual_seed(0)
    for shape in [(1, 8, 8), (40,)]:
        network = model.build(shape, 10, model.Options())
        logits = network(torch.randn(5, *shape))
        assert logits.shape == (5, 10) and bool(torch.isfinite(logits).all())
    wide = model.build((4,), 3, model.Options(width=32))
    assert sum(p.numel() for p in wide.parameters()) == 4 * 32 + 32 + 32 * 3 + 3
    # trains: a few steps of SGD lower the loss on a fixed batch
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    optimizer = torch.optim.SGD(wide.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(wide(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    check_model(model)


def test_hook_register_measures(load_example):
    registry, measure = load_example("register_measures")
    assert (measure.name, measure.kind, measure.version, measure.requires) == ("weight-norm", "complexity", "1", frozenset())
    network = seeded_mlp([4, 5, 3], seed=0)
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    ctx = make_ctx(network, x, network(x).argmax(1).detach(), 3)
    before = copy.deepcopy(network.state_dict())
    parameters = np.concatenate([p.detach().double().numpy().ravel() for p in network.parameters()])

    value = measure.compute(ctx, measure.Options())
    assert math.isfinite(value)
    assert value == pytest.approx(float(np.sqrt((parameters**2).sum())), rel=1e-12)
    assert measure.compute(ctx, measure.Options(power=1.0)) == pytest.approx(float(np.abs(parameters).sum()), rel=1e-12)
    assert all(torch.equal(before[key], tensor) for key, tensor in network.state_dict().items())
    assert measure.Options.model_validate(measure.Options(power=3.0).model_dump(mode="json")).power == 3.0


def test_hook_register_executors(load_example, capsys):
    registry, executor = load_example("register_executors")
    assert executor.name == "timed" and executor.description

    def task(unit, emit, progress):
        if unit is None:
            raise ValueError("no unit")
        progress("started", unit)
        for value in range(unit):
            emit({"square": value * value})

    records, events = [], []
    with executor.open(ExecutorOptions()) as pool:
        assert pool.in_process is True and pool.workers_per_host == 1
        failures = pool.run(
            task,
            iter([("a", 2), ("broken", None), ("c", 3)]),
            lambda index, record: records.append((index, record["square"])),
            lambda kind, value: events.append((kind, value)),
        )
    assert records == [(0, 0), (0, 1), (2, 0), (2, 1), (2, 4)]
    assert events == [("started", 2), ("started", 3)]
    assert failures == [UnitFailure(1, "broken", "ValueError: no unit")]
    err = capsys.readouterr().err
    assert re.search(r"^unit a: \d+\.\d\d s$", err, re.M) and "unit broken:" in err


def test_examples_are_valid_python_as_written():
    for name in HOOK_NAMES:
        compile(textwrap.dedent(example_code(sections()[name])), f"hooks.md:{name}", "exec")
