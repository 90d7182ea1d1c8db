"""Plugin loading: entry points one at a time, failures isolated, names checked.

Every plugin here is a tiny module written into ``tmp_path`` and reached through a
hand-built ``importlib.metadata.EntryPoint``; nothing is pip-installed.
"""

from __future__ import annotations

import json
import math
import textwrap
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import genbench
import genbench.plugins
from genbench.errors import DuplicateNameError, PluginError, UnknownNameError
from genbench.measures import MeasureContext, TrainingLog
from genbench.plugins import load_plugins
from genbench.registry import Origin, Registry

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "genbench-param-norm"

GOOD_PLUGIN = '''
import genbench

class {cls}:
    """A fake measure from a test plugin."""
    name = "{measure}"
    kind = "complexity"
    version = "1"
    requires = frozenset()

    class Options(genbench.Options):
        pass

    def compute(self, ctx, options):
        return 1.0

@genbench.hookimpl
def register_measures(register):
    register({cls}())
'''

IMPORT_FAILS = '''
raise ImportError("this plugin needs a package that is not installed")
'''

HOOK_RAISES = '''
import genbench

@genbench.hookimpl
def register_measures(register):
    raise RuntimeError("boom in the hook")
'''

MISSPELLED_HOOK = '''
import genbench

@genbench.hookimpl
def register_measure(register):
    raise AssertionError("a hook genbench does not declare is never called")
'''


@pytest.fixture(autouse=True)
def clean_plugin_state(plugin_sandbox):
    """Every test here loads plugins of its own (see conftest's plugin_sandbox)."""
    yield


