"""Commands that read the store's runs: ``runs`` (one line per run) and ``show`` (one run whole)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from genbench.cli.common import (
    check_choice,
    fit_columns,
    flatten,
    handle_errors,
    json_ready,
    markdown_table,
    plain,
    print_json,
    stdout,
)
from genbench.cli.experiments import StoreOption
from genbench.conditions import Condition, apply_where
from genbench.errors import UnknownNameError
from genbench.schemas import RunResult, RunSpec, TrainConfig

if TYPE_CHECKING:  # imported where they are used: `genbench --help` stays light
    import pandas as pd

    from genbench.store import Store

SHOW_FORMATS = ("table", "json")
#: The formats of ``genbench runs``.
FORMATS = ("table", "markdown", "csv", "json")
FormatOption = typer.Option("table", "--format", "-f", help="table | markdown | csv | json")
#: The shortest run_id prefix ``show`` accepts.
MIN_PREFIX = 6
#: At most this many loss-curve rows in ``show``'s table (json has them all).
LOSS_ROWS = 20
#: The listing's sort order (then the recipe fields that differ, then run_id).
SORT_KEYS = ["dataset", "model", "corruption", "level", "seed"]
#: The fields of a run's result that the listing shows, after the grid's axes.
RESULT_COLUMNS = ("train_accuracy", "test_accuracy", "gap", "steps", "steps_to_fit", "status")
HEADERS = {"train_accuracy": "train acc", "test_accuracy": "test acc", "steps_to_fit": "steps to fit"}
#: How long a column stays when the table must lose columns to fit the terminal (higher stays
#: longer; at 95 and above never dropped). A column whose cells are all equal loses 50.
IMPORTANCE = {
    "run_id": 100, "model": 95, "level": 95, "seed": 90, "gap": 85, "test_accuracy": 80, "train_accuracy": 75,
    "dataset": 60, "corruption": 60, "test_labels": 55, "status": 50, "steps_to_fit": 35, "steps": 30,
}
TRAIN_IMPORTANCE, MEASURE_IMPORTANCE = 70, 65
#: The columns of a closed-form fit's diagnostics (``diag_residual``, ``diag_condition_number``, …)
#: start with this, and are among the first to go when the table must lose columns.
DIAGNOSTIC_PREFIX, DIAGNOSTIC_IMPORTANCE = "diag_", 40
KEEP = 95
THREE_DECIMALS = ("train_accuracy", "test_accuracy", "gap")
INTEGER_COLUMNS = ("seed", "steps", "steps_to_fit")


# ------------------------------------------------------------------------------------ the listing
@dataclass(frozen=True)
class Listing:
    """The runs to list: every column (for ``--where``), and the ones shown, in order."""

    frame: pd.DataFrame
    shown: list[str]
    measures: list[str]


def version_key(version: str) -> tuple:
    """Versions in order: numerically part by part where they are numbers ("10" after "9")."""
    parts = version.split(".")
    return (0, tuple(int(p) for p in parts)) if all(p.isdigit() for p in parts) else (1, tuple(parts))


def default_values(values: pd.DataFrame) -> pd.DataFrame:
    """Per (run, measure): the value of the measure's newest version at its default options (a
    value that did not record whether its options were the defaults counts as default when no
    value of that measure did)."""
    flagged = values["default_options"].map(lambda flag: flag is True)
    recorded = set(values.loc[values["default_options"].notna(), "measure"])
    chosen = values[flagged | (values["default_options"].isna() & ~values["measure"].isin(recorded))]
    if chosen.empty:
        return chosen
    newest = chosen.groupby("measure")["version"].agg(lambda versions: max(versions, key=version_key))
    chosen = chosen[chosen["version"] == chosen["measure"].map(newest)]
    return chosen.sort_values("created_at", kind="stable").drop_duplicates(["run_id", "measure"], keep="last")


def measure_cells(values: pd.DataFrame, run_ids: list[str]) -> dict[str, list[Any]]:
    """One column per measure: the value, or "failed" / "skipped", or None where it has none."""
    cells: dict[str, dict[str, Any]] = {}
    for row in default_values(values).to_dict("records"):
        cells.setdefault(row["measure"], {})[row["run_id"]] = row["value"] if row["status"] == "ok" else row["status"]
    return {measure: [cells[measure].get(run_id) for run_id in run_ids] for measure in sorted(cells)}


def build_listing(store: Store, with_measures: bool, conditions: list[Condition]) -> Listing:
    """The store's runs, filtered by ``conditions`` and sorted; shown: the grid's axes, the recipe
    fields that differ between the listed runs, the result, the diagnostics that some listed run
    has (``diag_<name>``: closed-form fits), and with ``with_measures`` the measures."""
    import pandas as pd

    from genbench.scoring.selection import recipes

    runs = store.runs()
    trains = recipes(runs)
    frame = pd.concat([runs.drop(columns=["train_config"]), trains], axis=1)
    measures: list[str] = []
    if with_measures and len(frame):
        columns = measure_cells(store.measure_values(), list(frame["run_id"]))
        measures = [m for m in columns if m not in frame.columns]
        frame = pd.concat([frame, pd.DataFrame({m: columns[m] for m in measures}, index=frame.index)], axis=1)
    frame = apply_where(frame, conditions)
    varying = [c for c in [*trains.columns, "test_labels"] if c in frame and _distinct(frame[c]) > 1]
    frame = frame.sort_values([*SORT_KEYS, *varying, "run_id"], kind="stable").reset_index(drop=True)
    shown = ["run_id", "dataset", "model", "corruption", "level", "seed"]
    shown += ["test_labels"] * ("test_labels" in varying) + [c for c in varying if c != "test_labels"]
    diagnostics = sorted(
        c for c in frame.columns if c.startswith(DIAGNOSTIC_PREFIX) and c not in measures and frame[c].notna().any()
    )
    return Listing(frame, shown + list(RESULT_COLUMNS) + diagnostics + measures, measures)


def _distinct(column: pd.Series) -> int:
    return len({json.dumps(plain(value), default=str) for value in column.tolist()})


def machine_value(column: str, value: Any, is_measure: bool) -> Any:
    """A cell for json and csv: a measure's "failed" / "skipped" is null there, counts are integers."""
    value = plain(value)
    if is_measure and isinstance(value, str):
        return None
    if column in INTEGER_COLUMNS and isinstance(value, float):
        return int(value)
    return value


