"""Kendall's tau-b (Kendall 1945), NaN-aware, for one pair of vectors and for many groups at once."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd



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
# Pairwise quantities summed over pairs of cells
# ---------------------------------------------------------------------------


def cell_pair_sums(cells: np.ndarray, pairwise: Callable[[int, int], list[np.ndarray]]) -> list[np.ndarray]:
    """Per pairwise quantity, its sums over pairs of cells: ``result[q][c, d]`` is the sum of
    ``q[i, j]`` over rows i of cell c and j of cell d. ``cells`` (codes 0 .. k-1) must be sorted;
    ``pairwise(start, stop)`` gives each quantity for rows ``start:stop`` against all rows, a
    (stop - start, rows) array, so that no more than a block of pairs is held at once."""
    rows = cells.size
    starts = np.flatnonzero(np.r_[True, np.diff(cells) != 0]) if rows else np.zeros(0, dtype=np.intp)
    totals: list[np.ndarray] | None = None
    rows_per_block = max(1, _MAX_PAIRS_PER_BLOCK // max(rows, 1))
    for start in range(0, rows, rows_per_block):
        stop = min(rows, start + rows_per_block)
        block_cells = cells[start:stop]
        block_starts = np.flatnonzero(np.r_[True, np.diff(block_cells) != 0])
        quantities = pairwise(start, stop)
        if totals is None:
            totals = [np.zeros((starts.size, starts.size), dtype=np.int64) for _ in quantities]
        for quantity, total in zip(quantities, totals):
            by_column = np.add.reduceat(quantity, starts, axis=1, dtype=np.int64)
            total[block_cells[block_starts]] += np.add.reduceat(by_column, block_starts, axis=0)
    return totals or []


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


