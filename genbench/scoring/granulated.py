"""Granulated Kendall Ψ and its per-axis ψ (Jiang et al., ICLR 2020, "Fantastic generalization
measures and where to find them", §4), and the grid helpers the axis-based scores share."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from genbench.scoring.kendall import _GroupedTau, _float_column, _mean_in_order


# ---------------------------------------------------------------------------
# Shared helpers for the axis-based scores
# ---------------------------------------------------------------------------


def _rows_with_values(frame: pd.DataFrame, measure: str, gap: str) -> pd.DataFrame:
    """Rows where both the measure and the gap are present (not NaN)."""
    present = frame[measure].notna() & frame[gap].notna()
    return frame.loc[present]


def _varying_axes(frame: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """The axes whose column takes at least two distinct values (NaN counts as a value)."""
    return [axis for axis in axes if frame[axis].nunique(dropna=False) > 1]


def _groups_sharing(frame: pd.DataFrame, shared_axes: Sequence[str]) -> Iterator[pd.DataFrame]:
    """Sub-frames of rows that agree on every axis in ``shared_axes``.

    With no shared axes the whole frame is one group.
    """
    if not shared_axes:
        if len(frame):
            yield frame
        return
    for _, group in frame.groupby(list(shared_axes), dropna=False, sort=False, observed=True):
        yield group


def _axis_codes(values: pd.Series) -> np.ndarray:
    """Integer codes for hashable axis values; NaN gets its own code."""
    codes, _ = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64)


def _comparison_sign(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """sign(left - right) computed with comparisons (safe for +-inf)."""
    return (left > right).astype(float) - (left < right).astype(float)


# ---------------------------------------------------------------------------
# Granulated Kendall (Jiang et al. 2020)
# ---------------------------------------------------------------------------


def _combined_codes(columns: Sequence[np.ndarray], rows: int) -> tuple[np.ndarray, int]:
    """One code per row for its tuple of values over ``columns`` (integer codes), and the
    number of distinct tuples; a single code for all rows when there are no columns."""
    combined = np.zeros(rows, dtype=np.int64)
    count = 1 if rows else 0
    for codes in columns:
        combined = combined * (int(codes.max(initial=0)) + 1) + codes
        combined, uniques = pd.factorize(combined)
        count = len(uniques)
    return combined.astype(np.intp, copy=False), count


class _GranulatedGrid:
    """The groups of granulated Kendall for one set of rows: for every varying axis, the
    rows that agree on every other axis. They depend only on the rows' axis values and
    the gap, so one grid serves every measure scored on those rows."""

    def __init__(self, codes: Mapping[str, np.ndarray], gap: np.ndarray) -> None:
        self.codes = dict(codes)
        rows = len(gap)
        self.axes = [axis for axis, axis_codes in self.codes.items() if axis_codes.max(initial=0) > 0]
        self.by_axis: dict[str, _GroupedTau] = {}
        for axis in self.axes:
            others = [axis_codes for other, axis_codes in self.codes.items() if other != axis]
            groups, count = _combined_codes(others, rows)
            self.by_axis[axis] = _GroupedTau(groups, count, gap, distinct=self.codes[axis])

    def score(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[float, dict[str, float]]:
        """(Psi, {axis: psi_i}) of ``x`` (NaN outside ``rows``, a boolean mask; all rows when None).

        An axis counts when it varies over ``rows`` (a NaN value of ``x`` does not matter);
        within it, the groups are averaged in the order of their first usable row."""
        per_axis: dict[str, float] = {}
        for axis in self.axes:
            if rows is not None:
                axis_codes = self.codes[axis][rows]
                if axis_codes.size == 0 or (axis_codes == axis_codes[0]).all():
                    continue
            grouped = self.by_axis[axis]
            per_axis[axis] = _mean_in_order(grouped.taus(x), grouped.first_rows(x))
        defined = [value for value in per_axis.values() if not np.isnan(value)]
        overall = float(np.mean(defined)) if defined else float("nan")
        return overall, per_axis


def granulated_kendall(
    frame: pd.DataFrame, measure: str, gap: str, axes: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """Granulated Kendall coefficient Psi of Jiang et al. (ICLR 2020),
    "Fantastic generalization measures and where to find them", section 4.

    For each hyperparameter axis ``i`` with value set Theta_i::

        psi_i = mean over (theta_j for all j != i) of
                tau( {(mu(theta), g(theta)) : theta_i in Theta_i} )
        Psi   = mean_i psi_i

    i.e. rows are grouped by the values of all the *other* axes; in every group
    with at least two rows and at least two distinct values of axis ``i`` the
    Kendall tau-b between measure and gap is computed (NaN results, e.g. a
    constant measure, are skipped) and ``psi_i`` is their mean. ``Psi`` is the
    mean of the defined ``psi_i``.

    Notes
    -----
    * Columns that are not in ``axes`` (e.g. the random seed) are *not*
      grouped on: runs that differ only by seed fall into the same group, so
      each group's tau also counts pairs of runs with the same value of axis
      ``i`` (seed-to-seed variation). Jiang et al. average over seeds first;
      average the frame yourself if you want exactly that.
    * Rows whose measure or gap is NaN are dropped first.
    * Axes whose column is constant across the whole frame are skipped and
      absent from the returned dict; a varying axis with no usable group maps
      to ``nan``.
    * The taus of all groups of an axis are computed at once (see
      :func:`grouped_kendall_tau`), groups averaged in the order of their first row.

    Returns ``(Psi, {axis: psi_i})``; ``Psi`` is ``nan`` when no ``psi_i`` is
    defined.
    """
    codes = {axis: _axis_codes(frame[axis]) for axis in dict.fromkeys(axes)}
    grid = _GranulatedGrid(codes, _float_column(frame, gap))
    return grid.score(_float_column(frame, measure))


