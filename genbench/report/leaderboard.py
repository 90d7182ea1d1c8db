"""The leaderboard as text: the rows of ``genbench.scoring.score_measures``, formatted (this
module never scores: it receives the rows, and the board's notes in ``board.attrs["notes"]``).

Scores are oriented so that larger is better for every row: a capability score predicts a
*smaller* gap, so its correlations are taken with its negation.
"""

from __future__ import annotations

import fnmatch
import html
import io
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from genbench.choices import LEADERBOARD_FORMATS
from genbench.schemas import AXIOM_TOLERANCE, MeasureScore
from genbench.version import __version__

#: One column per MeasureScore field, in its order.
COLUMNS = list(MeasureScore.model_fields)
Format = Literal["table", "markdown", "csv", "json", "html"]
FORMATS = LEADERBOARD_FORMATS


def board_frame(scores: list[MeasureScore]) -> pd.DataFrame:
    """The rows as a DataFrame, one column per field of ``MeasureScore``, in their order."""
    return pd.DataFrame([score.model_dump() for score in scores], columns=COLUMNS)


# ---------------------------------------------------------------------------
# Choosing and ordering rows
# ---------------------------------------------------------------------------

#: ``--sort`` keys: the column and whether larger is better.
SORT_KEYS: dict[str, tuple[str, bool]] = {
    "tau": ("tau_gap", True),
    "psi": ("psi", True),
    "cmi": ("cmi", True),
    "sign-error": ("sign_error_mean", False),
    "tau-level": ("tau_level", True),
    "seconds": ("seconds_per_run", False),
    "name": ("measure", False),
}


def sort_board(board: pd.DataFrame, key: str = "tau") -> pd.DataFrame:
    """The rows best first by ``key`` (see ``SORT_KEYS``; NaN last, ties by label), within each
    slice when the board has a ``slice`` column."""
    if key not in SORT_KEYS:
        raise ValueError(f"--sort must be one of {', '.join(SORT_KEYS)}; got '{key}'")
    column, larger_is_better = SORT_KEYS[key]
    if board.empty:
        return board
    frame = board.copy()
    values = frame[column]
    if column != "measure":
        numeric = values.astype(float)
        frame["_missing"] = numeric.isna()
        frame["_key"] = -numeric if larger_is_better else numeric
    else:
        frame["_missing"] = False
        frame["_key"] = values
    by = (["slice"] if "slice" in frame.columns else []) + ["_missing", "_key", "measure"]
    ordered = frame.sort_values(by, kind="stable").drop(columns=["_missing", "_key"]).reset_index(drop=True)
    ordered.attrs = dict(board.attrs)
    return ordered


def filter_measures(board: pd.DataFrame, patterns: Iterable[str] | None) -> pd.DataFrame:
    """The rows whose label or name matches one of the shell ``patterns`` (``norm*``,
    ``pacbayes-*``), and the reference rows; every row without patterns."""
    patterns = list(patterns or [])
    if not patterns or board.empty:
        return board
    keep = [
        bool(reference) or any(fnmatch.fnmatchcase(label, p) or fnmatch.fnmatchcase(name, p) for p in patterns)
        for label, name, reference in zip(board["measure"], board["name"], board["reference"])
    ]
    chosen = board[keep].reset_index(drop=True)
    chosen.attrs = dict(board.attrs)
    return chosen


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _signed(value: object, digits: int = 3) -> str:
    return "–" if _missing(value) else f"{value:+.{digits}f}"


def _short(value: float) -> str:
    if _missing(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.3g}"


def _with_interval(value: object, low: object, high: object) -> str:
    if _missing(value):
        return "–"
    if _missing(low) or _missing(high):
        return _signed(value)
    return f"{value:+.3f} [{low:+.2f}, {high:+.2f}]"


def _axes(record: dict) -> str:
    axes = record.get("psi_axes") or {}
    return " · ".join(f"{axis} {_signed(value, 2)}" for axis, value in axes.items()) or "–"


