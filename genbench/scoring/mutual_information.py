"""Conditional mutual information between measure and gap, PGDL style (Jiang et al., NeurIPS 2020
competition, "Predicting Generalization in Deep Learning")."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from genbench.scoring.kendall import _MAX_BINCOUNT_STATES, _MAX_PAIRS_PER_BLOCK, _float_column, cell_pair_sums
from genbench.scoring.granulated import _axis_codes, _rows_with_values, _varying_axes


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




class PairwiseCMI:
    """``conditional_mutual_information`` for many measures over one set of runs.

    The cells of a conditioning set (h1, h2) are pairs of its *settings* (s, t), and a cell's
    2×2 table needs only three counts over its ordered pairs (a in s, b in t, a != b):
    [mu_a > mu_b], [g_a > g_b] and both; the pair count is |s||t| (minus |s| when s = t).
    Those counts are summed first over pairs of *grid cells* (the settings of every varying
    axis; rows sorted by cell, so each sum is one ``reduceat`` of a block of comparisons), then
    over the settings of each conditioning set (a product with the cells' indicator): no pair
    is listed, and the gap's counts are computed once for every measure with a value on every
    run."""

    def __init__(self, codes: dict[str, np.ndarray], gap: np.ndarray) -> None:
        self.codes = {axis: np.asarray(axis_codes) for axis, axis_codes in codes.items()}
        self.gap = np.asarray(gap, dtype=float)
        self._gap_counts: dict[bytes, np.ndarray] = {}

    def score(self, measure: np.ndarray) -> float:
        measure = np.asarray(measure, dtype=float)
        present = np.flatnonzero(~(np.isnan(measure) | np.isnan(self.gap)))
        if present.size < 2:
            return float("nan")
        varying = [axis for axis, codes in self.codes.items() if np.unique(codes[present]).size > 1]
        cell_of = np.zeros(present.size, dtype=np.int64)
        for axis in varying:
            axis_codes = self.codes[axis][present]
            cell_of = pd.factorize(cell_of * (int(axis_codes.max()) + 1) + axis_codes)[0].astype(np.int64)
        order = np.argsort(cell_of, kind="stable")
        rows, cells = present[order], cell_of[order]
        mu, gap = measure[rows], self.gap[rows]
        measure_count, both = cell_pair_sums(cells, lambda start, stop: [
            (mu[start:stop, None] > mu[None, :]).view(np.int8),
            ((mu[start:stop, None] > mu[None, :]) & (gap[start:stop, None] > gap[None, :])).view(np.int8),
        ])
        key = rows.tobytes()
        if key not in self._gap_counts:  # the same for every measure with a value on the same runs
            self._gap_counts = {key: cell_pair_sums(cells, lambda start, stop: [
                (gap[start:stop, None] > gap[None, :]).view(np.int8)])[0]}
        gap_count = self._gap_counts[key].astype(np.float64)
        measure_count, both = measure_count.astype(np.float64), both.astype(np.float64)
        sizes = np.bincount(cells).astype(np.float64)
        first_of_cell = np.flatnonzero(np.r_[True, np.diff(cells) != 0])
        scores = []
        for conditioning in _conditioning_sets(varying):
            setting = np.zeros(first_of_cell.size, dtype=np.int64)
            for axis in conditioning:
                axis_codes = self.codes[axis][rows[first_of_cell]]
                setting = setting * (int(axis_codes.max(initial=0)) + 1) + axis_codes
            compact = pd.factorize(setting)[0]
            by_setting = np.argsort(compact, kind="stable")
            bounds = np.flatnonzero(np.r_[True, np.diff(compact[by_setting]) != 0])

            def pooled(matrix: np.ndarray, by_setting=by_setting, bounds=bounds) -> np.ndarray:
                """Cell-pair counts summed into setting pairs."""
                rows_summed = np.add.reduceat(matrix[by_setting], bounds, axis=0)
                return np.add.reduceat(rows_summed[:, by_setting], bounds, axis=1)

            setting_sizes = np.add.reduceat(sizes[by_setting], bounds)
            pairs = np.outer(setting_sizes, setting_sizes) - np.diag(setting_sizes)
            mu_greater, gap_greater, both_greater = pooled(measure_count), pooled(gap_count), pooled(both)
            tables = np.stack(
                [pairs - mu_greater - gap_greater + both_greater, gap_greater - both_greater,
                 mu_greater - both_greater, both_greater], axis=-1,
            ).reshape(-1, 2, 2)  # [cell, V_mu, V_g]
            tables = tables[pairs.reshape(-1) > 0]
            informative = _cells_with_varying_gap(tables)
            if informative.shape[0] == 0:
                scores.append(float("nan"))
                continue
            mutual_information, gap_entropy = _mutual_information_and_gap_entropy(informative)
            scores.append(float(np.clip(mutual_information.sum() / gap_entropy.sum(), 0.0, 1.0)))
        defined = [score for score in scores if not np.isnan(score)]
        return 100.0 * min(defined) if defined else float("nan")