def shown_rows(listing: Listing) -> list[dict[str, Any]]:
    """The shown columns of every listed run, as Python values."""
    return listing.frame[listing.shown].to_dict("records")


def records(listing: Listing) -> list[dict[str, Any]]:
    measures = set(listing.measures)
    return [
        {column: machine_value(column, row[column], column in measures) for column in listing.shown}
        for row in shown_rows(listing)
    ]


def cell_text(column: str, value: Any, is_measure: bool = False) -> str:
    """A cell as the table and markdown show it."""
    value = plain(value)
    if value is None:
        return "–"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        if column in THREE_DECIMALS:
            return f"{value:.3f}"
        if column in INTEGER_COLUMNS:
            return str(int(value))
        return number_text(value) if is_measure else f"{value:g}"
    return str(value)


def number_text(value: float) -> str:
    """A measure's value, short: whole numbers whole, else 4 significant digits (scientific only
    below 0.001 or from 10⁶ on)."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"


def text_rows(listing: Listing) -> list[list[str]]:
    measures = set(listing.measures)
    return [[cell_text(column, row[column], column in measures) for column in listing.shown] for row in shown_rows(listing)]


def header(column: str) -> str:
    return HEADERS.get(column, column)


# ------------------------------------------------------------------------------- table and markdown
def importance(column: str, position: int, cells: list[str], measures: list[str]) -> float:
    """How long ``column`` stays when columns must go (see ``IMPORTANCE``); later measures go first."""
    if column in measures:
        base = MEASURE_IMPORTANCE - measures.index(column) / (len(measures) + 1)
    elif column.startswith(DIAGNOSTIC_PREFIX):
        base = DIAGNOSTIC_IMPORTANCE
    else:
        base = IMPORTANCE.get(column, TRAIN_IMPORTANCE)
    if len(cells) > 1 and len(set(cells)) == 1:
        base -= 50
    return base - position / 1000


def runs_table(listing: Listing, console: Console) -> tuple[Table, list[str]]:
    """The rich table at the console's width, and the columns left out to fit it."""
    rows = text_rows(listing)
    cells = [[row[i] for row in rows] for i in range(len(listing.shown))]
    kept = fit_columns(
        [header(c) for c in listing.shown], rows,
        ranks=[importance(c, i, cells[i], listing.measures) for i, c in enumerate(listing.shown)],
        keep=[IMPORTANCE.get(c, 0) >= KEEP for c in listing.shown], width=console.width,
    )
    table = Table(title=f"genbench runs ({len(rows)})")
    for column in (listing.shown[i] for i in kept):
        numeric = column not in ("run_id", "dataset", "model", "corruption", "status", "test_labels")
        table.add_column(escape(header(column)), justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*[escape(row[i]) for i in kept])
    return table, [c for i, c in enumerate(listing.shown) if i not in kept]


