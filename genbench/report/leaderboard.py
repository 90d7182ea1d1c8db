"""The leaderboard as text: the rows of ``genbench.scoring.score_measures``, formatted (this
module never scores: it receives the rows).

Scores are oriented so that larger is better for every row: a capability score
predicts a *smaller* gap, so its correlations are taken with its negation.
"""

from __future__ import annotations

import io
import json
import math
from typing import Literal

import pandas as pd

from genbench.schemas import AXIOM_TOLERANCE, MeasureScore

#: One column per MeasureScore field, in its order.
COLUMNS = list(MeasureScore.model_fields)
Format = Literal["table", "markdown", "csv", "json"]


def board_frame(scores: list[MeasureScore]) -> pd.DataFrame:
    """The rows as a DataFrame, one column per field of ``MeasureScore``, in their order."""
    return pd.DataFrame([score.model_dump() for score in scores], columns=COLUMNS)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:+.{digits}f}" if digits == 3 else f"{value:.{digits}f}"
    return str(value)


def _short(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.3g}"


def _display_rows(board: pd.DataFrame) -> list[list[str]]:
    rows = []
    for record in board.to_dict("records"):
        axiom = record["axiom"]
        if axiom != "n/a" and record["axiom_value"] is not None:
            axiom = f"{axiom} ({record['axiom_value']:.3f})"
        rows.append(
            [
                record["measure"],
                record["kind"],
                _fmt(record["tau_gap"]),
                _fmt(record["psi"]),
                _fmt(record["tau_level"]),
                f"{_short(record['value_clean'])} → {_short(record['value_noise'])}",
                axiom,
                f"{record['seconds_per_run']:.3f}",
                str(record["runs"]),
            ]
        )
    return rows


HEADERS = ["measure", "kind", "τ(gap)", "Ψ", "τ(p_c)", "value, p_c low → high", "p_c=1 check", "s/run", "runs"]
FOOTNOTE = (
    "τ: Kendall tau-b over all runs; Ψ: granulated Kendall (mean over grid axes); capability scores "
    "enter negated, so for every row larger is better; a constant measure has no τ (–). p_c=1 check: a capability score must be "
    f"≈ 0 (|mean| ≤ {AXIOM_TOLERANCE}) where inputs and labels are independent (labels, random-labels, gaussian "
    "at p_c = 1); τ(p_c) is taken within each corruption kind. Reference rows (oracle σ) are the true gap plus N(0, σ²) noise."
)


def noise_sanity_failures(board: pd.DataFrame) -> list[str]:
    """Complexity measures that do not rise with the corruption level (τ(p_c) ≤ 0, or none).

    The sanity check of Neyshabur et al. 2017 and Bartlett et al. 2017: a complexity measure
    that explains generalization must grow with the fraction of random labels, since the
    gap does. Constant measures (no τ) fail it too."""
    rows = _complexity_rows(board)
    failing = rows[~(rows["tau_level"].astype(float) > 0)]
    return list(failing["measure"])


def _complexity_rows(board: pd.DataFrame) -> pd.DataFrame:
    return board[(board["kind"] == "complexity") & ~board["reference"].astype(bool)]


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


def render(board: pd.DataFrame, fmt: Format = "table", title: str = "genbench leaderboard") -> str:
    """The leaderboard as text in ``fmt`` (table = a rich table)."""
    if fmt == "csv":
        return _flat_axes(board).to_csv(index=False)
    if fmt == "json":
        records = [{key: _json_value(value) for key, value in record.items()} for record in board.to_dict("records")]
        return json.dumps(records, indent=2, allow_nan=False)
    rows = _display_rows(board)
    if fmt == "markdown":
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        for row in rows:
            if row[1] == "reference":
                row = [f"*{cell}*" for cell in row]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        sanity = sanity_line(board)
        return "\n".join(lines) + "\n\n" + FOOTNOTE + "\n" + (f"\n{sanity}\n" if sanity else "")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=FOOTNOTE, caption_justify="left")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("measure", "kind", "p_c=1 check") else "right")
    from rich.markup import escape

    for row in rows:
        row = [escape(cell) for cell in row]
        style = "dim italic" if row[1] == "reference" else ("red" if row[6].startswith("fail") else None)
        table.add_row(*row, style=style)
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False)
    console.print(table)
    sanity = sanity_line(board)
    if sanity:
        console.print(sanity, markup=False, highlight=False)
    return buffer.getvalue()
