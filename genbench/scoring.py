"""Scores that rank generalization measures against the observed generalization gap.

Every function here is pure (numpy/pandas/scipy only, no registry, no I/O) and works
on a ``pandas.DataFrame`` with one row per trained run: a column holding the value of
a generalization measure, a column holding the generalization gap, and one column per
hyperparameter *axis* (model name, corruption level, width, ...).

Implemented scores
------------------
* :func:`kendall_tau` -- Kendall's tau-b (Kendall 1945), NaN-aware;
  :func:`grouped_kendall_tau` -- the same within many groups at once.
* :func:`granulated_kendall` -- Jiang et al. (ICLR 2020), "Fantastic
  generalization measures and where to find them", section 4.
* :func:`sign_error` -- Dziugaite et al. (NeurIPS 2020), "In search of robust
  measures of generalization".
* :func:`conditional_mutual_information` -- Jiang et al. (NeurIPS 2020
  competition), "NeurIPS 2020 Competition: Predicting Generalization in Deep
  Learning" (PGDL).
* :func:`rank_correlation_with`, :func:`noisy_oracle` -- small helpers.
* :func:`score_measures` -- the leaderboard's rows: every measure of a store's
  frames (``Store.runs()``, ``Store.measure_values()``) scored with the above.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from genbench.schemas import MeasureScore

__all__ = [
    "kendall_tau",
    "grouped_kendall_tau",
    "granulated_kendall",
    "sign_error",
    "conditional_mutual_information",
    "rank_correlation_with",
    "noisy_oracle",
    "score_measures",
    "AXES",
    "ORACLE_STDS",
    "ORACLE_SEED",
    "AXIOM_TOLERANCE",
    "UNINFORMATIVE_AT_FULL",
]

# Largest number of pairwise comparisons materialised at once (a block of rows
# against all rows); bounds memory at a few tens of MB whatever n is.
_MAX_PAIRS_PER_BLOCK = 4_000_000

# Above this many joint states we count cells with np.unique instead of np.bincount.
_MAX_BINCOUNT_STATES = 1 << 24

# Kendall tau of at most this many points is computed from all pairs (vectorised, and for
# many groups at once); above it by scipy.stats.kendalltau, O(n log n) per call but with a
# fixed cost of about 0.1 ms a call, about what all pairs of a group this size cost.
_PAIRWISE_MAX_ROWS = 256


# ---------------------------------------------------------------------------
# Kendall tau-b
# ---------------------------------------------------------------------------


def _as_float_vector(values: object, name: str) -> np.ndarray:
    vector = np.asarray(values, dtype=float)
    if vector.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {vector.shape}")
    return vector


def _float_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as float64 values, missing entries (None, pd.NA) as NaN."""
    return frame[column].to_numpy(dtype=float, na_value=np.nan)


def _pairwise_signs(block: np.ndarray, everything: np.ndarray) -> np.ndarray:
    """sign(block_i - everything_j) as int8, computed with comparisons so that
    ``inf - inf`` never produces NaN (equal infinities compare as tied)."""
    left = block[:, None]
    right = everything[None, :]
    return (left > right).astype(np.int8) - (left < right).astype(np.int8)


