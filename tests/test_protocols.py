"""Components are checked against their kind's protocol when a plugin registers them.

A malformed component costs one warning line naming the plugin, its distribution, the component
and the broken rule, and is not registered; the plugin's other components are. The protocols the
registry checks agree with the typing protocols and with the hookspecs' docstrings.
"""

from __future__ import annotations

import inspect
import textwrap
import typing
import uuid
from importlib.metadata import EntryPoint

import pytest

import genbench.plugins
from genbench import hookspecs
from genbench.errors import PluginError
from genbench.plugins import HOOKS, load_plugins
from genbench.protocols import PROTOCOLS, problems

PLUGIN = '''
import contextlib
import genbench
from torch import nn


class GoodMeasure:
    """A measure that keeps the protocol."""
    name = "{prefix}-good"
    kind = "complexity"
    version = "1"
    requires = frozenset()
    Options = genbench.Options

    def compute(self, ctx, options):
        return 1.0


{component}


{hooks}'''

GOOD_HOOK = """
@genbench.hookimpl
def register_measures(register):
    register(GoodMeasure())
"""

BROKEN_HOOK = """
@genbench.hookimpl
def register_{hook}(register):
    register(Broken())
"""

BOTH_HOOK = """
@genbench.hookimpl
def register_measures(register):
    register(Broken())
    register(GoodMeasure())
"""

BASE = {
    "measures": '''
class Broken:
    """."""
    name = "{prefix}-broken"
    kind = "complexity"
    version = "1"
    requires = frozenset()
    Options = genbench.Options

    def compute(self, ctx, options):
        return 1.0
''',
    "corruptions": '''
class Broken:
    name = "{prefix}-broken"
    description = "a corruption"
    Options = genbench.Options

    def apply(self, dataset, level, seed, options, test_labels="clean"):
        return dataset
''',
    "models": '''
class Broken:
    name = "{prefix}-broken"
    description = "a model"
    Options = genbench.Options
    vmappable = True

    def build(self, input_shape, num_classes, options):
        return nn.Linear(1, num_classes)
''',
    "datasets": '''
class Broken:
    name = "{prefix}-broken"
    description = "a dataset"
    Options = genbench.Options

    def load(self, options, data_dir):
        raise NotImplementedError
''',
    "executors": '''
class Broken:
    name = "{prefix}-broken"
    description = "an executor"

    def open(self, options):
        return contextlib.nullcontext(None)
''',
}

#: (case, registry key, replacement of one line of the base component, expected words in the line)
CASES = [
    ("compute-without-options", "measures", ("def compute(self, ctx, options):", "def compute(self, ctx):"),
     "its compute cannot be called as compute(ctx, options): too many positional arguments"),
    ("no-compute", "measures", ("def compute(self, ctx, options):", "def calculate(self, ctx, options):"),
     "it has no method compute(ctx, options)"),
    ("bad-kind", "measures", ('kind = "complexity"', 'kind = "complex"'),
     "its kind must be one of 'complexity', 'capability', not 'complex'"),
    ("unknown-requirement", "measures", ("requires = frozenset()", 'requires = frozenset({"gpu"})'),
     "its requires must be a set within {init_weights, retrain, train_data, training_log}"),
    ("requires-a-list", "measures", ("requires = frozenset()", 'requires = ["train_data"]'),
     "its requires must be a set within"),
    ("no-version", "measures", ('version = "1"', 'version = ""'), "its version must be a non-empty string"),
    ("jobs-without-finish", "measures",
     ("def compute(self, ctx, options):", "def jobs(self, ctx, options):\n        return []\n\n    def compute(self, ctx, options):"),
     "it has no method finish(ctx, options, networks)"),
    ("retraining-without-retrain", "measures",
     ("def compute(self, ctx, options):", "def jobs(self, ctx, options):\n        return []\n\n    def finish(self, ctx, options, networks):\n        return 1.0\n\n    def compute(self, ctx, options):"),
     "it retrains (jobs and finish) but its requires lacks 'retrain'"),
    ("name-with-capitals", "measures", ('name = "{prefix}-broken"', 'name = "{prefix}-Broken"'),
     "its name must be lower-case letters and digits in words joined by '-'"),
    ("apply-without-test-labels", "corruptions",
     ('def apply(self, dataset, level, seed, options, test_labels="clean"):', "def apply(self, dataset, level, seed, options):"),
     "its apply cannot be called as apply(dataset, level, seed, options, test_labels): too many positional arguments"),
    ("options-a-dict", "corruptions", ("Options = genbench.Options", "Options = dict"),
     "its Options must be a subclass of genbench.Options, not <class 'dict'>"),
    ("uninformative-a-string", "corruptions", ("Options = genbench.Options", 'Options = genbench.Options\n    uninformative_at_full = "yes"'),
     "its uninformative_at_full must be a bool, not 'yes'"),
    ("build-without-options", "models", ("def build(self, input_shape, num_classes, options):", "def build(self, input_shape, num_classes):"),
     "its build cannot be called as build(input_shape, num_classes, options)"),
    ("no-vmappable", "models", ("vmappable = True", "pass"), "it has no vmappable (it must be a bool)"),
    ("closed-form-without-fit", "models", ("vmappable = True", "vmappable = False\n    closed_form = True"),
     "it has no method fit(x_train, y_train, num_classes, options, seed)"),
    ("load-without-data-dir", "datasets", ("def load(self, options, data_dir):", "def load(self, options):"),
     "its load cannot be called as load(options, data_dir)"),
    ("no-description", "datasets", ('description = "a dataset"', 'description = ""'),
     "its description must be a one-line string, not ''"),
    ("executor-without-open", "executors", ("def open(self, options):", "def start(self, options):"),
     "it has no method open(options)"),
]


