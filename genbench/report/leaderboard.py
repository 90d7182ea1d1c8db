"""The leaderboard: every measure scored against the measured generalization gap.

Scores are oriented so that larger is better for every row: a capability score
predicts a *smaller* gap, so its correlations are taken with its negation.
"""

from __future__ import annotations

import io
import json
import math
from typing import Literal

import numpy as np
import pandas as pd

from genbench.scoring import granulated_kendall, kendall_tau, noisy_oracle

AXES = ("dataset", "model", "corruption", "level", "train_config", "test_labels")
ORACLE_STDS = (0.02, 0.05)
ORACLE_SEED = 0
AXIOM_TOLERANCE = 0.05
COLUMNS = [
    "measure",
    "kind",
    "reference",
    "runs",
    "tau_gap",
    "psi",
    "tau_level",
    "axiom",
    "axiom_value",
    "value_clean",
    "value_noise",
    "seconds_per_run",
]
Format = Literal["table", "markdown", "csv", "json"]


def _label(measure: str, options_json: str, plain: bool) -> str:
    """``measure``, or ``measure[k=v,...]`` when its options must be told apart."""
    if plain:
        return measure
    options = json.loads(options_json)
    inner = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{measure}[{inner}]"


def latest_values(values: pd.DataFrame, default_options: dict[str, str]) -> pd.DataFrame:
    """Values of each measure's newest version, one label per distinct options."""
    if values.empty:
        return values.assign(label=pd.Series(dtype=str))
    frame = values.copy()
    frame["options_json"] = [json.dumps(o, sort_keys=True) for o in frame["options"]]
    newest = frame.sort_values("created_at").groupby("measure")["version"].last()
    frame = frame[frame["version"] == frame["measure"].map(newest)]
    variants = frame.groupby("measure")["options_json"].nunique()

    def plain(measure: str, options_json: str) -> bool:
        # a registered measure is plain at its default options; one whose plugin is
        # gone (defaults unknown) is plain only when it has a single variant
        if measure in default_options:
            return options_json == default_options[measure]
        return variants[measure] == 1

    frame["label"] = [_label(m, o, plain(m, o)) for m, o in zip(frame["measure"], frame["options_json"])]
    return frame


def _tau_with_level(frame: pd.DataFrame, oriented: pd.Series) -> float:
    """Kendall τ with p_c within each corruption kind, averaged over the kinds that vary p_c."""
    taus = []
    for _, group in frame.assign(_oriented=oriented).groupby("corruption"):
        if group["level"].nunique() > 1:
            tau = kendall_tau(group["_oriented"], group["level"])
            if not math.isnan(tau):
                taus.append(tau)
    return float(np.mean(taus)) if taus else math.nan


def _score_row(
    frame: pd.DataFrame, column: str, kind: str, axes: list[str], reference: bool, uninformative: set[str]
) -> dict:
    sign = -1.0 if kind == "capability" else 1.0
    oriented = sign * frame[column].astype(float)
    scored = frame.assign(_oriented=oriented)
    psi, _ = granulated_kendall(scored, "_oriented", "gap", axes) if axes else (math.nan, {})
    axiom, axiom_value = "n/a", None
    if kind == "capability":
        at_one_rows = np.isclose(frame["level"], 1.0) & frame["corruption"].isin(uninformative)
        at_one = frame.loc[at_one_rows, column].astype(float)
        if len(at_one) and at_one.notna().any():
            axiom_value = float(at_one.mean())
            axiom = "pass" if abs(axiom_value) <= AXIOM_TOLERANCE else "fail"
    levels = frame["level"].astype(float)
    values = frame[column].astype(float)
    return {
        "value_clean": float(values[levels == levels.min()].mean()),
        "value_noise": float(values[levels == levels.max()].mean()),
        "kind": "reference" if reference else kind,
        "reference": reference,
        "runs": int(frame[column].notna().sum()),
        "tau_gap": kendall_tau(oriented, frame["gap"]),
        "psi": psi,
        "tau_level": _tau_with_level(frame, oriented),
        "axiom": axiom,
        "axiom_value": axiom_value,
    }


def build_leaderboard(
    runs: pd.DataFrame,
    values: pd.DataFrame,
    kinds: dict[str, str],
    default_options: dict[str, str] | None = None,
    uninformative: set[str] | None = None,
) -> pd.DataFrame:
    """One row per measure (and per non-default options), plus the noisy-oracle
    reference rows, sorted by τ with the gap (best first). ``uninformative`` names the
    corruptions whose level-1 cells carry no label information (the p_c = 1 check)."""
    default_options = default_options or {}
    uninformative = {"labels", "random-labels", "gaussian"} if uninformative is None else uninformative
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    runs = runs.copy()
    axes = [a for a in AXES if a in runs.columns and runs[a].nunique(dropna=False) > 1]
    rows = []
    latest = latest_values(values, default_options)
    for label, group in latest.groupby("label", sort=True):
        measure = group["measure"].iloc[0]
        merged = runs.merge(group[["run_id", "value", "seconds"]], on="run_id", how="inner")
        if merged.empty:
            continue
        row = _score_row(merged, "value", kinds.get(measure, "complexity"), axes, False, uninformative)
        row.update(measure=label, seconds_per_run=float(merged["seconds"].mean()))
        rows.append(row)
    for std in ORACLE_STDS:
        oracle = runs.assign(oracle=noisy_oracle(runs["gap"].to_numpy(dtype=float), std, ORACLE_SEED))
        row = _score_row(oracle, "oracle", "complexity", axes, True, uninformative)
        row.update(measure=f"oracle σ={std}", seconds_per_run=0.0)
        rows.append(row)
    board = pd.DataFrame(rows, columns=COLUMNS)
    board = board.sort_values("tau_gap", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return board


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
    """NaN → null, ±∞ → "inf"/"-inf" (JSON has neither)."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def render(board: pd.DataFrame, fmt: Format = "table", title: str = "genbench leaderboard") -> str:
    """The leaderboard as text in ``fmt`` (table = a rich table)."""
    if fmt == "csv":
        return board.to_csv(index=False)
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
