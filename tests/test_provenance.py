"""Reproducible provenance: every stored run records genbench's version and the origin (plugin,
distribution, version) of its dataset, model and corruption; every stored value the genbench that
computed it and the distribution and version that registered its measure. The leaderboard, the
store archive and ``genbench plugins --requirements`` carry them.

The test plugin is a module in a temporary folder with a hand-written ``.dist-info`` (distribution
``genbench-provenance-test`` 1.2.3), reached through that distribution's own entry point; nothing
is pip-installed."""

from __future__ import annotations

import io
import json
import sqlite3
import sys
import textwrap
import uuid
from importlib.metadata import EntryPoint, PathDistribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

import genbench
import genbench.plugins
from genbench.cli.info import component_rows, component_table, plugin_table, requirements
from genbench.cli.main import app
from genbench.errors import ExitCode
from genbench.plugins import load_plugins
from genbench.schemas import ComponentOrigin
from genbench.store import Store
from genbench.version import __version__

DISTRIBUTION, VERSION = "genbench-provenance-test", "1.2.3"

PLUGIN = '''
import contextlib
import pickle

import genbench
from genbench.models.mlp import MultilayerPerceptron


class ProvenanceMLP(MultilayerPerceptron):
    """The built-in MLP, registered by a test plugin."""

    name = "provenance-mlp"
    description = "the built-in MLP, registered by a test plugin"


class WeightCount:
    """How many weights the model has: a measure of a test plugin."""

    name = "provenance-count"
    kind = "complexity"
    version = "1"
    requires = frozenset()

    class Options(genbench.Options):
        pass

    def compute(self, ctx, options):
        return float(sum(p.numel() for p in ctx.model.parameters()))


class ShippingPool:
    """Runs each unit as a remote worker would: the unit and its records as bytes (as dask sends
    them), the measures looked up in the registry, the checkpoints those the unit carries."""

    in_process = False
    memory_limit = None
    workers_per_host = 1

    def run(self, task, units, on_record, on_progress):
        for index, (name, unit) in enumerate(units):
            records = []
            task(pickle.loads(pickle.dumps(unit)), records.append, on_progress)
            for record in records:
                on_record(index, pickle.loads(pickle.dumps(record)))
        return []


class ShippingExecutor:
    name = "provenance-shipping"
    description = "units shipped as bytes, run in this process"

    @contextlib.contextmanager
    def open(self, options):
        yield ShippingPool()


@genbench.hookimpl
def register_models(register):
    register(ProvenanceMLP())


@genbench.hookimpl
def register_measures(register):
    register(WeightCount())


@genbench.hookimpl
def register_executors(register):
    register(ShippingExecutor())
'''

SPEC = {
    "datasets": [{"name": "digits", "subset": 120}],
    "models": [{"name": "mlp", "hidden": [16]}, {"name": "provenance-mlp", "hidden": [16]}],
    "levels": [0.0, 1.0],
    "seeds": [0],
    "measures": ["params", "provenance-count"],
    "train": {"lr": 0.1, "schedule": "constant", "max_steps": 40},
}

GENBENCH = ComponentOrigin(plugin="genbench", distribution="genbench", version=__version__)
PLUGIN_ORIGIN = ComponentOrigin(plugin="provenance", distribution=DISTRIBUTION, version=VERSION)