def print_listing(listing: Listing, fmt: str) -> None:
    if fmt == "json":
        print_json(records(listing))
    elif fmt == "csv":
        import pandas as pd

        frame = pd.DataFrame(records(listing), columns=listing.shown)
        stdout.print(frame.to_csv(index=False), markup=False, highlight=False, end="")
    elif fmt == "markdown":
        text = markdown_table([header(c) for c in listing.shown], text_rows(listing))
        stdout.print(text, markup=False, highlight=False, end="")
    else:
        console = Console()
        table, dropped = runs_table(listing, console)
        console.print(table)
        if dropped:
            console.print(
                f"[dim]left out to fit {console.width} columns: {escape(', '.join(header(c) for c in dropped))} "
                "(--format csv shows them all)[/]"
            )


# ------------------------------------------------------------------------------------------- show
def resolve_run_id(store: Store, text: str) -> str:
    """The run whose id is ``text``, or whose id alone starts with ``text`` (≥ ``MIN_PREFIX`` characters)."""
    wanted = text.strip().lower()
    ids = store.run_ids()
    if wanted in ids:
        return wanted
    if len(wanted) < MIN_PREFIX:
        raise UnknownNameError(
            f"no run '{text}' in store {store.root} (a run_id prefix needs at least {MIN_PREFIX} characters)"
        )
    matches = [run_id for run_id in ids if run_id.startswith(wanted)]
    if not matches:
        raise UnknownNameError(f"no run '{text}' in store {store.root} (`genbench runs` lists them)")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        raise UnknownNameError(f"run_id prefix '{text}' matches {len(matches)} runs ({shown}); give more characters")
    return matches[0]


def spec_record(spec: RunSpec) -> dict[str, Any]:
    """The run's spec, every recipe field included (also those left out of its hash at their defaults)."""
    record = spec.model_dump(mode="json")
    record["train"] = {name: getattr(spec.train, name) for name in TrainConfig.model_fields}
    return record


def value_records(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Every measure value of the run, by measure and version."""
    values = store.measure_values()
    values = values[values["run_id"] == run_id].sort_values(["measure", "version", "options_hash"], kind="stable")
    keys = ("measure", "version", "options", "value", "status", "error", "seconds", "details", "kind", "default_options")
    return [
        {key: plain(row[key]) if key != "value" or row["status"] == "ok" else None for key in keys}
        for row in values.to_dict("records")
    ]


def run_record(store: Store, run_id: str) -> dict[str, Any]:
    """One run whole: spec, result (diagnostics included), loss curve and measure values."""
    result: RunResult = store.run_result(run_id)
    return {
        "run_id": run_id,
        "spec": spec_record(store.run_spec(run_id)),
        "result": result.model_dump(mode="json", exclude={"loss_curve", "run_id"}),
        "loss_curve": [{"step": step, "loss": loss} for step, loss in result.loss_curve],
        "measure_values": value_records(store, run_id),
    }


def show_text(value: Any) -> str:
    """A value in ``show``'s tables: numbers to 6 significant digits, tables and lists as JSON."""
    value = plain(value)
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list, bool)):
        return json.dumps(json_ready(value), separators=(", ", ": ")) if value != {} else "–"
    return str(value)