def _sign_error(record: dict) -> str:
    if not record.get("sign_error_environments"):
        return "–"
    return (f"{record['sign_error_mean']:.2f} / {record['sign_error_p90']:.2f} / {record['sign_error_max']:.2f}"
            f" ({record['sign_error_environments']})")


def _axiom(record: dict) -> str:
    zero, monotone = record.get("axiom_zero", "n/a"), record.get("axiom_monotone", "n/a")
    if zero == "n/a" and monotone == "n/a":
        return record.get("axiom", "n/a") if record.get("axiom") != "n/a" else "n/a"
    parts = []
    if zero != "n/a":
        parts.append(f"≈0 {zero} ({record['axiom_value']:.3f})")
    if monotone != "n/a":
        parts.append(f"↓ {monotone} ({record['axiom_rise']:+.3f})")
    return " · ".join(parts)


def _runs(record: dict) -> str:
    total = record.get("runs_total") or record["runs"]
    text = f"{record['runs']}/{total}" if record["runs"] != total else str(record["runs"])
    return text + ("*" if record.get("partial") else "")


@dataclass(frozen=True)
class _Column:
    header: str
    cell: Callable[[dict], str]
    priority: int  # 0 always shown; larger numbers are dropped first on narrow terminals
    left: bool = False


_COLUMNS = [
    _Column("measure", lambda r: r["measure"] + ("*" if r.get("partial") else ""), 0, left=True),
    _Column("kind", lambda r: r["kind"], 6, left=True),
    _Column("τ(gap) [95% CI]", lambda r: _with_interval(r["tau_gap"], r.get("tau_gap_low"), r.get("tau_gap_high")), 0),
    _Column("Ψ [95% CI]", lambda r: _with_interval(r["psi"], r.get("psi_low"), r.get("psi_high")), 1),
    _Column("ψ per axis", _axes, 5, left=True),
    _Column("CMI", lambda r: "–" if _missing(r.get("cmi")) else f"{r['cmi']:.1f}", 2),
    _Column("sign-error mean/p90/max (env)", _sign_error, 4),
    _Column("τ(p_c)", lambda r: _signed(r["tau_level"]), 3),
    _Column("value, p_c low → high", lambda r: f"{_short(r['value_clean'])} → {_short(r['value_noise'])}", 7),
    _Column("corruption axiom", _axiom, 2, left=True),
    _Column("s/run", lambda r: "–" if _missing(r["seconds_per_run"]) else f"{r['seconds_per_run']:.3f}", 6),
    _Column("runs", _runs, 1),
]

FOOTNOTE = (
    "τ(gap): Kendall tau-b with the gap over all runs; Ψ: granulated Kendall (Jiang et al. 2020), the mean over "
    "the grid's axes of ψ, the mean τ within groups of runs that differ in that axis only; [95% CI]: percentile "
    "bootstrap over the grid's cells (seeds together). CMI: the PGDL competition's conditional mutual information "
    "with the gap (×100, min over pairs of axes; symmetric: an anti-correlated measure scores as high). "
    "Sign-error (Dziugaite et al. 2020): mean / 90th percentile / max over environments (pairs of configurations "
    "that differ in one axis; weighted against test-set noise; lower is better). Capability scores enter negated, "
    "so for every other column larger is better; a constant measure has no τ (–). Corruption axiom (capability "
    f"scores): ≈0 — the mean is within {AXIOM_TOLERANCE} of 0 where inputs and labels are independent (labels, "
    "random-labels, gaussian at p_c = 1); ↓ — the mean per level does not rise with p_c by more than "
    f"{AXIOM_TOLERANCE} (largest rise shown). τ(p_c) is taken within each corruption kind. runs: scored/board, "
    "* fewer than the best-covered measure. Reference rows (oracle σ) are the true gap plus N(0, σ²) noise."
)


def _records(board: pd.DataFrame) -> list[dict]:
    return board.to_dict("records")