def write_distribution(folder: Path) -> list[EntryPoint]:
    """The test plugin's module and its distribution's metadata in ``folder``; its entry points."""
    module = f"gbtest_provenance_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(textwrap.dedent(PLUGIN))
    info = folder / f"{DISTRIBUTION.replace('-', '_')}-{VERSION}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {VERSION}\n")
    (info / "entry_points.txt").write_text(f"[genbench]\nprovenance = {module}\n")
    return list(PathDistribution(info).entry_points)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The test plugin as the only installed one (beside genbench's built-ins)."""
    folder = tmp_path_factory.mktemp("plugin")
    before = set(sys.modules)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        points = write_distribution(folder)
        patch.setattr(genbench.plugins, "discover_entry_points", lambda: list(points))
        patch.delenv("GENBENCH_LOAD_PLUGINS", raising=False)
        genbench.plugins.reset_plugins()
        genbench.plugins.get_plugins()  # loaded now, with every plugin selected
        yield points
    genbench.plugins.reset_plugins()
    for name in set(sys.modules) - before:
        if name.startswith("gbtest_"):
            del sys.modules[name]


@pytest.fixture(autouse=True)
def _every_plugin(monkeypatch):
    """The test plugin is loaded: no GENBENCH_LOAD_PLUGINS selection."""
    monkeypatch.delenv("GENBENCH_LOAD_PLUGINS", raising=False)


@pytest.fixture(scope="module")
def store(plugin, tmp_path_factory):
    """Four tiny runs (genbench's MLP and the plugin's, at p_c 0 and 1), each with a value of
    genbench's params and of the plugin's provenance-count."""
    root = tmp_path_factory.mktemp("provenance") / "store"
    genbench.run(SPEC, store=root)
    return root


def model_of(store: Store, run_id: str) -> str:
    return store.run_spec(run_id).model.name


def test_a_stored_run_records_genbench_and_the_origin_of_its_components(store):
    opened = genbench.open_store(store, create=False)
    assert len(opened.run_ids()) == 4
    for run_id in opened.run_ids():
        result = opened.run_result(run_id)
        assert result.genbench_version == __version__
        model = PLUGIN_ORIGIN if model_of(opened, run_id) == "provenance-mlp" else GENBENCH
        assert result.components == {"dataset": GENBENCH, "model": model, "corruption": GENBENCH}
    frame = opened.runs().set_index("model")
    assert set(frame.loc["provenance-mlp(hidden=[16])", "model_origin"]) == {f"{DISTRIBUTION} {VERSION}"}
    assert set(frame.loc["mlp(hidden=[16])", "model_origin"]) == {f"genbench {__version__}"}
    assert set(frame["dataset_origin"]) == set(frame["corruption_origin"]) == {f"genbench {__version__}"}


def test_run_ids_stay_the_hash_of_the_spec(store):
    """Recording origins changes the result, never the run id (the hash of the spec alone)."""
    opened = genbench.open_store(store, create=False)
    expected = {run.run_id for run in genbench.api.resolve_runs(genbench.api.load_spec(SPEC))}
    assert set(opened.run_ids()) == expected
    for run_id in opened.run_ids():
        assert opened.run_spec(run_id).run_id == run_id == opened.run_result(run_id).run_id


def test_a_stored_value_records_genbench_and_its_measures_plugin(store):
    values = genbench.open_store(store, create=False).measure_values()
    assert len(values) == 8 and (values["status"] == "ok").all()
    assert set(values["genbench_version"]) == {__version__}
    by_measure = {m: part for m, part in values.groupby("measure")}
    assert set(zip(by_measure["provenance-count"]["plugin"], by_measure["provenance-count"]["plugin_version"])) == {
        (DISTRIBUTION, VERSION)
    }
    assert set(zip(by_measure["params"]["plugin"], by_measure["params"]["plugin_version"])) == {("genbench", __version__)}


def test_values_and_runs_from_a_worker_record_the_same(store, tmp_path):
    """A unit run as a remote worker runs it (shipped as bytes, the measures looked up in the
    worker's registry) stores what the local executor stores."""
    root = tmp_path / "shipped"
    genbench.run(SPEC, store=root, executor="provenance-shipping")
    local, shipped = genbench.open_store(store, create=False), genbench.open_store(root, create=False)
    assert sorted(shipped.run_ids()) == sorted(local.run_ids())
    for run_id in local.run_ids():
        assert shipped.run_result(run_id).components == local.run_result(run_id).components
        assert shipped.run_result(run_id).genbench_version == __version__
    columns = ["run_id", "measure", "genbench_version", "plugin", "plugin_version"]
    key = ["run_id", "measure"]
    ours = shipped.measure_values()[columns].sort_values(key).reset_index(drop=True)
    theirs = local.measure_values()[columns].sort_values(key).reset_index(drop=True)
    assert ours.equals(theirs)


def test_the_leaderboard_json_and_html_carry_the_provenance(store):
    result = CliRunner().invoke(app, ["leaderboard", "--store", str(store), "--format", "json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    provenance = printed["provenance"]
    assert provenance["genbench_version"] == __version__
    assert provenance["values_genbench_versions"] == [__version__]
    measures = {entry["measure"]: entry for entry in provenance["measures"]}
    assert measures == {
        "provenance-count": {"measure": "provenance-count", "plugin": DISTRIBUTION, "plugin_version": VERSION,
                             "genbench_version": __version__},
        "params": {"measure": "params", "plugin": "genbench", "plugin_version": __version__,
                   "genbench_version": __version__},
    }
    rows = {row["measure"]: row for row in printed["rows"]}
    assert (rows["provenance-count"]["plugin"], rows["provenance-count"]["plugin_version"]) == (DISTRIBUTION, VERSION)
    assert all(row["plugin"] is None for row in printed["rows"] if row["reference"])

    page = CliRunner().invoke(app, ["leaderboard", "--store", str(store), "--format", "html"])
    assert page.exit_code == 0, page.output
    assert f'data-genbench-version="{__version__}"' in page.stdout
    assert f'data-plugin="{DISTRIBUTION}" data-plugin-version="{VERSION}"' in page.stdout
    assert f"Provenance: scored with genbench {__version__}" in page.stdout
    assert f"{DISTRIBUTION} {VERSION} (provenance-count)" in page.stdout


def test_export_and_import_keep_the_provenance(store, tmp_path):
    archive = tmp_path / "zoo.tar.gz"
    genbench.api.export_store(archive, store=store)
    genbench.api.import_store(archive, into=tmp_path / "copy")
    original, copy = genbench.open_store(store, create=False), genbench.open_store(tmp_path / "copy", create=False)
    assert copy.raw_rows() == original.raw_rows()
    columns = ["run_id", "measure", "genbench_version", "plugin", "plugin_version"]
    assert copy.measure_values()[columns].equals(original.measure_values()[columns])
    assert {run_id: copy.run_result(run_id).components for run_id in copy.run_ids()} == {
        run_id: original.run_result(run_id).components for run_id in original.run_ids()
    }
    assert (copy.measure_values()["plugin"] == DISTRIBUTION).sum() == 4


def test_a_store_written_before_provenance_reads_it_as_not_recorded(store, tmp_path):
    """A store of the first layout (no provenance columns; results without their components)."""
    opened = genbench.open_store(store, create=False)
    run_id = opened.run_ids()[0]
    spec = opened.run_spec(run_id)
    result = json.loads(opened.run_result(run_id).model_dump_json())
    result.pop("components")
    older = tmp_path / "older"
    older.mkdir()
    connection = sqlite3.connect(older / "genbench.sqlite")
    connection.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, spec_json TEXT NOT NULL, result_json TEXT NOT NULL, "
        "created_at REAL NOT NULL);"
        "CREATE TABLE measure_values (run_id TEXT, measure TEXT, version TEXT, options_hash TEXT, "
        "options_json TEXT, value REAL, seconds REAL, error TEXT, created_at REAL, details_json TEXT, status TEXT, "
        "kind TEXT, default_options INTEGER, PRIMARY KEY (run_id, measure, version, options_hash));"
    )
    connection.execute("INSERT INTO runs VALUES (?, ?, ?, 0)", (run_id, spec.canonical(), json.dumps(result)))
    connection.execute(
        "INSERT INTO measure_values VALUES (?, 'params', '1', 'h', '{}', 3.0, 0.1, NULL, 0, NULL, 'ok', 'complexity', 1)",
        (run_id,),
    )
    connection.commit()
    connection.close()
    with Store(older, create=False) as reopened:
        assert reopened.run_result(run_id).components == {}
        runs = reopened.runs()
        assert runs.loc[0, "model_origin"] is None and runs.loc[0, "genbench_version"] == __version__
        values = reopened.measure_values()
        assert values.loc[0, "value"] == 3.0
        assert [values.loc[0, column] for column in ("genbench_version", "plugin", "plugin_version")] == [None] * 3
        board = genbench.leaderboard(reopened)
    params = board[board["measure"] == "params"].iloc[0]
    assert params["plugin"] is None and params["genbench_version"] is None


# ------------------------------------------------------------------------------- genbench plugins
def test_plugins_json_describes_every_plugin(plugin):
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    records = {record["name"]: record for record in json.loads(result.stdout)}
    assert set(records) == {"genbench", "provenance"}
    ours = records["provenance"]
    assert ours == {
        "name": "provenance", "distribution": DISTRIBUTION, "version": VERSION, "status": "loaded", "error": None,
        "registered": {"models": ["provenance-mlp"], "measures": ["provenance-count"],
                       "executors": ["provenance-shipping"]},
    }
    assert records["genbench"]["version"] == __version__ and "params" in records["genbench"]["registered"]["measures"]


def test_plugins_requirements_pin_genbench_and_every_loaded_distribution(plugin):
    result = CliRunner().invoke(app, ["plugins", "--requirements"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == installed_as("genbench", __version__)
    parsed = Requirement(lines[1])  # pip's requirement format
    assert (parsed.name, str(parsed.specifier)) == (DISTRIBUTION, f"=={VERSION}") and len(lines) == 2

    both = CliRunner().invoke(app, ["plugins", "--json", "--requirements"])
    assert both.exit_code == ExitCode.USAGE
    assert len(both.stderr.strip().splitlines()) == 1 and "cannot be combined" in both.stderr


def test_requirements_comment_out_plugins_that_did_not_load(plugin, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "gbtest_broken_provenance.py").write_text("raise ImportError('needs a missing package')\n")
    broken = EntryPoint(name="broken", value="gbtest_broken_provenance", group="genbench")  # no metadata either
    monkeypatch.setenv("GENBENCH_LOAD_PLUGINS", "broken")  # the test plugin is skipped
    lines = requirements(load_plugins(entry_points=[*plugin, broken]).records)
    capsys.readouterr()
    assert lines[0] == installed_as("genbench", __version__)
    comments = lines[1:]
    assert len(comments) == 2 and all(line.startswith("# ") for line in comments)
    assert any(line.startswith("# broken==unknown: plugin broken failed") for line in comments)
    assert any(line.startswith(f"# {DISTRIBUTION}=={VERSION}: plugin provenance skipped") for line in comments)


def installed_as(distribution: str, version: str) -> str:
    """The requirement line of an installed distribution, read from its direct_url.json here."""
    import importlib.metadata

    text = importlib.metadata.distribution(distribution).read_text("direct_url.json")
    if not text:
        return f"{distribution}=={version}"
    origin = json.loads(text)
    assert origin["dir_info"]["editable"] and origin["url"].startswith("file://")
    return f"-e {origin['url'][len('file://'):]}  # {distribution}=={version}"


@pytest.mark.parametrize("direct_url, expected", [
    (None, "gbtest-pinned==1.2"),
    ({"url": "file:///src/pinned", "dir_info": {"editable": True}}, "-e /src/pinned  # gbtest-pinned==1.2"),
    ({"url": "file:///src/pinned", "dir_info": {}}, "gbtest-pinned @ file:///src/pinned  # gbtest-pinned==1.2"),
    ({"url": "https://example.org/repo.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}},
     "gbtest-pinned @ git+https://example.org/repo.git@abc123  # gbtest-pinned==1.2"),
    ({"url": "https://example.org/pinned-1.2.tar.gz", "archive_info": {}},
     "gbtest-pinned @ https://example.org/pinned-1.2.tar.gz  # gbtest-pinned==1.2"),
])
def test_a_distribution_installed_from_elsewhere_is_pinned_where_it_came_from(tmp_path, monkeypatch, direct_url, expected):
    from genbench.cli.info import _pin

    info = tmp_path / "gbtest_pinned-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gbtest-pinned\nVersion: 1.2\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _pin("gbtest-pinned", "1.2") == expected


# ------------------------------------------------------------------------------- narrow terminals
def rendered(table, width: int) -> list[str]:
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(table)
    return buffer.getvalue().splitlines()


def cells_of(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("│┃ ").replace("┃", "│").split("│")]


@pytest.mark.parametrize("width", [60, 120])
def test_the_plugins_table_fits_the_terminal_with_every_name_whole(plugin, width):
    records = genbench.plugins.get_plugins().records
    table, dropped = plugin_table(records, width)
    lines = rendered(table, width)
    assert all(cell_len(line) <= width for line in lines)
    header = next(line for line in lines if "plugin" in line and "version" in line)
    assert {"plugin", "version", "status"} <= set(cells_of(header))
    for record in records:
        row = next(cells_of(line) for line in lines if cells_of(line)[0] == record.name)
        assert record.version in row and "loaded" in row
        if "distribution" not in dropped:
            assert record.distribution in row
    assert ("registered" in dropped) == (width == 60)
    if width == 120:  # room for what each registered: every name whole on a line
        text = "\n".join(lines)
        for name in ("provenance-mlp", "provenance-count", "pacbayes-mag-flatness", "log-prod-of-spec-over-margin"):
            assert name in text


def test_the_plugins_command_at_60_columns_lists_what_each_registered_below(plugin):
    result = CliRunner().invoke(app, ["plugins"], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(cell_len(line) <= 60 for line in lines)  # in terminal cells
    assert any(line.startswith("provenance registered models: provenance-mlp") for line in lines)
    words = {word.strip(",;") for line in lines for word in line.split()}
    assert {"log-prod-of-spec-over-margin", "pacbayes-mag-flatness", "provenance-count"} <= words


@pytest.mark.parametrize("width", [60, 120])
@pytest.mark.parametrize("kind", ["measures", "models", "datasets"])
def test_the_list_table_fits_the_terminal_with_every_name_whole(plugin, kind, width):
    rows = component_rows(kind, options=kind == "models")
    table, dropped = component_table(kind, rows, width)
    lines = rendered(table, width)
    assert all(cell_len(line) <= width for line in lines)
    first_cells = [cells_of(line)[0] for line in lines if line.startswith("│")]
    assert {row["name"] for row in rows} <= set(first_cells)  # each name whole, on its row's first line
    assert "name" not in dropped
    if kind == "models":  # options asked for: they stay, the description goes first when narrow
        assert "options" not in dropped and ("description" in dropped) == (width == 60)
    else:
        assert "description" not in dropped
    header = next(line for line in lines if line.startswith("┃") and "name" in line)
    assert ("description" in dropped) != ("description" in cells_of(header))  # headers whole too
    if width == 120 and kind == "measures":
        assert {"kind", "version"} <= set(cells_of(header))


def test_the_list_command_at_60_columns(plugin):
    result = CliRunner().invoke(app, ["list", "measures"], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(cell_len(line) <= 60 for line in lines)  # in terminal cells
    assert any(cells_of(line)[0] == "provenance-count" for line in lines if line.startswith("│"))
    assert "left out to fit 60 columns" in result.stdout
