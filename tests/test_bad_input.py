"""Every user-facing error path of the ``genbench`` command, run as the real command in a
subprocess: exactly one non-empty line on stderr naming the problem, the documented exit code
(1 failure, 2 usage, 3 invalid spec, 4 unknown name, 5 store, 6 data, 7 plugin, 8 measure), no
traceback, a store that existed left byte-for-byte as it was and one that did not exist not
created. Also: ``--version``, ``--help`` and a rejected flag answer without importing torch."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import FAST_TRAIN
from genbench.errors import ExitCode

GENBENCH = Path(sys.executable).with_name("genbench")
#: Seconds one rejected command may take (it fails before anything trains).
TIMEOUT = 120

USAGE, SPEC, NAME = ExitCode.USAGE, ExitCode.INVALID_SPEC, ExitCode.UNKNOWN_NAME
STORE, DATA, PLUGIN = ExitCode.STORE_ERROR, ExitCode.DATA_ERROR, ExitCode.PLUGIN_ERROR

#: A plugin distribution (found through PYTHONPATH) whose module raises on import.
BROKEN_PLUGIN = {
    "plugins/gbbroken_plugin.py": 'raise RuntimeError("boom at import")\n',
    "plugins/gbbroken-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: gbbroken\nVersion: 0.1\n",
    "plugins/gbbroken-0.1.dist-info/entry_points.txt": "[genbench]\nbroken = gbbroken_plugin\n",
}
#: A plugin distribution that registers a model under a name genbench already has.
CLASHING_PLUGIN = {
    "plugins/gbclash_plugin.py": (
        "from genbench import hookimpl\n\n"
        "from genbench import Options\n\n"
        "class Clash:\n    name = 'mlp'\n    description = 'a model of the same name'\n    Options = Options\n"
        "    vmappable = True\n\n    def build(self, input_shape, num_classes, options):\n        raise NotImplementedError\n\n"
        "@hookimpl\ndef register_models(register):\n    register(Clash())\n"
    ),
    "plugins/gbclash-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: gbclash\nVersion: 0.1\n",
    "plugins/gbclash-0.1.dist-info/entry_points.txt": "[genbench]\nclash = gbclash_plugin\n",
}
#: A plugin distribution whose corruption's apply lacks the test_labels argument the engine passes.
MALFORMED_PLUGIN = {
    "plugins/gbmalformed_plugin.py": (
        "from genbench import Options, hookimpl\n\n"
        "class Flip:\n    name = 'flip'\n    description = 'a corruption'\n    Options = Options\n\n"
        "    def apply(self, dataset, level, seed, options):\n        return dataset\n\n"
        "@hookimpl\ndef register_corruptions(register):\n    register(Flip())\n"
    ),
    "plugins/gbmalformed-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: gbmalformed\nVersion: 0.1\n",
    "plugins/gbmalformed-0.1.dist-info/entry_points.txt": "[genbench]\nmalformed = gbmalformed_plugin\n",
}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class Case:
    """One rejected command. ``args`` and ``env`` values may name ``{in}`` (a folder holding
    ``files``, relative path → text or bytes) and ``{store}`` (the store path, also
    ``GENBENCH_STORE``). ``store`` is what lies at the store path: "none" (nothing, and nothing
    may be created), "trained" (a copy of a tiny trained store), "file" (a plain file),
    "corrupt" (a folder whose database is not sqlite) or "truncated" (the trained store with one
    checkpoint cut short); whatever it is must be byte-for-byte the same afterwards."""

    id: str
    args: tuple[str, ...]
    code: ExitCode
    message: str
    store: str = "none"
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def spec(id: str, toml: str, code: ExitCode, message: str, *flags: str, store: str = "trained") -> Case:
    """A ``genbench run SPEC.toml`` case whose spec file holds ``toml``."""
    return Case(id, ("run", "{in}/spec.toml", *flags), code, message, store, files={"spec.toml": toml})


CASES = [
    # ------------------------------------------------------------------ experiment files
    spec("toml-malformed", "levels = [0, \n", SPEC, "malformed TOML"),
    spec("toml-duplicate-key", "levels = [0.0]\nlevels = [1.0]\n", SPEC, "malformed TOML"),
    spec("spec-unknown-field", "levls = [0.0]\n", SPEC, "levls: unknown field"),
    spec("spec-unknown-train-field", "[train]\nlearning_rate = 0.1\n", SPEC, "train.learning_rate: unknown field"),
    spec("spec-unknown-grid-field", "[[grids]]\nmodel = ['mlp']\n", SPEC, "sub-grid 0: unknown field 'model'"),
    spec("spec-level-above-1", "levels = [0.0, 1.5]\n", SPEC, "p_c must be in [0, 1], got 1.5"),
    spec("spec-seed-1e23", f"seeds = [{10**23}]\n", SPEC, "seeds.0: Input should be less than 9223372036854775808"),
    spec("spec-seed-not-integer", "seeds = [1.5]\n", SPEC, "seeds.0"),
    spec("spec-levels-empty", "levels = []\n", SPEC, "levels: List should have at least 1 item"),
    spec("spec-seeds-empty", "seeds = []\n", SPEC, "seeds: List should have at least 1 item"),
    spec("spec-models-empty", "models = []\n", SPEC, "models: List should have at least 1 item"),
    spec("spec-levels-wrong-type", 'levels = "all"\n', SPEC, "levels: Input should be a valid list"),
    spec("spec-test-labels", 'test_labels = "dirty"\n', SPEC, "test_labels: Input should be 'clean' or 'corrupted'"),
    spec("spec-lr-negative", "[train]\nlr = -1\n", SPEC, "train.lr: Input should be greater than 0"),
    spec("spec-schedule-unknown", '[train]\nschedule = "cosine"\n', SPEC, "train.schedule"),
    spec("spec-unknown-dataset", 'datasets = ["digitz"]\n', NAME, "did you mean 'digits'"),
    spec("spec-unknown-measure", 'measures = ["radmacher"]\n', NAME, "did you mean 'rademacher'"),
    spec("spec-model-unknown-option", 'models = [{ name = "mlp", widht = 3 }]\n', SPEC,
         "invalid options for model 'mlp': widht: unknown field"),
    spec("spec-model-bad-option", 'models = [{ name = "mlp", hidden = "wide" }]\n', SPEC,
         "invalid options for model 'mlp': hidden"),
    spec("spec-dataset-bad-option", 'datasets = [{ name = "digits", subset = -5 }]\n', SPEC,
         "invalid options for dataset 'digits': subset"),
    spec("spec-corruption-bad-option", 'corruptions = [{ name = "gaussian", statistics = "median" }]\n', SPEC,
         "invalid options for corruption 'gaussian': statistics"),
    spec("spec-measure-bad-option", 'measures = [{ name = "cross-validation", evaluated_folds = 0 }]\n', SPEC,
         "invalid options for measure 'cross-validation': evaluated_folds"),
    spec("spec-not-utf8", b"\xff\xfe levels", SPEC, "cannot read experiment file"),
    spec("spec-200001-levels-without-yes",
         "levels = [" + ", ".join(repr(i / 200_000) for i in range(200_001)) + "]\n", USAGE,
         "spans 800,004 runs in 2 training groups (more than 10,000); pass --yes"),
    Case("spec-file-missing", ("run", "{in}/nope.toml"), SPEC, "experiment file not found"),
    Case("spec-file-is-a-folder", ("run", "{in}"), SPEC, "cannot read experiment file"),
    Case("evaluate-spec-invalid", ("evaluate", "--measure", "params", "{in}/spec.toml"), SPEC, "p_c must be in [0, 1]",
         "trained", files={"spec.toml": "levels = [2.0]\n"}),
    # ------------------------------------------------------------------ flags of run
    Case("level-flag-negative", ("run", "--levels", "-0.5"), SPEC, "p_c must be in [0, 1], got -0.5", "trained"),
    Case("seed-flag-negative", ("run", "--seeds", "-1"), SPEC, "seeds.0: Input should be greater than or equal to 0"),
    Case("seed-flag-1e23", ("run", "--seeds", str(10**23)), SPEC, "less than 9223372036854775808"),
    Case("seed-flag-not-integers", ("run", "--seeds", "a,b"), SPEC, "--seeds expects comma-separated integers"),
    Case("lr-flag-negative", ("run", "--lr", "0.1,-1"), SPEC, "invalid --lr value -1", "trained"),
    Case("batch-size-flag-text", ("run", "--batch-size", "a"), SPEC, "invalid --batch-size value"),
    Case("option-flag-malformed", ("run", "--model", "mlp", "--option", "hidden"), SPEC, "--option expects KEY=V1,V2"),
    Case("option-flag-model-lacks-it", ("run", "--model", "cnn", "--dropout", "0.1"), SPEC,
         "model 'cnn' has no option 'dropout'"),
    Case("model-cannot-take-the-data", ("run", "--dataset", "mnist1d", "--model", "small-alexnet", "--no-evaluate"),
         SPEC, "model 'small-alexnet' needs image inputs"),
    Case("device-unknown", ("run", "--device", "tpu", "--no-evaluate"), SPEC, "unknown device 'tpu'"),
    Case("run-format-html", ("run", "--format", "html"), USAGE, "--format must be one of table, markdown, csv, json"),
    Case("run-unknown-flag", ("run", "--no-such-flag"), USAGE, "No such option: --no-such-flag"),
    Case("run-executor-unknown", ("run", "--executor", "nope"), NAME, "unknown executor 'nope'", "trained"),
    Case("run-workers-without-dask", ("run", "--workers", "2", "--executor", "local"), USAGE,
         "--workers is an option of the dask executor"),
    Case("run-workers-zero", ("run", "--workers", "0"), USAGE, "Invalid value for '--workers'"),
    Case("run-scheduler-and-cluster", ("run", "--scheduler", "tcp://localhost:1", "--cluster", "{in}/c.toml"), USAGE,
         "give one of them"),
    # ------------------------------------------------------------------ names
    Case("model-unknown", ("run", "--model", "mlpp"), NAME, "did you mean 'mlp'"),
    Case("corruption-unknown", ("run", "--corruption", "label"), NAME, "unknown corruption 'label'"),
    Case("measure-unknown", ("run", "--measure", "radmacher"), NAME, "did you mean 'rademacher'"),
    Case("evaluate-measure-unknown", ("evaluate", "--measure", "radmacher"), NAME, "did you mean 'rademacher'", "trained"),
    Case("evaluate-executor-unknown", ("evaluate", "--measure", "params", "--executor", "nope"), NAME,
         "unknown executor 'nope'", "trained"),
    Case("list-kind-unknown", ("list", "widgets"), NAME, "unknown kind 'widgets'"),
    Case("download-unknown", ("data", "download", "imagenet"), NAME, "nothing to download for 'imagenet'"),
    Case("report-unknown", ("report", "zhang2016"), NAME, "did you mean 'zhang2017'"),
    Case("show-unknown-run", ("show", "abcdef"), NAME, "no run 'abcdef' in store", "trained"),
    Case("show-prefix-too-short", ("show", "abc"), NAME, "needs at least 6 characters", "trained"),
    Case("runs-where-unknown-column", ("runs", "--where", "colour=red"), NAME, "unknown --where column 'colour'", "trained"),
    # ------------------------------------------------------------------ flags of the readers
    Case("leaderboard-format-xml", ("leaderboard", "--format", "xml"), USAGE, "--format must be one of"),
    Case("leaderboard-sort-unknown", ("leaderboard", "--sort", "bogus"), USAGE, "--sort must be one of", "trained"),
    Case("leaderboard-by-unknown", ("leaderboard", "--by", "colour"), USAGE, "--by must be one of", "trained"),
    Case("leaderboard-bootstrap-text", ("leaderboard", "--bootstrap", "abc"), USAGE, "Invalid value for '--bootstrap'"),
    Case("leaderboard-bootstrap-negative", ("leaderboard", "--bootstrap", "-1"), USAGE,
         "Invalid value for '--bootstrap'"),
    Case("leaderboard-where-no-operator", ("leaderboard", "--where", "level"), SPEC, "--where expects COLUMN=VALUE",
         "trained"),
    Case("leaderboard-where-not-a-number", ("leaderboard", "--where", "level<=abc"), SPEC, "expects one number",
         "trained"),
    Case("runs-where-no-operator", ("runs", "--where", "level"), SPEC, "--where expects COLUMN=VALUE"),
    Case("runs-where-text-compared", ("runs", "--where", "model>mlp"), SPEC, "expects one number"),
    Case("runs-format-html", ("runs", "--format", "html"), USAGE, "--format must be one of"),
    Case("show-format-csv", ("show", "abcdef", "-f", "csv"), USAGE, "--format must be one of table, json", "trained"),
    Case("show-run-id-missing", ("show",), USAGE, "Missing argument"),
    Case("evaluate-measure-missing", ("evaluate",), USAGE, "Missing option '--measure'"),
    Case("report-format-pdf", ("report", "--format", "pdf"), USAGE, "--format must be one of html, markdown"),
    # ------------------------------------------------------------------ data folders
    Case("cifar10-data-dir-missing", ("run", "--dataset", "cifar10", "--data-dir", "{in}/missing", "--no-evaluate"),
         DATA, "CIFAR-10 file not found"),
    Case("cifar10-files-absent", ("run", "--dataset", "cifar10", "--data-dir", "{in}", "--no-evaluate"), DATA,
         "genbench data download cifar10", "trained", files={"cifar-10-batches-bin/README": "nothing here\n"}),
    Case("cifar10-file-truncated", ("run", "--dataset", "cifar10", "--no-evaluate"), DATA, "data_batch_1.bin is truncated",
         files={f"cifar-10-batches-bin/{name}": b"x" for name in (
             "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin",
             "test_batch.bin")},
         env={"GENBENCH_DATA": "{in}"}),
    Case("mnist-files-absent", ("run", "--dataset", "mnist", "--data-dir", "{in}", "--no-evaluate"), DATA,
         "IDX file not found"),
    Case("mnist-file-truncated", ("run", "--dataset", "mnist", "--data-dir", "{in}", "--no-evaluate"), DATA,
         "train-images-idx3-ubyte is truncated", "trained", files={f"mnist/{name}": b"\x00\x00\x08" for name in IDX_FILES}),
    Case("fashion-mnist-files-absent", ("run", "--dataset", "fashion-mnist", "--data-dir", "{in}", "--no-evaluate"),
         DATA, "genbench data download fashion-mnist"),
    # ------------------------------------------------------------------ the store
    Case("leaderboard-no-store", ("leaderboard",), STORE, "no genbench store at"),
    Case("evaluate-no-store", ("evaluate", "--measure", "params"), STORE, "no genbench store at"),
    Case("runs-no-store", ("runs",), STORE, "no genbench store at"),
    Case("show-no-store", ("show", "abcdef"), STORE, "no genbench store at"),
    Case("report-no-store", ("report", "--out", "{in}/report"), STORE, "no genbench store at"),
    Case("store-check-no-store", ("store", "check"), STORE, "no genbench store at"),
    Case("leaderboard-store-is-a-file", ("leaderboard",), STORE, "exists and is not a folder", "file"),
    Case("run-store-is-a-file", ("run", "--levels", "0", "--seeds", "0", "--model", "mlp", "--no-evaluate"), STORE,
         "exists and is not a folder", "file"),
    Case("leaderboard-store-corrupt", ("leaderboard",), STORE, "file is not a database", "corrupt"),
    Case("runs-store-corrupt", ("runs",), STORE, "file is not a database", "corrupt"),
    Case("run-store-corrupt", ("run", "--levels", "0", "--seeds", "0", "--model", "mlp", "--no-evaluate"), STORE,
         "file is not a database", "corrupt"),
    Case("store-check-truncated-checkpoint", ("store", "check"), STORE, "1 damaged runs", "truncated"),
    # ------------------------------------------------------------------ plugins
    Case("plugin-selected-missing-strict", ("list", "models"), PLUGIN, "GENBENCH_LOAD_PLUGINS names no installed plugin",
         env={"GENBENCH_LOAD_PLUGINS": "nosuch", "GENBENCH_STRICT_PLUGINS": "1"}),
    Case("plugin-raises-on-import-strict", ("list", "models"), PLUGIN, "plugin broken: failed to load: RuntimeError",
         files=BROKEN_PLUGIN, env={"PYTHONPATH": "{in}/plugins", "GENBENCH_STRICT_PLUGINS": "1"}),
    Case("plugin-raises-on-import-run", ("run", "--no-evaluate"), PLUGIN, "boom at import", "trained",
         files=BROKEN_PLUGIN, env={"PYTHONPATH": "{in}/plugins", "GENBENCH_STRICT_PLUGINS": "1"}),
    Case("plugin-name-taken-strict", ("list", "models"), PLUGIN, "model 'mlp' is registered twice",
         files=CLASHING_PLUGIN, env={"PYTHONPATH": "{in}/plugins", "GENBENCH_STRICT_PLUGINS": "1"}),
    Case("plugin-component-malformed-strict", ("run", "--no-evaluate"), PLUGIN,
         "registered corruption 'flip' is refused: its apply cannot be called as apply(dataset, level, seed, options, test_labels)",
         files=MALFORMED_PLUGIN, env={"PYTHONPATH": "{in}/plugins", "GENBENCH_STRICT_PLUGINS": "1"}),
    # ------------------------------------------------------------------ environment
    Case("progress-unknown-run", ("run", "--levels", "0", "--seeds", "0", "--model", "mlp", "--no-evaluate"), USAGE,
         "GENBENCH_PROGRESS='bogus': expected one of bar, lines, none", env={"GENBENCH_PROGRESS": "bogus"}),
    Case("progress-unknown-evaluate", ("evaluate", "--measure", "params"), USAGE,
         "GENBENCH_PROGRESS='bogus': expected one of bar, lines, none", "trained", env={"GENBENCH_PROGRESS": "bogus"}),
]


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory) -> Path:
    """A tiny real store: two digits/mlp runs (p_c 0 and 1, seed 0) trained with the fast recipe,
    by a ``genbench`` process that has exited (so that no database connection is left open)."""
    folder = tmp_path_factory.mktemp("bad-input")
    result = genbench(
        ["run", "--model", "mlp", "--lr", str(FAST_TRAIN.lr), "--schedule", FAST_TRAIN.schedule,
         "--max-steps", str(FAST_TRAIN.max_steps), "--levels", "0,1", "--seeds", "0", "--measure", "params",
         "--format", "json"],
        {"GENBENCH_STORE": str(folder / "store")}, cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    return folder / "store"


def place_store(kind: str, path: Path, trained: Path) -> None:
    """Put what ``Case.store`` names at ``path``."""
    if kind == "trained":
        shutil.copytree(trained, path)
    elif kind == "truncated":
        shutil.copytree(trained, path)
        checkpoint = sorted(path.glob("checkpoints/*/final.safetensors"))[0]
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    elif kind == "file":
        path.write_text("not a store\n")
    elif kind == "corrupt":
        path.mkdir()
        (path / "genbench.sqlite").write_bytes(b"not a database, only bytes " * 64)
    else:
        assert kind == "none", kind


def fingerprint(path: Path) -> dict[str, str]:
    """Every file and folder under ``path`` (or ``path`` itself when it is a file): its sha256, or "dir"."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(item.relative_to(path)): "dir" if item.is_dir() else hashlib.sha256(item.read_bytes()).hexdigest()
        for item in sorted(path.rglob("*"))
    }