@pytest.fixture(autouse=True)
def clean_plugin_state(plugin_sandbox):
    """Every test here loads plugins of its own (see conftest's plugin_sandbox)."""
    yield


@pytest.fixture
def plugin_with(tmp_path, monkeypatch):
    """An entry point of a plugin registering a good measure and ``component`` through ``hook``."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(key: str, component: str, prefix: str) -> EntryPoint:
        module = f"gbproto_{uuid.uuid4().hex[:8]}"
        hooks = BOTH_HOOK if key == "measures" else GOOD_HOOK + BROKEN_HOOK.replace("{hook}", key)
        source = PLUGIN.replace("{hooks}", hooks).replace("{component}", textwrap.dedent(component)).replace("{prefix}", prefix)
        (tmp_path / f"{module}.py").write_text(source)
        return EntryPoint(name=prefix, value=module, group="genbench")

    return make


def test_every_base_component_keeps_its_protocol(plugin_with, capsys):
    for key, component in BASE.items():
        plugins = load_plugins(entry_points=[plugin_with(key, component, f"ok{key[:4]}")])
        assert f"ok{key[:4]}-broken" in plugins.registry(key)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("case, key, change, expected", CASES, ids=[case[0] for case in CASES])
def test_a_malformed_component_is_refused_in_one_line_naming_plugin_component_and_rule(
    plugin_with, capsys, case, key, change, expected
):
    old, new = change
    assert old in BASE[key]
    plugins = load_plugins(entry_points=[plugin_with(key, BASE[key].replace(old, new), "mal")])

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    noun = HOOKS[f"register_{key}"][1]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"warning: mal unknown registered {noun} 'mal-") and " is refused: " in lines[0]
    assert expected in lines[0]
    assert "mal-broken" not in plugins.registry(key)
    assert "mal-good" in plugins.registry("measures")  # the plugin's other components are kept
    (record,) = [record for record in plugins.records if record.name == "mal"]
    assert record.status == "loaded" and expected in record.error
    assert record.registered.get(key, []) == (["mal-good"] if key == "measures" else [])


@pytest.mark.parametrize("case, key, change, expected", CASES[:4:3], ids=[case[0] for case in CASES[:4:3]])
def test_a_malformed_component_is_an_error_in_strict_mode(plugin_with, monkeypatch, case, key, change, expected):
    monkeypatch.setenv("GENBENCH_STRICT_PLUGINS", "1")
    old, new = change
    with pytest.raises(PluginError, match="mal unknown registered .* is refused: ") as caught:
        load_plugins(entry_points=[plugin_with(key, BASE[key].replace(old, new), "mal")])
    assert expected in str(caught.value)


def test_several_problems_are_counted_after_the_first():
    class Bare:
        name = "bare"

    found = problems("measures", Bare())
    assert found[0] == "it has no kind (it must be one of 'complexity', 'capability')"
    assert len(found) == 5  # kind, version, requires, Options, compute


def test_extra_parameters_with_defaults_and_keyword_catch_alls_are_accepted():
    import genbench

    class Flexible:
        name, description, Options = "flexible", "a corruption", genbench.Options

        def apply(self, dataset, level, *rest, verbose=False, **extra):
            return dataset

    assert problems("corruptions", Flexible()) == []


# -- the three statements of each protocol agree -----------------------------------------


def _typing_protocols() -> dict[str, type]:
    from genbench.corruptions import Corruption
    from genbench.datasets import DatasetFactory
    from genbench.executors import Executor
    from genbench.measures import Measure
    from genbench.models import ModelFactory

    return {"datasets": DatasetFactory, "corruptions": Corruption, "models": ModelFactory, "measures": Measure, "executors": Executor}


def _parameters(function) -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(function).parameters if name != "self")


@pytest.mark.parametrize("key", sorted(PROTOCOLS))
def test_the_registry_protocol_matches_the_typing_protocol(key):
    typed = _typing_protocols()[key]
    protocol = PROTOCOLS[key]
    required = {attribute.name for attribute in protocol.attributes if not attribute.optional}
    assert set(typing.get_type_hints(typed)) == required
    methods = {name: member for name, member in vars(typed).items() if callable(member) and not name.startswith("_")}
    assert {name: _parameters(member) for name, member in methods.items()} == {
        method.name: method.parameters for method in protocol.methods
    }


def test_the_retraining_variant_matches_retraining_measure():
    from genbench.measures import RetrainingMeasure

    (_, methods), = PROTOCOLS["measures"].variants
    assert {method.name: method.parameters for method in methods} == {
        name: _parameters(getattr(RetrainingMeasure, name)) for name in ("compute", "jobs", "finish")
    }


def test_the_closed_form_variant_matches_the_builtin_closed_form_models():
    from genbench.models.kernel import KernelInterpolation

    (_, methods), = PROTOCOLS["models"].variants
    for method in methods:
        assert _parameters(getattr(KernelInterpolation, method.name)) == method.parameters


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_each_hookspec_docstring_states_its_protocol(hook):
    key = HOOKS[hook][0]
    doc = " ".join(inspect.getdoc(getattr(hookspecs, hook)).split())
    protocol = PROTOCOLS[key]
    for attribute in protocol.attributes:
        assert f"``{attribute.name}``" in doc, attribute.name
    for method in protocol.methods + tuple(m for _, variant in protocol.variants for m in variant):
        assert f"``{method.signature}``" in doc, method.signature


def test_every_registry_has_a_protocol():
    assert {key for key, _ in HOOKS.values()} == set(PROTOCOLS)


# -- calls into a component are guarded ---------------------------------------------------


@pytest.mark.parametrize("model, method", [("mlp", "build"), ("kernel", "fit")])
def test_an_exception_inside_a_model_is_one_line_naming_it_and_the_run(monkeypatch, tmp_path, model, method):
    from typer.testing import CliRunner

    from genbench.cli.main import app
    from genbench.plugins import registry

    factory = registry("models").get(model)

    def boom(*args, **kwargs):
        raise RuntimeError(f"boom in {method}")

    monkeypatch.setattr(type(factory), method, boom)
    store = tmp_path / "store"
    arguments = ["run", "--model", model, "--levels", "0.5", "--seeds", "0", "--store", str(store), "--no-evaluate", "--yes"]
    result = CliRunner().invoke(app, arguments)
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("training")]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 7, result.output
    assert any(f"model '{model}' (genbench" in line and "failed on run" in line and f"RuntimeError: boom in {method}" in line
               for line in lines), result.output


def test_a_name_clash_refuses_that_component_alone(plugin_with, capsys):
    clashing = BASE["measures"].replace('name = "{prefix}-broken"', 'name = "params"')  # a built-in's name
    plugins = load_plugins(entry_points=[plugin_with("measures", clashing, "dup")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "'params' is registered twice" in lines[0] and lines[0].endswith("it is refused")
    assert plugins.registry("measures").origin("params").plugin == "genbench"
    assert "dup-good" in plugins.registry("measures")  # registered after the clash
    (record,) = [record for record in plugins.records if record.name == "dup"]
    assert record.status == "loaded" and record.registered == {"measures": ["dup-good"]}


def test_a_class_registered_instead_of_an_instance_is_told_so():
    import genbench

    class AMeasure:
        name, kind, version, requires, Options = "a-measure", "complexity", "1", frozenset(), genbench.Options

        def compute(self, ctx, options):
            return 1.0

    assert problems("measures", AMeasure) == ["it is the class AMeasure; register an instance, AMeasure()"]
    assert problems("measures", AMeasure()) == []


def test_a_frozen_component_keeps_its_origin_by_name(plugin_with):
    frozen = '''
import dataclasses


@dataclasses.dataclass(frozen=True)
class Broken:
    """A frozen measure: it cannot be stamped with its origin."""
    name: str = "{prefix}-broken"
    kind: str = "complexity"
    version: str = "1"
    requires: frozenset = frozenset()
    Options: type = genbench.Options

    def compute(self, ctx, options):
        return 1.0
'''
    plugins = load_plugins(entry_points=[plugin_with("measures", frozen, "frz")])
    component = plugins.registry("measures").get("frz-broken")
    assert not hasattr(component, "origin")
    genbench.plugins._current = plugins  # the process-wide set origin_of reads
    assert genbench.plugins.origin_of("measures", component) == plugins.registry("measures").origin("frz-broken")
    assert genbench.plugins.origin_of("measures", type(component)()) is None  # an equal object, not the registered one