def titled_table(title: str) -> Table:
    """A table at least as wide as its title, so that the title stays on one line."""
    return Table(title=title, title_justify="left", min_width=cell_len(title))


def fields_table(title: str, data: dict[str, Any]) -> Table:
    table = titled_table(title)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in flatten(data):
        table.add_row(escape(key), escape(show_text(value)))
    return table


def thinned(curve: list[dict[str, Any]], rows: int = LOSS_ROWS) -> list[dict[str, Any]]:
    """At most ``rows`` evenly spaced points of the curve, its first and last included."""
    if len(curve) <= rows:
        return curve
    picks = sorted({round(i * (len(curve) - 1) / (rows - 1)) for i in range(rows)})
    return [curve[i] for i in picks]


def loss_table(curve: list[dict[str, Any]]) -> Table:
    points = thinned(curve)
    shown = f"{len(points)} of {len(curve)} points" if len(points) < len(curve) else f"{len(curve)} points"
    table = titled_table(f"loss curve ({shown})")
    table.add_column("step", justify="right")
    table.add_column("training loss", justify="right")
    for point in points:
        table.add_row(str(point["step"]), show_text(point["loss"]))
    return table


def values_table(values: list[dict[str, Any]]) -> Table:
    table = titled_table(f"measure values ({len(values)})")
    for column in ("measure", "version", "options", "value", "status", "seconds", "error", "details"):
        short = column not in ("options", "error", "details")
        table.add_column(column, overflow="fold", no_wrap=short, justify="right" if column in ("value", "seconds") else "left")
    for value in values:
        cells = [value["measure"], value["version"], value["options"], value["value"], value["status"]]
        cells += [f"{value['seconds']:.3g}", value["error"], value["details"]]
        table.add_row(*[escape(show_text(cell)) for cell in cells])
    return table


def print_run(record: dict[str, Any]) -> None:
    console = Console()
    console.print(fields_table(f"run {record['run_id']}: spec", record["spec"]))
    console.print(fields_table("result", record["result"]))
    if record["loss_curve"]:
        console.print(loss_table(record["loss_curve"]))
    if record["measure_values"]:
        console.print(values_table(record["measure_values"]))
    else:
        console.print("[dim]no measure values (`genbench evaluate` computes them)[/]")


# ------------------------------------------------------------------------------------------ commands
def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def runs(
        with_measures: bool = typer.Option(
            False, "--with-measures", help="a column per measure: its newest version at default options"
        ),
        where: Optional[list[str]] = typer.Option(
            None, "--where", metavar="COLUMN=V1,V2",
            help="keep the runs whose column matches (=, !=, <, <=, >, >=; repeatable), e.g. model=mlp, level>=0.5",
        ),
        store: Optional[Path] = StoreOption,
        fmt: str = FormatOption,
    ) -> None:
        """List the store's runs: the grid's axes, the recipe fields that differ, the result."""
        from genbench import api

        check_choice(fmt, FORMATS, "--format")
        conditions = [Condition.parse(text) for text in where or []]
        with api.open_store(store, create=False) as target:
            listing = build_listing(target, with_measures, conditions)
            root = target.root
        if fmt == "table" and listing.frame.empty:
            matching = " that match --where" if conditions else ""
            Console().print(f"[dim]no runs{matching} in store {escape(str(root))}[/]")
            return
        print_listing(listing, fmt)

    @app.command()
    @handle_errors
    def show(
        run_id: str = typer.Argument(..., help=f"a run_id, or a prefix of one (at least {MIN_PREFIX} characters)"),
        store: Optional[Path] = StoreOption,
        fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    ) -> None:
        """One run whole: its spec, its result, its loss curve and every measure value."""
        from genbench import api

        check_choice(fmt, SHOW_FORMATS, "--format")
        with api.open_store(store, create=False) as target:
            record = run_record(target, resolve_run_id(target, run_id))
        if fmt == "json":
            print_json(record)
        else:
            print_run(record)