def genbench(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The ``genbench`` command run in a subprocess with only ``env``'s genbench settings."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("GENBENCH_") and key != "PYTHONPATH"}
    return subprocess.run(
        [str(GENBENCH), *args], env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_an_exit_code_and_no_change(case, trained_store, tmp_path):
    inputs, store = tmp_path / "in", tmp_path / "store"
    inputs.mkdir()
    for name, content in case.files.items():
        target = inputs / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    place_store(case.store, store, trained_store)
    before = fingerprint(store) if case.store != "none" else None

    def fill(text: str) -> str:
        return text.replace("{in}", str(inputs)).replace("{store}", str(store))

    env = {"GENBENCH_STORE": str(store), **{key: fill(value) for key, value in case.env.items()}}
    result = genbench([fill(arg) for arg in case.args], env, cwd=tmp_path)

    output = f"exit {result.returncode}\nstdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stdout + result.stderr, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ") and case.message in lines[0], output
    assert result.returncode == case.code, output
    if before is None:
        assert not store.exists(), f"the command created {store}\n{output}"
    else:
        assert fingerprint(store) == before, f"the command changed the store\n{output}"


def test_the_cases_cover_every_exit_code_of_bad_input():
    assert len(CASES) >= 40 and len({case.id for case in CASES}) == len(CASES)
    assert {case.code for case in CASES} == {USAGE, SPEC, NAME, STORE, DATA, PLUGIN}


def test_a_missing_plugin_without_strict_mode_is_one_warning_line(tmp_path):
    result = genbench(["list", "models", "--json"], {"GENBENCH_LOAD_PLUGINS": "nosuch"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == ["warning: GENBENCH_LOAD_PLUGINS names no installed plugin: nosuch"]
    assert "mlp" in {row["name"] for row in json.loads(result.stdout)}


#: Runs the command line in this process as ``genbench ARGS`` and prints, as JSON, its exit code
#: and which heavy modules it imported.
LIGHT_PROBE = """
import json, sys
import genbench.cli.main as main
sys.argv = ["genbench", *sys.argv[1:]]
try:
    main.main()
    code = 0
except SystemExit as exc:
    code = exc.code
heavy = [name for name in ("torch", "pandas", "numpy", "matplotlib", "genbench.engine", "genbench.api")
         if name in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}), file=sys.__stderr__)
"""


@pytest.mark.parametrize(
    "args, code",
    [(["--version"], 0), (["--help"], 0), (["run", "--no-such-flag"], ExitCode.USAGE)],
    ids=["version", "help", "rejected-flag"],
)
def test_the_command_line_answers_without_importing_torch(args, code, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", LIGHT_PROBE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report == {"code": code, "heavy": []}, result.stderr


def test_the_light_choices_match_the_modules_that_act_on_them():
    from genbench import choices
    from genbench.datasets.download import SOURCES
    from genbench.report.leaderboard import FORMATS, SORT_KEYS

    assert tuple(SORT_KEYS) == choices.SORT_KEYS and FORMATS == choices.LEADERBOARD_FORMATS
    assert set(SOURCES) == set(choices.DOWNLOADS)
    assert set(choices.RUN_FORMATS) < set(choices.LEADERBOARD_FORMATS)