@pytest.fixture
def make_plugin(tmp_path, monkeypatch):
    """Write a plugin module into tmp_path; return an EntryPoint of group genbench to it."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(entry_name: str, source: str, **fields: str) -> EntryPoint:
        module = f"gbtest_{entry_name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source.format(**fields)))
        return EntryPoint(name=entry_name, value=module, group="genbench")

    return make


def good(make_plugin, entry_name: str, measure: str) -> EntryPoint:
    return make_plugin(entry_name, GOOD_PLUGIN, cls="FakeMeasure", measure=measure)


def record_of(plugins, name: str):
    (record,) = [r for r in plugins.records if r.name == name]
    return record


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


BUILTIN_MEASURES = {"params", "dist-from-init", "path-norm"}


# -- loading ---------------------------------------------------------------------------


def test_good_plugin_registers_its_measure_with_its_origin(make_plugin, capsys):
    plugins = load_plugins(entry_points=[good(make_plugin, "fake", "fake-measure")])
    measures = plugins.registry("measures")

    assert "fake-measure" in measures
    assert BUILTIN_MEASURES <= set(measures.names())
    origin = measures.origin("fake-measure")
    assert origin.plugin == "fake"
    assert measures.get("fake-measure").origin == origin  # the component is stamped too
    assert measures.origin("params") == record_of(plugins, "genbench").origin

    record = record_of(plugins, "fake")
    assert record.status == "loaded" and record.error is None
    assert record.registered == {"measures": ["fake-measure"]}
    assert record_of(plugins, "genbench").status == "loaded"
    assert capsys.readouterr().err == ""


def test_example_param_norm_plugin_through_an_entry_point(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN))
    point = EntryPoint(name="param-norm", value="genbench_param_norm", group="genbench")
    plugins = load_plugins(entry_points=[point])
    measures = plugins.registry("measures")

    assert record_of(plugins, "param-norm").status == "loaded"
    assert record_of(plugins, "param-norm").registered == {"measures": ["frobenius-norm"]}
    assert measures.origin("frobenius-norm").plugin == "param-norm"
    measure = measures.get("frobenius-norm")
    assert measure.kind == "complexity" and measure.requires == frozenset()
    assert measure.Options().squared is False

    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # ‖W₁‖² = 1+4+9+16 = 30
        model[0].bias.fill_(100.0)  # biases do not count
        model[2].weight.copy_(torch.tensor([[0.5, -1.5]]))  # ‖W₂‖² = 0.25+2.25 = 2.5
        model[2].bias.fill_(-7.0)
    ctx = MeasureContext(
        spec=None,  # type: ignore[arg-type]  # frobenius-norm looks at the model only
        model=model.eval(),
        initial_model=model,
        train_inputs=torch.zeros(4, 2),
        train_labels=torch.zeros(4, dtype=torch.long),
        num_classes=2,
        training_log=TrainingLog(status="converged", steps=0, epochs=0.0, steps_to_fit=None, train_accuracy=1.0, train_loss=0.0),
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )
    assert measure.compute(ctx, measure.Options(squared=True)) == pytest.approx(32.5)
    assert measure.compute(ctx, measure.Options()) == pytest.approx(math.sqrt(32.5))
    with pytest.raises(ValueError):  # pydantic: options are extra="forbid"
        measure.Options(sqaured=False)


def test_plugin_that_fails_to_import_costs_one_warning_line(make_plugin, capsys):
    broken = make_plugin("broken", IMPORT_FAILS)
    plugins = load_plugins(entry_points=[broken, good(make_plugin, "fine", "fine-measure")])

    lines = warning_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith("warning:") and "broken" in lines[0] and "ImportError" in lines[0]
    record = record_of(plugins, "broken")
    assert record.status == "failed" and "ImportError" in record.error and record.registered == {}
    measures = plugins.registry("measures")
    assert "fine-measure" in measures and BUILTIN_MEASURES <= set(measures.names())
    assert record_of(plugins, "fine").status == "loaded"


def test_strict_mode_reraises_an_import_failure(make_plugin, monkeypatch):
    monkeypatch.setenv("GENBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="broken") as caught:
        load_plugins(entry_points=[make_plugin("broken", IMPORT_FAILS)])
    assert isinstance(caught.value.__cause__, ImportError)


def test_plugin_whose_hook_raises_costs_one_warning_line(make_plugin, capsys):
    points = [good(make_plugin, "before", "before-measure"), make_plugin("raiser", HOOK_RAISES),
              good(make_plugin, "after", "after-measure")]
    plugins = load_plugins(entry_points=points)

    lines = warning_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "raiser" in lines[0] and "register_measures" in lines[0] and "boom in the hook" in lines[0]
    assert record_of(plugins, "raiser").status == "failed"
    measures = plugins.registry("measures")
    assert {"before-measure", "after-measure"} <= set(measures.names())
    assert BUILTIN_MEASURES <= set(measures.names())
    assert record_of(plugins, "before").status == record_of(plugins, "after").status == "loaded"


def test_a_misspelled_hook_costs_one_warning_line_naming_it(make_plugin, capsys):
    plugins = load_plugins(entry_points=[make_plugin("typo", MISSPELLED_HOOK), good(make_plugin, "fine", "fine-measure")])

    lines = warning_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "plugin typo" in lines[0] and "implements register_measure, which is not a genbench hook" in lines[0]
    assert "did you mean register_measures?" in lines[0]
    record = record_of(plugins, "typo")
    assert record.registered == {} and "register_measure" in record.error
    assert "fine-measure" in plugins.registry("measures")


def test_a_misspelled_hook_is_an_error_in_strict_mode(make_plugin, monkeypatch):
    monkeypatch.setenv("GENBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin typo .*implements register_measure, which is not a genbench hook"):
        load_plugins(entry_points=[make_plugin("typo", MISSPELLED_HOOK)])


def test_strict_mode_reraises_a_hook_failure(make_plugin, monkeypatch):
    monkeypatch.setenv("GENBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="raiser.*register_measures.*boom in the hook"):
        load_plugins(entry_points=[make_plugin("raiser", HOOK_RAISES)])


def test_duplicate_name_names_both_origins_and_the_builtin_stays(make_plugin, capsys):
    plugins = load_plugins(entry_points=[good(make_plugin, "dupe", "params")])

    builtin, plugin = record_of(plugins, "genbench"), record_of(plugins, "dupe")
    lines = warning_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "'params'" in lines[0] and str(builtin.origin) in lines[0] and str(plugin.origin) in lines[0]
    assert plugin.status == "failed" and str(builtin.origin) in plugin.error and "dupe" in plugin.error
    measures = plugins.registry("measures")
    assert measures.origin("params") == builtin.origin
    assert type(measures.get("params")).__module__.startswith("genbench.")


def test_duplicate_name_in_strict_mode_raises_naming_both_origins(make_plugin, monkeypatch):
    monkeypatch.setenv("GENBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(DuplicateNameError) as caught:
        load_plugins(entry_points=[good(make_plugin, "dupe", "params")])
    message = str(caught.value)
    assert str(Origin("genbench", "genbench", genbench.__version__)) in message
    assert str(Origin("dupe", "dupe", "unknown")) in message and "'params'" in message


def test_a_duplicate_with_trylast_still_loses_to_the_builtin(make_plugin, capsys):
    # pluggy puts trylast implementations before the built-ins' in its list; the
    # built-ins must still register first, so the plugin is the one that fails.
    source = GOOD_PLUGIN.replace("@genbench.hookimpl", "@genbench.hookimpl(trylast=True)")
    plugins = load_plugins(entry_points=[make_plugin("late", source, cls="Late", measure="params")])

    assert record_of(plugins, "late").status == "failed"
    assert record_of(plugins, "genbench").status == "loaded"
    assert plugins.registry("measures").origin("params").plugin == "genbench"
    assert len(warning_lines(capsys.readouterr().err)) == 1


def test_two_entry_points_with_one_name_keep_separate_records(make_plugin, capsys):
    first = good(make_plugin, "twin", "first-twin")
    second = good(make_plugin, "twin", "second-twin")
    plugins = load_plugins(entry_points=[first, second])

    twins = [r for r in plugins.records if r.name == "twin"]
    assert [r.status for r in twins] == ["loaded", "failed"]
    assert twins[0].registered == {"measures": ["first-twin"]}
    assert "second-twin" not in plugins.registry("measures")
    assert plugins.registry("measures").origin("first-twin") == twins[0].origin
    lines = warning_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "'twin' is already taken" in lines[0]


def test_an_entry_point_named_genbench_cannot_take_over_the_builtins(make_plugin, capsys):
    plugins = load_plugins(entry_points=[good(make_plugin, "genbench", "impostor")])
    impostor, builtin = [r for r in plugins.records if r.name == "genbench"][::-1]
    assert builtin.distribution == "genbench" and builtin.status == "loaded" and "params" in builtin.registered["measures"]
    assert impostor.status == "failed" and "impostor" not in plugins.registry("measures")
    assert len(warning_lines(capsys.readouterr().err)) == 1


# -- GENBENCH_LOAD_PLUGINS ---------------------------------------------------------------


@pytest.fixture
def two_plugins(make_plugin):
    return [good(make_plugin, "a", "measure-a"), good(make_plugin, "b", "measure-b")]


def test_load_plugins_unset_loads_all(two_plugins):
    plugins = load_plugins(entry_points=two_plugins)
    assert {"measure-a", "measure-b"} <= set(plugins.registry("measures").names())
    assert record_of(plugins, "a").status == record_of(plugins, "b").status == "loaded"


def test_load_plugins_empty_loads_none_but_the_builtins(two_plugins, monkeypatch):
    monkeypatch.setenv("GENBENCH_LOAD_PLUGINS", "")
    plugins = load_plugins(entry_points=two_plugins)
    names = set(plugins.registry("measures").names())
    assert not {"measure-a", "measure-b"} & names
    assert BUILTIN_MEASURES <= names
    assert record_of(plugins, "a").status == record_of(plugins, "b").status == "skipped"
    assert record_of(plugins, "genbench").status == "loaded"


def test_load_plugins_selects_by_name(two_plugins, monkeypatch):
    monkeypatch.setenv("GENBENCH_LOAD_PLUGINS", " a ")
    plugins = load_plugins(entry_points=two_plugins)
    names = set(plugins.registry("measures").names())
    assert "measure-a" in names and "measure-b" not in names
    assert record_of(plugins, "a").status == "loaded"
    assert record_of(plugins, "b").status == "skipped"


def test_load_plugins_naming_a_missing_plugin_warns_and_is_an_error_when_strict(two_plugins, monkeypatch, capsys):
    monkeypatch.setenv("GENBENCH_LOAD_PLUGINS", "a,nowhere")
    plugins = load_plugins(entry_points=two_plugins)
    assert record_of(plugins, "a").status == "loaded"
    assert "names no installed plugin: nowhere" in capsys.readouterr().err
    monkeypatch.setenv("GENBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="names no installed plugin: nowhere"):
        load_plugins(entry_points=two_plugins)


# -- Registry ----------------------------------------------------------------------------


def test_registry_duplicate_add_names_both_origins():
    registry: Registry[int] = Registry("measure")
    first, second = Origin("genbench", "genbench", "0.1.0"), Origin("foo", "genbench-foo", "0.3")
    registry.add("params", 1, first)
    with pytest.raises(DuplicateNameError) as caught:
        registry.add("params", 2, second)
    message = str(caught.value)
    assert "'params'" in message and "genbench 0.1.0" in message and "plugin foo (genbench-foo 0.3)" in message
    assert registry.get("params") == 1 and registry.origin("params") == first


def test_registry_unknown_name_suggests_and_lists():
    registry = load_plugins(entry_points=[]).registry("measures")
    with pytest.raises(UnknownNameError) as caught:
        registry.get("parms")
    message = str(caught.value)
    assert "did you mean 'params'" in message
    assert all(name in message for name in registry.names())
    with pytest.raises(UnknownNameError, match="available: none"):
        Registry("model").get("mlp")


# -- the command line --------------------------------------------------------------------


@pytest.fixture
def cli_with(monkeypatch):
    """Run the CLI with the given entry points as the installed plugins."""
    from genbench.cli.main import app

    def invoke(points: list[EntryPoint], *args: str):
        monkeypatch.setattr(genbench.plugins, "discover_entry_points", lambda: list(points))
        genbench.plugins.reset_plugins()
        return CliRunner().invoke(app, list(args))

    return invoke


def test_cli_plugins_json_lists_the_fake_plugin(cli_with, make_plugin):
    result = cli_with([good(make_plugin, "fake", "fake-measure")], "plugins", "--json")
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert records["fake"]["status"] == "loaded"
    assert records["fake"]["registered"] == {"measures": ["fake-measure"]}
    assert "params" in records["genbench"]["registered"]["measures"]


def test_cli_list_measures_shows_the_plugin_measure_and_origin(cli_with, make_plugin, monkeypatch):
    point = good(make_plugin, "fake", "fake-measure")
    result = cli_with([point], "list", "measures", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["fake-measure"]["origin"] == str(Origin("fake", "fake", "unknown"))  # no distribution metadata
    assert rows["params"]["origin"] == "genbench 0.1.0"

    from genbench.cli import common

    monkeypatch.setattr(common.stdout, "_width", 240)  # rich folds cells at the default 80 columns
    table = cli_with([point], "list", "measures")
    assert table.exit_code == 0, table.output
    assert "fake-measure" in table.stdout and "params" in table.stdout


def test_cli_list_unknown_kind_is_one_error_line(cli_with):
    result = cli_with([], "list", "nonsense")
    assert result.exit_code != 0
    lines = warning_lines(result.output)
    assert len(lines) == 1
    assert "nonsense" in lines[0] and "measures" in lines[0]


def test_an_exception_inside_a_corruption_is_one_line_naming_it_and_the_run(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from genbench.cli.main import app
    from genbench.plugins import registry as the_registry

    corruption = the_registry("corruptions").get("labels")

    def apply(*args, **kwargs):
        raise RuntimeError("boom in apply")

    monkeypatch.setattr(type(corruption), "apply", apply)
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["run", "--model", "mlp", "--levels", "0.5", "--seeds", "0", "--store", str(store)])
    assert result.exit_code == 7, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "corruption 'labels' (genbench" in lines[0] and "failed on run" in lines[0] and "RuntimeError: boom in apply" in lines[0]
    assert not store.exists()  # rejected before the store is made