def _cells(records: list[dict], columns: list[_Column]) -> list[list[str]]:
    return [[column.cell(record) for column in columns] for record in records]


def _fitting(records: list[dict], width: int | None) -> tuple[list[_Column], list[_Column]]:
    """The columns that fit ``width`` characters, most important first kept (all without a width),
    and those left out."""
    if width is None:
        return list(_COLUMNS), []
    sizes = {
        column.header: max([len(column.header)] + [len(column.cell(record)) for record in records]) + 3
        for column in _COLUMNS
    }
    kept = list(_COLUMNS)
    for priority in sorted({column.priority for column in _COLUMNS if column.priority > 0}, reverse=True):
        if sum(sizes[column.header] for column in kept) + 1 <= width:
            break
        kept = [column for column in kept if column.priority != priority]
    return kept, [column for column in _COLUMNS if column not in kept]


# ---------------------------------------------------------------------------
# Sanity line
# ---------------------------------------------------------------------------


def _complexity_rows(board: pd.DataFrame) -> pd.DataFrame:
    return board[(board["kind"] == "complexity") & ~board["reference"].astype(bool)]


def noise_sanity_failures(board: pd.DataFrame) -> list[str]:
    """Complexity measures that do not rise with the corruption level (τ(p_c) ≤ 0, or none).

    The sanity check of Neyshabur et al. 2017 and Bartlett et al. 2017: a complexity measure
    that explains generalization must grow with the fraction of random labels, since the
    gap does. Constant measures (no τ) fail it too."""
    rows = _complexity_rows(board)
    failing = rows[~(rows["tau_level"].astype(float) > 0)]
    return list(failing["measure"])


def sanity_line(board: pd.DataFrame) -> str:
    """One line naming the complexity measures that fail the random-label sanity check."""
    complexity = len(_complexity_rows(board))
    if not complexity or board["tau_level"].isna().all():
        return ""
    failing = noise_sanity_failures(board)
    if not failing:
        return f"Random-label sanity check (Neyshabur et al. 2017): all {complexity} complexity measures rise with p_c."
    return (
        f"Random-label sanity check (Neyshabur et al. 2017): {len(failing)} of {complexity} complexity measures do not "
        f"rise with p_c (τ(p_c) ≤ 0 or none): {', '.join(failing)}."
    )


# ---------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------


def _json_value(value: object) -> object:
    """NaN → null, ±∞ → "inf"/"-inf" (JSON has neither), inside dicts too."""
    if isinstance(value, dict):
        return {key: _json_value(inner) for key, inner in value.items()}
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _flat_axes(board: pd.DataFrame) -> pd.DataFrame:
    """``psi_axes`` (a dict per row) as one column ``psi_<axis>`` per axis, in its place."""
    if "psi_axes" not in board.columns:
        return board
    axes = list(dict.fromkeys(axis for row in board["psi_axes"] if isinstance(row, dict) for axis in row))
    flat = board.drop(columns="psi_axes")
    at = list(board.columns).index("psi_axes")
    for offset, axis in enumerate(axes):
        column = [row.get(axis, math.nan) if isinstance(row, dict) else math.nan for row in board["psi_axes"]]
        flat.insert(at + offset, f"psi_{axis}", column)
    return flat