def _concordance_sum(x: np.ndarray, y: np.ndarray) -> int:
    """Sum over unordered pairs i < j of sign(x_i - x_j) * sign(y_i - y_j),
    i.e. (#concordant - #discordant). Computed in row blocks to bound memory."""
    n = x.size
    rows_per_block = max(1, _MAX_PAIRS_PER_BLOCK // max(n, 1))
    ordered_total = 0
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        signs_x = _pairwise_signs(x[start:stop], x)
        signs_y = _pairwise_signs(y[start:stop], y)
        ordered_total += int(np.sum(signs_x * signs_y, dtype=np.int64))
    # Each unordered pair was counted twice (i, j) and (j, i); the diagonal is 0.
    return ordered_total // 2


def _tied_pair_count(values: np.ndarray) -> int:
    """Number of unordered pairs with equal values: sum over tie groups of t(t-1)/2."""
    _, group_sizes = np.unique(values, return_counts=True)
    group_sizes = group_sizes.astype(np.int64)
    return int(np.sum(group_sizes * (group_sizes - 1) // 2))


def _tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """tau-b of two NaN-free vectors of at least two points (nan if either is constant)."""
    if x.size > _PAIRWISE_MAX_ROWS:
        from scipy.stats import kendalltau

        # scipy counts the same integers (concordant - discordant, untied pairs) and
        # divides in the same order, so both paths give the same float.
        return float(kendalltau(x, y, method="asymptotic").statistic)
    n = x.size
    total_pairs = n * (n - 1) // 2
    untied_in_x = total_pairs - _tied_pair_count(x)
    untied_in_y = total_pairs - _tied_pair_count(y)
    if untied_in_x == 0 or untied_in_y == 0:
        return float("nan")
    concordance = _concordance_sum(x, y)
    tau = concordance / np.sqrt(untied_in_x) / np.sqrt(untied_in_y)
    return float(np.clip(tau, -1.0, 1.0))


def _tau_without_nan(x: np.ndarray, y: np.ndarray) -> float:
    """tau-b over the positions where neither float vector is NaN."""
    both_present = ~(np.isnan(x) | np.isnan(y))
    if not both_present.all():
        x, y = x[both_present], y[both_present]
    if x.size < 2:
        return float("nan")
    return _tau_b(x, y)


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b rank correlation between two 1-D array-likes.

    Formula (Kendall 1945, "The treatment of ties in ranking problems")::

        tau_b = (C - D) / sqrt((n0 - n1) * (n0 - n2))

    where C / D are the numbers of concordant / discordant pairs,
    ``n0 = n(n-1)/2``, and ``n1`` / ``n2`` are the numbers of pairs tied in
    ``x`` / in ``y``. This is the statistic ``scipy.stats.kendalltau`` returns
    by default (``variant="b"``).

    Entries where either ``x`` or ``y`` is NaN are dropped; +-inf are kept and
    ordered normally (equal infinities are ties). Returns ``nan`` when fewer
    than two points remain or when either vector is constant. Up to 256 points
    the pairs are compared directly (vectorised); above that
    ``scipy.stats.kendalltau`` counts them in O(n log n). Both count the same
    integers, so the result does not depend on the path.
    """
    x_values = _as_float_vector(x, "x")
    y_values = _as_float_vector(y, "y")
    if x_values.shape != y_values.shape:
        raise ValueError(f"x and y differ in length: {x_values.size} vs {y_values.size}")
    return _tau_without_nan(x_values, y_values)


def rank_correlation_with(frame: pd.DataFrame, measure: str, column: str) -> float:
    """Kendall tau-b between ``frame[measure]`` and ``frame[column]``.

    Convenience wrapper: ``kendall_tau(frame[measure], frame[column])`` (see
    :func:`kendall_tau`; rows where either is NaN are dropped). With ``column``
    the generalization gap this is the plain (non-granulated) "overall tau" of
    Jiang et al. (ICLR 2020), "Fantastic generalization measures", section 4.
    """
    return kendall_tau(_float_column(frame, measure), _float_column(frame, column))


# ---------------------------------------------------------------------------
# Kendall tau-b within many groups at once
# ---------------------------------------------------------------------------


def _signs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """sign(left - right) as int8 by comparisons: NaN compares as neither greater nor
    smaller (sign 0), equal infinities as tied."""
    return (left > right).view(np.int8) - (left < right).view(np.int8)


class _Block:
    """Groups of (about) one size, padded to ``width`` rows: what one pass of numpy covers."""

    def __init__(self, groups: np.ndarray, rows: np.ndarray, y: np.ndarray, y_present: np.ndarray,
                 distinct: np.ndarray | None) -> None:
        self.groups = groups  # (k,) group ids
        self.rows = rows  # (k, width) row indices; the padding points at the extra row (NaN)
        y_rows = y[rows]
        self.y_sign = _signs(y_rows[:, :, None], y_rows[:, None, :])  # (k, width, width)
        self.y_above = self.y_sign > 0  # each pair untied in y, once
        self.y_untied = np.count_nonzero(self.y_above, axis=(1, 2))
        self.distinct = None if distinct is None else distinct[rows]
        self.distinct_everywhere = self.distinct_among(y_present[rows])

    def distinct_among(self, present: np.ndarray) -> np.ndarray | None:
        """Whether each group takes two different ``distinct`` codes among its ``present`` rows."""
        if self.distinct is None:
            return None
        low = np.where(present, self.distinct, np.iinfo(np.int64).max).min(axis=1)
        high = np.where(present, self.distinct, np.iinfo(np.int64).min).max(axis=1)
        return low < high


#: Widths small groups are padded to (at most 1.5 times their size): one numpy pass per width.
_BLOCK_WIDTHS = np.array([2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256])


class _GroupedTau:
    """Kendall tau-b of any ``x`` against a fixed ``y`` within every group of a fixed
    partition of the rows, for many ``x`` (one per measure) in turn.

    What depends only on the partition and ``y`` is computed once: the groups of at most
    ``_PAIRWISE_MAX_ROWS`` rows laid out as blocks of equal width, and per block the sign
    of ``y_i - y_j`` for every pair of its rows and the number of pairs untied in ``y``.
    For one ``x``, per block and for all its groups at once::

        tau_b = sum over pairs of sign(dx) sign(dy) / sqrt(#pairs untied in x * #pairs untied in y)

    (over ordered pairs, sum [x_i > x_j] sign(y_i - y_j) is that numerator and
    sum [x_i > x_j] the first count). A larger group goes to ``scipy.stats.kendalltau``
    (O(n log n)). A row whose ``x`` or ``y`` is NaN is left out of its group. With
    ``distinct`` (integer codes, one per row) a group also needs two different codes among
    its remaining rows, else its tau is nan.
    """

    def __init__(self, groups: np.ndarray, group_count: int, y: np.ndarray, distinct: np.ndarray | None = None) -> None:
        self.groups = np.asarray(groups, dtype=np.intp)
        self.group_count = int(group_count)
        self.rows = self.groups.size
        self.y = np.asarray(y, dtype=float)
        self.y_present = ~np.isnan(self.y)
        self.y_complete = bool(self.y_present.all())
        self.y_present_count = int(self.y_present.sum())
        self.distinct = None if distinct is None else np.asarray(distinct, dtype=np.int64)
        member = np.flatnonzero(self.groups >= 0)
        order = member[np.argsort(self.groups[member], kind="stable")]
        sorted_groups = self.groups[order]
        starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]) if order.size else order
        lengths = np.diff(np.r_[starts, order.size])
        group_ids = sorted_groups[starts]
        # the extra row (index self.rows) pads blocks: NaN in x and y, never present
        y_padded = np.append(self.y, np.nan)
        present_padded = np.append(self.y_present, False)
        distinct_padded = None if self.distinct is None else np.append(self.distinct, 0)
        small = (lengths >= 2) & (lengths <= _PAIRWISE_MAX_ROWS)
        widths = _BLOCK_WIDTHS[np.searchsorted(_BLOCK_WIDTHS, np.minimum(lengths, _BLOCK_WIDTHS[-1]))]
        self.blocks: list[_Block] = []
        for width in np.unique(widths[small]):
            offsets = np.arange(width)
            every = np.flatnonzero(small & (widths == width))
            per_block = max(1, _MAX_PAIRS_PER_BLOCK // int(width) ** 2)
            for chosen in np.array_split(every, math.ceil(every.size / per_block)):
                inside = offsets[None, :] < lengths[chosen][:, None]
                positions = np.minimum(starts[chosen][:, None] + offsets[None, :], order.size - 1)
                rows = np.where(inside, order[positions], self.rows)
                self.blocks.append(_Block(group_ids[chosen], rows, y_padded, present_padded, distinct_padded))
        large = np.flatnonzero(lengths > _PAIRWISE_MAX_ROWS)
        self.large = [(int(group_ids[i]), order[starts[i] : starts[i] + lengths[i]]) for i in large]

    def usable(self, x: np.ndarray) -> np.ndarray:
        """``x`` with NaN wherever ``y`` is NaN too: the rows that count."""
        x = np.asarray(x, dtype=float)
        return x if self.y_complete else np.where(self.y_present, x, np.nan)

    def taus(self, x: np.ndarray) -> np.ndarray:
        """tau-b of ``x`` against ``y`` in every group (nan where undefined)."""
        x = self.usable(x)
        present = ~np.isnan(x)
        complete = int(present.sum()) == self.y_present_count
        x_padded = np.append(x, np.nan)
        taus = np.full(self.group_count, np.nan)
        for block in self.blocks:
            x_rows = x_padded[block.rows]
            greater = x_rows[:, :, None] > x_rows[:, None, :]
            concordance = (greater.view(np.int8) * block.y_sign).sum(axis=(1, 2), dtype=np.int64)
            x_untied = np.count_nonzero(greater, axis=(1, 2))
            if complete:
                y_untied, distinct = block.y_untied, block.distinct_everywhere
            else:
                rows_present = ~np.isnan(x_rows)
                weights = rows_present.astype(np.float32)[:, :, None]
                # pairs untied in y among the present rows (integers, exact in float32)
                above = np.matmul(block.y_above.astype(np.float32), weights)
                y_untied = np.rint(np.sum(above * weights, axis=(1, 2))).astype(np.int64)
                distinct = block.distinct_among(rows_present)
            defined = (x_untied > 0) & (y_untied > 0)
            if distinct is not None:
                defined &= distinct
            # the same float operations, in the same order, as kendall_tau's
            tau = concordance[defined] / np.sqrt(x_untied[defined]) / np.sqrt(y_untied[defined])
            taus[block.groups[defined]] = np.clip(tau, -1.0, 1.0)
        for group, rows in self.large:
            rows = rows[present[rows]]
            if rows.size < 2:
                continue
            if self.distinct is not None:
                codes = self.distinct[rows]
                if (codes == codes[0]).all():
                    continue
            taus[group] = _tau_b(x[rows], self.y[rows])
        return taus

    def first_rows(self, x: np.ndarray) -> np.ndarray:
        """The first row of every group whose ``x`` (and ``y``) is not NaN (``rows`` if none)."""
        present = np.flatnonzero(~np.isnan(self.usable(x)) & (self.groups >= 0))
        first = np.full(self.group_count, self.rows, dtype=np.intp)
        np.minimum.at(first, self.groups[present], present)
        return first


def _mean_in_order(values: np.ndarray, order_keys: np.ndarray | None = None) -> float:
    """Mean of the non-NaN ``values`` taken in the order of ``order_keys`` (nan if none)."""
    defined = ~np.isnan(values)
    if not defined.any():
        return float("nan")
    chosen = values[defined]
    if order_keys is not None:
        chosen = chosen[np.argsort(order_keys[defined], kind="stable")]
    return float(np.mean(chosen))


def grouped_kendall_tau(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, groups: Sequence[int] | np.ndarray
) -> np.ndarray:
    """Kendall tau-b of ``x`` against ``y`` within each group: ``result[g]`` is
    ``kendall_tau(x[groups == g], y[groups == g])`` for every ``g`` in
    ``0 .. max(groups)`` (nan for a group with fewer than two rows without NaN, or
    constant there). Rows with a negative group belong to none.

    The pairs of all groups of at most 256 rows are compared at once with numpy
    (groups of about one size as one array of shape groups × rows × rows); larger go to
    ``scipy.stats.kendalltau``. The result equals the loop over groups exactly.
    """
    x_values = _as_float_vector(x, "x")
    y_values = _as_float_vector(y, "y")
    group_values = np.asarray(groups)
    if group_values.ndim != 1 or not (x_values.shape == y_values.shape == group_values.shape):
        raise ValueError(f"x, y and groups differ in shape: {x_values.shape}, {y_values.shape}, {group_values.shape}")
    if group_values.size and not np.issubdtype(group_values.dtype, np.integer):
        raise ValueError(f"groups must be integers, got {group_values.dtype}")
    group_values = group_values.astype(np.intp)
    count = int(group_values.max()) + 1 if group_values.size else 0
    return _GroupedTau(group_values, max(count, 0), y_values).taus(x_values)


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


# ---------------------------------------------------------------------------
# Robust sign-error (Dziugaite et al. 2020)
# ---------------------------------------------------------------------------


def _noise_filtered_weight(gap_difference: np.ndarray, test_size: float) -> np.ndarray:
    """Hoeffding weight of a pair, minus 1/2 and clipped at 0 (Dziugaite et al. 2020).

    w = max(0, 1 - 2 exp(-2 n (|dg|/2)^2))^2 is a lower bound on the
    probability that two gaps each estimated from n test points truly differ in
    the observed direction; pairs with w <= 1/2 get no weight: (w - 1/2)_+.
    """
    half_difference = np.abs(gap_difference) / 2.0
    hoeffding = np.maximum(0.0, 1.0 - 2.0 * np.exp(-2.0 * test_size * half_difference**2)) ** 2
    return np.nan_to_num(np.maximum(0.0, hoeffding - 0.5), nan=0.0)


def _environment_error(group: pd.DataFrame, measure: str, gap: str, axis: str, min_effective_size: float, test_size: float) -> float:
    """Weighted sign-error of one environment, or nan if its effective size is too small."""
    axis_codes = _axis_codes(group[axis])
    first, second = np.triu_indices(len(group), k=1)
    differ = axis_codes[first] != axis_codes[second]
    first, second = first[differ], second[differ]
    measures = _float_column(group, measure)
    gaps = _float_column(group, gap)
    agreement = _comparison_sign(measures[first], measures[second]) * _comparison_sign(gaps[first], gaps[second])
    errors = (1.0 - agreement) / 2.0
    weights = _noise_filtered_weight(gaps[first] - gaps[second], test_size)
    weight_sum = weights.sum()
    if weight_sum <= 0:
        return float("nan")
    effective_size = weight_sum**2 / np.sum(weights**2)
    if effective_size < min_effective_size:
        return float("nan")
    return float(np.sum(weights * errors) / weight_sum)


def sign_error(
    frame: pd.DataFrame,
    measure: str,
    gap: str,
    axes: Sequence[str],
    test_size: float,
    min_effective_size: float = 12.0,
) -> dict[str, float | int]:
    """Distribution over environments of the weighted sign-error of Dziugaite
    et al. (NeurIPS 2020), "In search of robust measures of generalization".

    For every unordered pair of rows (a, b) that differ in exactly one of
    ``axes`` (all other axes equal; non-axis columns such as the seed are free)::

        error(a, b) = (1 - sign(mu_a - mu_b) * sign(g_a - g_b)) / 2
        w(a, b)     = max(0, 1 - 2 exp(-2 n (|g_a - g_b| / 2)^2))^2
        w(a, b)     = max(0, w(a, b) - 1/2)

    with ``n = test_size``: the weight discounts pairs whose gaps differ by less
    than the Monte-Carlo noise of a test set of that size (Hoeffding bound).
    Environment = (the differing axis, the values of all the other axes). Its
    error is ``sum(w * error) / sum(w)`` and it is kept only if its effective
    sample size ``(sum w)^2 / sum w^2 >= min_effective_size``.

    Note: the authors' code uses a finer environment, one per pair of
    hyperparameter *configurations* (the two values of the differing axis are
    part of the key); here all pairs along one axis with a shared setting form
    one environment.

    Rows whose measure or gap is NaN are excluded. Returns
    ``{"mean", "p90", "max", "environments"}`` over the kept environments'
    errors (p90: linear-interpolated 90th percentile); the statistics are
    ``nan`` and ``environments`` is 0 when none qualifies.
    """
    axes = list(axes)
    rows = _rows_with_values(frame, measure, gap)
    environment_errors: list[float] = []
    for axis in _varying_axes(rows, axes):
        other_axes = [other for other in axes if other != axis]
        for group in _groups_sharing(rows, other_axes):
            if len(group) < 2:
                continue
            error = _environment_error(group, measure, gap, axis, min_effective_size, test_size)
            if not np.isnan(error):
                environment_errors.append(error)
    if not environment_errors:
        nan = float("nan")
        return {"mean": nan, "p90": nan, "max": nan, "environments": 0}
    errors = np.asarray(environment_errors)
    return {
        "mean": float(errors.mean()),
        "p90": float(np.quantile(errors, 0.9)),
        "max": float(errors.max()),
        "environments": int(errors.size),
    }


# ---------------------------------------------------------------------------
# Conditional mutual information (PGDL competition)
# ---------------------------------------------------------------------------


def _conditioning_sets(varying_axes: Sequence[str]) -> list[tuple[str, ...]]:
    """Pairs of distinct axes; single axes if only one varies; the empty set if none."""
    if len(varying_axes) >= 2:
        return list(combinations(varying_axes, 2))
    if len(varying_axes) == 1:
        return [(varying_axes[0],)]
    return [()]


def _setting_codes(frame: pd.DataFrame, conditioning: Sequence[str]) -> tuple[np.ndarray, int]:
    """One integer per row for its values of the conditioning axes, and the code count.

    Codes are compacted to the settings present, so the count is at most len(frame).
    """
    codes = np.zeros(len(frame), dtype=np.int64)
    for axis in conditioning:
        axis_codes = _axis_codes(frame[axis])
        codes = codes * (int(axis_codes.max()) + 1) + axis_codes
    compact_codes, settings_present = pd.factorize(codes)
    return compact_codes.astype(np.int64), len(settings_present)


def _joint_state_counts(setting: np.ndarray, cardinality: int, measures: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of (cell, V_mu, V_g) over ordered pairs (a, b), a != b.

    The cell of (a, b) is (setting_a, setting_b); the state id is
    ``cell * 4 + 2 * V_mu + V_g``. Returns (state ids, counts), zero counts omitted.
    """
    n = setting.size
    state_count = cardinality * cardinality * 4
    use_bincount = state_count <= _MAX_BINCOUNT_STATES
    dense = np.zeros(state_count if use_bincount else 0, dtype=np.int64)
    sparse_ids: list[np.ndarray] = []
    sparse_counts: list[np.ndarray] = []
    rows_per_block = max(1, _MAX_PAIRS_PER_BLOCK // max(n, 1))
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        block = np.arange(start, stop)
        measure_greater = measures[block, None] > measures[None, :]
        gap_greater = gaps[block, None] > gaps[None, :]
        cell = setting[block, None] * cardinality + setting[None, :]
        state = cell * 4 + 2 * measure_greater + gap_greater
        not_self = block[:, None] != np.arange(n)[None, :]
        state = state[not_self]
        if use_bincount:
            dense += np.bincount(state, minlength=state_count)
        else:
            ids, counts = np.unique(state, return_counts=True)
            sparse_ids.append(ids)
            sparse_counts.append(counts)
    if use_bincount:
        present = np.flatnonzero(dense)
        return present, dense[present]
    ids, inverse = np.unique(np.concatenate(sparse_ids), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(sparse_counts)).astype(np.int64)
    return ids, counts


def _cell_tables(state_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Array of shape (cells, 2, 2): counts indexed by [cell, V_mu, V_g]."""
    cells, cell_index = np.unique(state_ids // 4, return_inverse=True)
    # state_ids % 4 == 2 * V_mu + V_g, the row-major position in a 2x2 table.
    flat_position = cell_index * 4 + state_ids % 4
    flat_tables = np.bincount(flat_position, weights=counts, minlength=cells.size * 4)
    return flat_tables.reshape(cells.size, 2, 2)


def _plogp_sum(probabilities: np.ndarray, reference: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """sum p * log2(p / reference) over ``axis``, with 0 log 0 = 0."""
    positive = probabilities > 0
    safe_ratio = np.where(positive, probabilities / np.where(positive, reference, 1.0), 1.0)
    return np.sum(np.where(positive, probabilities * np.log2(safe_ratio), 0.0), axis=axis)


def _mutual_information_and_gap_entropy(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell MI(V_mu; V_g) and H(V_g) in bits from (cells, 2, 2) count tables."""
    joint = tables / tables.sum(axis=(1, 2), keepdims=True)
    measure_marginal = joint.sum(axis=2, keepdims=True)
    gap_marginal = joint.sum(axis=1, keepdims=True)
    mutual_information = _plogp_sum(joint, measure_marginal * gap_marginal, axis=(1, 2))
    gap_entropy = -_plogp_sum(gap_marginal, np.ones_like(gap_marginal), axis=(1, 2))
    return mutual_information, gap_entropy


def _cells_with_varying_gap(tables: np.ndarray) -> np.ndarray:
    """The cells whose V_g takes both values; elsewhere H(V_g) = 0 and so MI = 0."""
    gap_counts = tables.sum(axis=1)
    return tables[(gap_counts[:, 0] > 0) & (gap_counts[:, 1] > 0)]


def _normalised_cmi(frame: pd.DataFrame, measure: str, gap: str, conditioning: Sequence[str]) -> float:
    """mean over cells of MI(V_mu; V_g) / mean over cells of H(V_g), or nan.

    Both means run over the same cells, so the ratio equals sum MI / sum H and
    cells with constant V_g (contributing 0 to both sums) can be left out.
    """
    setting, cardinality = _setting_codes(frame, conditioning)
    state_ids, counts = _joint_state_counts(
        setting, cardinality, _float_column(frame, measure), _float_column(frame, gap)
    )
    informative = _cells_with_varying_gap(_cell_tables(state_ids, counts))
    if informative.shape[0] == 0:
        return float("nan")
    mutual_information, gap_entropy = _mutual_information_and_gap_entropy(informative)
    return float(np.clip(mutual_information.sum() / gap_entropy.sum(), 0.0, 1.0))


def conditional_mutual_information(frame: pd.DataFrame, measure: str, gap: str, axes: Sequence[str]) -> float:
    """Conditional mutual information score of the PGDL competition: Jiang et
    al. (NeurIPS 2020 competition track), "NeurIPS 2020 Competition: Predicting
    Generalization in Deep Learning".

    Over all ordered pairs (a, b), a != b, of rows::

        V_g  = [g_a  > g_b]
        V_mu = [mu_a > mu_b]

    For each unordered pair of distinct varying axes (h1, h2) the ordered pairs
    are grouped into cells by (h1(a), h1(b), h2(a), h2(b)); in each cell the
    empirical joint distribution of (V_mu, V_g) gives MI(V_mu; V_g) and
    H(V_g) in bits, and::

        score(h1, h2) = mean_cells MI(V_mu; V_g) / mean_cells H(V_g)
        result        = 100 * min_{(h1, h2)} score(h1, h2)

    A score whose denominator is 0 is ``nan`` and ignored by the min; the
    result is ``nan`` if no score is defined. Only axes that vary (after
    dropping rows whose measure or gap is NaN) count; if exactly one varies the
    cells are (h(a), h(b)), and if none varies all ordered pairs form a single
    cell (unconditional MI). Cells are the non-empty ones. The score lies in
    [0, 100] and, mutual information being symmetric, rewards a measure
    *anti*-correlated with the gap as much as a correlated one.

    Differences from the organisers' scoring code: theirs also counts the
    pairs (a, a) (as V_g = V_mu = 0) and averages over every cell of the full
    hyperparameter grid, which it assumes complete.
    """
    rows = _rows_with_values(frame, measure, gap)
    if len(rows) < 2:
        return float("nan")
    scores = [
        _normalised_cmi(rows, measure, gap, conditioning)
        for conditioning in _conditioning_sets(_varying_axes(rows, list(axes)))
    ]
    defined = [score for score in scores if not np.isnan(score)]
    return 100.0 * min(defined) if defined else float("nan")


# ---------------------------------------------------------------------------
# Reference predictors
# ---------------------------------------------------------------------------


def noisy_oracle(gap: Sequence[float] | np.ndarray, std: float, seed: int | None) -> np.ndarray:
    """The generalization gap plus Gaussian noise: ``gap + N(0, std^2)``.

    Jiang et al. (ICLR 2020), "Fantastic generalization measures", report such
    noisy oracles (std 0.01 and 0.05) as reference rows of their tables. Noise
    is drawn with ``numpy.random.default_rng(seed)``, so the same seed gives the
    same array.
    """
    if std < 0:
        raise ValueError(f"std must be non-negative, got {std}")
    gap_values = np.asarray(gap, dtype=float)
    rng = np.random.default_rng(seed)
    return gap_values + rng.normal(0.0, std, size=gap_values.shape)


# ---------------------------------------------------------------------------
# The leaderboard: every measure of a store scored against the gap
# ---------------------------------------------------------------------------

#: The grid axes of granulated Kendall, those that vary over the scored runs (not the seed).
AXES = ("dataset", "model", "corruption", "level", "train_config", "test_labels")
#: The reference rows: the true gap plus N(0, std^2), drawn with this seed.
ORACLE_STDS = (0.02, 0.05)
ORACLE_SEED = 0
#: A capability score passes the p_c = 1 check when |its mean| there is at most this.
AXIOM_TOLERANCE = 0.05
#: The built-in corruptions that declare ``uninformative_at_full``: at level 1 their training
#: labels carry no information. Used for runs that do not record ``labels_uninformative``.
UNINFORMATIVE_AT_FULL = frozenset({"labels", "random-labels", "gaussian"})


def _nan_mean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries (nan if none), summed the way ``pandas.Series.mean`` sums."""
    missing = np.isnan(values)
    count = values.size - int(missing.sum())
    if count == 0:
        return float("nan")
    with np.errstate(invalid="ignore"):  # inf + -inf is nan, as pandas has it
        return float(np.where(missing, 0.0, values).sum() / count)


def _label(name: str, options: Mapping[str, object], plain: bool) -> str:
    """``name``, or ``name[k=v,...]`` when its options must be told apart."""
    if plain:
        return name
    inner = ",".join(f"{key}={value}" for key, value in sorted(options.items()))
    return f"{name}[{inner}]"


def _object_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as an object array with None for missing entries (all None when absent)."""
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    values = frame[column].to_numpy(dtype=object)
    return np.where(pd.isna(values), None, values)


def _value_status(values: pd.DataFrame) -> np.ndarray:
    """The values' status; where it is missing (older stores), "failed" with an error or without a
    value, "ok" otherwise."""
    status = _object_column(values, "status")
    errors = _object_column(values, "error")
    healthy = pd.isna(errors) & ~pd.isna(values["value"].to_numpy(dtype=float, na_value=np.nan))
    return np.where(pd.isna(status), np.where(healthy, "ok", "failed"), status)


def _last_known(keys: np.ndarray, values: np.ndarray, order: np.ndarray) -> dict:
    """For every key, its last value other than None in ``order`` (keys with none absent)."""
    known = order[~pd.isna(values[order])]
    if not known.size:
        return {}
    chosen = pd.Series(values[known]).groupby(keys[known], sort=False).last()
    return dict(zip(chosen.index, chosen.to_numpy()))


@dataclass
class _Variant:
    """One leaderboard row's values: a measure at one set of options, on the board's runs."""

    label: str
    name: str
    kind: str
    value: np.ndarray  # one per run, NaN where there is no "ok" value
    present: np.ndarray  # whether the run has a value row (of any status)
    seconds: np.ndarray  # of each value row


def _variants(values: pd.DataFrame, run_ids: pd.Index, kinds: Mapping[str, str] | None) -> list[_Variant]:
    """The values of each measure's newest version on the runs, one variant per label, by label.

    The newest version is that of the measure's most recently created value. Options are told
    apart by ``options_hash`` (the hash of the options). A variant is labelled plain when it
    holds the measure's default options, or, where that was not recorded, when the version
    has a single variant; a run valued twice under one label keeps its latest value. Values
    whose status is not "ok" are NaN (they count for ``seconds``)."""
    if values.empty:
        return []
    measures = values["measure"].to_numpy(dtype=object)
    created = values["created_at"].to_numpy(dtype=float)
    order = np.argsort(created, kind="stable")
    versions = values["version"].to_numpy(dtype=object)
    newest = pd.Series(versions[order]).groupby(measures[order], sort=False).last()
    latest = versions == pd.Series(measures).map(newest).to_numpy(dtype=object)
    stored_kinds = _last_known(measures, _object_column(values, "kind"), order)
    fallback_kinds = dict(kinds or {})

    rows = np.flatnonzero(latest)
    measure_codes, measure_names = pd.factorize(measures[rows])
    hash_codes, hash_names = pd.factorize(values["options_hash"].to_numpy(dtype=object)[rows])
    variant_codes, variant_keys = pd.factorize(measure_codes.astype(np.int64) * len(hash_names) + hash_codes)
    variant_names = [measure_names[key // len(hash_names)] for key in variant_keys]
    by_creation = np.argsort(created[rows], kind="stable")
    last_row = np.zeros(len(variant_keys), dtype=np.intp)
    last_row[variant_codes[by_creation]] = rows[by_creation]  # the most recent row of each variant
    defaults = _last_known(variant_codes, _object_column(values, "default_options")[rows], by_creation)
    variant_counts = pd.Series(variant_names).value_counts()

    options_column = values["options"].to_numpy(dtype=object)
    labels = []
    for code, name in enumerate(variant_names):
        default = defaults.get(code)
        plain = bool(default) if default is not None else variant_counts[name] == 1
        options = options_column[last_row[code]]
        labels.append(_label(name, options if isinstance(options, Mapping) else {}, plain))
    label_codes, label_names = pd.factorize(np.asarray(labels, dtype=object), sort=True)
    label_measure = {label_codes[code]: name for code, name in enumerate(variant_names)}

    positions = run_ids.get_indexer(values["run_id"].to_numpy(dtype=object)[rows])
    on_board = positions >= 0
    rows, positions = rows[on_board], positions[on_board]
    row_labels = label_codes[variant_codes[on_board]]
    status = _value_status(values)[rows]
    value = np.where(status == "ok", values["value"].to_numpy(dtype=float, na_value=np.nan)[rows], np.nan)
    # the cost of computing a value: skipped values (nothing computed) and failed ones do not count
    seconds = np.where(status == "ok", values["seconds"].to_numpy(dtype=float, na_value=np.nan)[rows], np.nan)
    # the latest value of each (label, run): ordered by creation, the last row of each key
    by_creation = np.argsort(created[rows], kind="stable")
    keys = row_labels[by_creation].astype(np.int64) * len(run_ids) + positions[by_creation]
    _, last_of_key = np.unique(keys[::-1], return_index=True)
    kept = by_creation[by_creation.size - 1 - last_of_key]  # sorted by (label, run)
    bounds = np.searchsorted(row_labels[kept], np.arange(len(label_names) + 1))

    result = []
    for code, label in enumerate(label_names):
        chosen = kept[bounds[code] : bounds[code + 1]]
        if not chosen.size:
            continue
        name = label_measure[code]
        kind = stored_kinds.get(name) or fallback_kinds.get(name) or "complexity"
        run_values = np.full(len(run_ids), np.nan)
        run_values[positions[chosen]] = value[chosen]
        present = np.zeros(len(run_ids), dtype=bool)
        present[positions[chosen]] = True
        result.append(_Variant(label, name, kind, run_values, present, seconds[chosen]))
    return result


class _Board:
    """What every row of one board shares: the runs' gap, levels, granulated-Kendall groups,
    corruption groups and the runs where a capability score must be 0."""

    def __init__(self, runs: pd.DataFrame) -> None:
        self.run_ids = pd.Index(runs["run_id"].to_numpy(dtype=object))
        self.gap = _float_column(runs, "gap")
        self.level = _float_column(runs, "level")
        axes = {axis: _axis_codes(runs[axis]) for axis in AXES if axis in runs.columns}
        self.grid = _GranulatedGrid({axis: codes for axis, codes in axes.items() if codes.max(initial=0) > 0}, self.gap)
        corruption_codes, corruptions = pd.factorize(runs["corruption"], sort=True)
        self.by_corruption = _GroupedTau(corruption_codes, len(corruptions), self.level)
        fallback = np.isclose(self.level, 1.0) & runs["corruption"].isin(UNINFORMATIVE_AT_FULL).to_numpy()
        recorded = _object_column(runs, "labels_uninformative")
        self.uninformative = np.where(pd.isna(recorded), fallback, recorded.astype(bool))

    def score(self, variant: _Variant, reference: bool = False) -> MeasureScore:
        raw, present = variant.value, variant.present
        kind = variant.kind
        oriented = -raw if kind == "capability" else raw
        psi, psi_axes = self.grid.score(oriented, present) if self.grid.axes else (float("nan"), {})
        axiom, axiom_value = "n/a", None
        if kind == "capability":
            at_one = raw[present & self.uninformative]
            if at_one.size and not np.isnan(at_one).all():
                axiom_value = _nan_mean(at_one)
                axiom = "pass" if abs(axiom_value) <= AXIOM_TOLERANCE else "fail"
        levels, values = self.level[present], raw[present]
        return MeasureScore(
            measure=variant.label,
            name=variant.name,
            kind="reference" if reference else kind,
            reference=reference,
            runs=int((~np.isnan(values)).sum()),
            tau_gap=_tau_without_nan(oriented, self.gap),
            psi=psi,
            psi_axes=psi_axes,
            tau_level=_mean_in_order(self.by_corruption.taus(oriented)),
            axiom=axiom,
            axiom_value=axiom_value,
            value_clean=_nan_mean(values[levels == levels.min()]) if levels.size else float("nan"),
            value_noise=_nan_mean(values[levels == levels.max()]) if levels.size else float("nan"),
            seconds_per_run=_nan_mean(variant.seconds),
        )

    def oracle(self, std: float) -> _Variant:
        """The reference row: the gap plus N(0, std^2), on every run, computed in no time."""
        values = noisy_oracle(self.gap, std, ORACLE_SEED)
        return _Variant(f"oracle σ={std}", "oracle", "complexity", values, np.ones(values.size, dtype=bool), np.zeros(1))


def score_measures(
    runs: pd.DataFrame, values: pd.DataFrame, *, kinds: Mapping[str, str] | None = None
) -> list[MeasureScore]:
    """The leaderboard's rows: every measure in ``values`` scored against the gap of ``runs``,
    plus the noisy-oracle reference rows, best ``tau_gap`` first (NaN last; ties keep the
    order by label, the references after the measures).

    ``runs`` and ``values`` are the frames of ``Store.runs()`` and ``Store.measure_values()``
    (``values`` may lack ``status``, ``kind`` and ``default_options``, as older stores do).
    A pure function: nothing is read from the plugin registry or the disk.

    Rows: one per distinct options of each measure's newest version (the version of its most
    recently created value), labelled ``name`` at the default options (``default_options``
    True) and ``name[k=v,...]`` otherwise; where ``default_options`` was not recorded, plain
    when the version has a single options variant. Values of runs not in ``runs`` are ignored;
    only values with status "ok" are scored.

    Per row, over the runs that have a value row of it:

    * ``kind``: the values' recorded ``kind``; for a measure that recorded none (an older
      store) ``kinds[name]`` if given, else "complexity". A capability score predicts a
      *smaller* gap, so every correlation below is taken with its negation: larger is
      better for every row.
    * ``tau_gap``: Kendall tau-b with the gap over all runs (:func:`kendall_tau`).
    * ``psi``, ``psi_axes``: granulated Kendall Psi and its psi per axis
      (:func:`granulated_kendall`) over the axes of ``AXES`` that vary over ``runs``
      (an axis constant over the row's runs is left out). The groups of every axis depend
      only on ``runs``: they are built once and serve every row.
    * ``tau_level``: tau-b with p_c within each corruption kind, averaged over the kinds
      where it is defined.
    * ``axiom``: for a capability score, "pass" when the mean of its values over the runs
      whose training labels carry no information is within ``AXIOM_TOLERANCE`` of 0, else
      "fail" ("n/a" for complexity scores or without such runs); ``axiom_value`` that mean.
      The runs are those whose ``labels_uninformative`` is True; for a run that did not
      record it (None or no column, older stores), those of a corruption in
      ``UNINFORMATIVE_AT_FULL`` (labels, random-labels, gaussian: the built-in corruptions
      that declare ``uninformative_at_full``) at level 1.0.
    * ``value_clean``, ``value_noise``: mean value at the lowest and the highest level.
    * ``runs``: how many values were scored; ``seconds_per_run``: mean seconds of its "ok"
      values (what computing a value cost; failed and skipped ones are left out).

    Reference rows (kind "reference"): the gap plus N(0, std^2) noise (:func:`noisy_oracle`,
    std in ``ORACLE_STDS``, seed ``ORACLE_SEED``) over all runs, scored as complexity.
    """
    if runs.empty:
        return []
    board = _Board(runs)
    scores = [board.score(variant) for variant in _variants(values, board.run_ids, kinds)]
    scores += [board.score(board.oracle(std), reference=True) for std in ORACLE_STDS]
    order = sorted(range(len(scores)), key=lambda i: (math.isnan(scores[i].tau_gap), -scores[i].tau_gap))
    return [scores[i] for i in order]