def _slices(board: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if "slice" not in board.columns:
        return [("", board)]
    return [(label, part) for label, part in board.groupby("slice", sort=False)]


def _notes(board: pd.DataFrame) -> list[str]:
    return list(board.attrs.get("notes", []))


# ---------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------

#: A row's provenance, as its scored values recorded them (``MeasureScore``'s fields).
PROVENANCE_FIELDS = ("plugin", "plugin_version", "genbench_version")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _joined(parts: Iterable[str | None]) -> str | None:
    """The distinct entries of comma-separated ``parts``, in their order, comma-separated (None if none)."""
    entries = [entry.strip() for part in parts if part for entry in part.split(",") if entry.strip()]
    return ", ".join(dict.fromkeys(entries)) or None


def provenance(board: pd.DataFrame) -> dict:
    """What the board was made with: ``genbench_version``, this genbench (which scored and rendered
    it); ``values_genbench_versions``, the genbench versions that computed its values; ``measures``,
    one entry per measure row (the reference rows left out): its label, ``plugin`` (the distribution
    that registered the measure), ``plugin_version`` and ``genbench_version``, as its values recorded
    them (None where they did not: stores written before values recorded them)."""
    entries: dict[str, dict[str, list]] = {}
    for record in _records(board):
        if record.get("reference"):
            continue
        entry = entries.setdefault(record["measure"], {key: [] for key in PROVENANCE_FIELDS})
        for key in PROVENANCE_FIELDS:
            entry[key].append(_text(record.get(key)))
    measures = [{"measure": label, **{key: _joined(parts) for key, parts in entry.items()}} for label, entry in entries.items()]
    versions = _joined(entry["genbench_version"] for entry in measures)
    return {
        "genbench_version": __version__,
        "values_genbench_versions": versions.split(", ") if versions else [],
        "measures": measures,
    }


def provenance_line(board: pd.DataFrame) -> str:
    """The board's provenance as one sentence (see ``provenance``)."""
    found = provenance(board)
    by_origin: dict[str, list[str]] = {}
    for entry in found["measures"]:
        origin = f"{entry['plugin']} {entry['plugin_version']}" if entry["plugin"] else "origin not recorded"
        by_origin.setdefault(origin, []).append(entry["measure"])
    computed = ", ".join(found["values_genbench_versions"]) or "a genbench that did not record its version"
    line = f"Provenance: scored with genbench {found['genbench_version']}; values computed with genbench {computed}."
    if by_origin:
        line += " Measures: " + "; ".join(f"{origin} ({', '.join(labels)})" for origin, labels in by_origin.items()) + "."
    return line


def _markdown(board: pd.DataFrame) -> str:
    out = []
    for label, part in _slices(board):
        if label:
            out.append(f"### {label}\n")
        records = _records(part)
        out.append("| " + " | ".join(column.header for column in _COLUMNS) + " |")
        out.append("|" + "---|" * len(_COLUMNS))
        for record, row in zip(records, _cells(records, _COLUMNS)):
            if record["reference"]:
                row = [f"*{cell}*" for cell in row]
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        sanity = sanity_line(part)
        out.append("")
        if sanity:
            out.append(sanity + "\n")
    out += [f"> {note}\n" for note in _notes(board)]
    out.append(FOOTNOTE + "\n")
    out.append(provenance_line(board) + "\n")
    return "\n".join(out)


_HTML_STYLE = (
    "table{border-collapse:collapse;font:13px system-ui,sans-serif}th,td{border:1px solid #bbb;padding:3px 6px}"
    "th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}tr.reference{font-style:italic;"
    "color:#555}tr.fail td{background:#fbe9e9}p.note{font:13px system-ui,sans-serif;margin:4px 0}"
)


_NUMERIC = {True: "", False: ' class="num"'}


def _html(board: pd.DataFrame, title: str) -> str:
    version = html.escape(__version__, quote=True)
    parts = [f"<section class=\"leaderboard\" data-genbench-version=\"{version}\"><style>{_HTML_STYLE}</style>"]
    for label, part in _slices(board):
        heading = f"{title} — {label}" if label else title
        parts.append(f"<h3>{html.escape(heading)}</h3><table><thead><tr>")
        parts += [f"<th>{html.escape(column.header)}</th>" for column in _COLUMNS]
        parts.append("</tr></thead><tbody>")
        records = _records(part)
        for record, row in zip(records, _cells(records, _COLUMNS)):
            kind = "reference" if record["reference"] else ("fail" if record["axiom"] == "fail" else "")
            origin = "".join(
                f' data-{key.replace("_", "-")}="{html.escape(_text(record.get(key)), quote=True)}"'
                for key in PROVENANCE_FIELDS if _text(record.get(key))
            )
            parts.append(f"<tr class=\"{kind}\"{origin}>")
            parts += [f"<td{_NUMERIC[column.left]}>{html.escape(cell)}</td>" for column, cell in zip(_COLUMNS, row)]
            parts.append("</tr>")
        parts.append("</tbody></table>")
        sanity = sanity_line(part)
        if sanity:
            parts.append(f"<p class=\"note\">{html.escape(sanity)}</p>")
    parts += [f"<p class=\"note\"><b>Note:</b> {html.escape(note)}</p>" for note in _notes(board)]
    parts.append(f"<p class=\"note\">{html.escape(FOOTNOTE)}</p>")
    parts.append(f"<p class=\"note provenance\">{html.escape(provenance_line(board))}</p></section>")
    return "".join(parts) + "\n"


#: The table's width when the output is not a terminal (a file, a pipe) and $COLUMNS is unset.
UNBOUNDED_WIDTH = 240


def _terminal_width(console) -> int:
    """The terminal's width; ``UNBOUNDED_WIDTH`` when there is no terminal to fit (nor $COLUMNS)."""
    import os

    if console.is_terminal or os.environ.get("COLUMNS"):
        return console.width
    return UNBOUNDED_WIDTH


def _table(board: pd.DataFrame, title: str, width: int | None) -> str:
    from rich.console import Console
    from rich.table import Table

    console_width = width or _terminal_width(Console())
    buffer = io.StringIO()
    console = Console(file=buffer, width=console_width, force_terminal=False, highlight=False)
    for label, part in _slices(board):
        records = _records(part)
        columns, dropped = _fitting(records, console_width)
        table = Table(title=f"{title} — {label}" if label else title, title_justify="left")
        for column in columns:
            table.add_column(column.header, justify="left" if column.left else "right", overflow="fold")
        for record, row in zip(records, _cells(records, columns)):
            style = "dim italic" if record["reference"] else ("red" if record["axiom"] == "fail" else None)
            table.add_row(*row, style=style)
        console.print(table)
        if dropped:
            console.print(
                f"(too narrow for: {', '.join(column.header for column in dropped)}; widen the terminal or use "
                "--format markdown|csv|json|html)", style="dim", markup=False, soft_wrap=True)
        sanity = sanity_line(part)
        if sanity:
            console.print(sanity, markup=False, soft_wrap=True)
    for note in _notes(board):
        console.print(f"Note: {note}", markup=False, soft_wrap=True)
    console.print(FOOTNOTE, markup=False, style="dim", soft_wrap=True)
    return buffer.getvalue()


def render(board: pd.DataFrame, fmt: Format = "table", title: str = "genbench leaderboard", width: int | None = None) -> str:
    """The leaderboard as text in ``fmt``: a rich table as wide as ``width`` (the terminal's when
    None; columns of less weight are left out, and named, when they do not fit), markdown, csv
    (``psi_axes`` as one ``psi_<axis>`` column per axis), json (``rows``, ``notes`` and
    ``provenance``, see ``provenance``) or an html fragment (a styled table, self-contained; each
    measure row's provenance in ``data-plugin``, ``data-plugin-version`` and
    ``data-genbench-version``, the section's ``data-genbench-version`` this genbench's, and the
    board's provenance in a sentence, as in markdown). Every row carries its ``plugin``,
    ``plugin_version`` and ``genbench_version`` (the json and csv columns of those names)."""
    if fmt == "csv":
        return _flat_axes(board).to_csv(index=False)
    if fmt == "json":
        records = [{key: _json_value(value) for key, value in record.items()} for record in _records(board)]
        return json.dumps({"rows": records, "notes": _notes(board), "provenance": provenance(board)}, indent=2, allow_nan=False)
    if fmt == "markdown":
        return _markdown(board)
    if fmt == "html":
        return _html(board, title)
    if fmt == "table":
        return _table(board, title, width)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}; got '{fmt}'")
