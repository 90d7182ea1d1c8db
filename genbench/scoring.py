"""Scores that rank generalization measures against the observed generalization gap.

Every function here is pure (numpy/pandas only) and works on a ``pandas.DataFrame``
with one row per trained run: a column holding the value of a generalization
measure, a column holding the generalization gap, and one column per
hyperparameter *axis* (model name, corruption level, width, ...).

Implemented scores
------------------
* :func:`kendall_tau` -- Kendall's tau-b (Kendall 1945), NaN-aware.
* :func:`granulated_kendall` -- Jiang et al. (ICLR 2020), "Fantastic
  generalization measures and where to find them", section 4.
* :func:`sign_error` -- Dziugaite et al. (NeurIPS 2020), "In search of robust
  measures of generalization".
* :func:`conditional_mutual_information` -- Jiang et al. (NeurIPS 2020
  competition), "NeurIPS 2020 Competition: Predicting Generalization in Deep
  Learning" (PGDL).
* :func:`rank_correlation_with`, :func:`noisy_oracle` -- small helpers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

__all__ = [
    "kendall_tau",
    "granulated_kendall",
    "sign_error",
    "conditional_mutual_information",
    "rank_correlation_with",
    "noisy_oracle",
]

# Largest number of pairwise comparisons materialised at once (a block of rows
# against all rows); bounds memory at a few tens of MB whatever n is.
_MAX_PAIRS_PER_BLOCK = 4_000_000

# Above this many joint states we count cells with np.unique instead of np.bincount.
_MAX_BINCOUNT_STATES = 1 << 24


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
    than two points remain or when either vector is constant. The computation
    is a vectorised O(n^2) pairwise comparison, done in row blocks so that no
    array larger than a few million entries is built.
    """
    x_values = _as_float_vector(x, "x")
    y_values = _as_float_vector(y, "y")
    if x_values.shape != y_values.shape:
        raise ValueError(f"x and y differ in length: {x_values.size} vs {y_values.size}")
    both_present = ~(np.isnan(x_values) | np.isnan(y_values))
    x_values, y_values = x_values[both_present], y_values[both_present]
    n = x_values.size
    if n < 2:
        return float("nan")
    total_pairs = n * (n - 1) // 2
    untied_in_x = total_pairs - _tied_pair_count(x_values)
    untied_in_y = total_pairs - _tied_pair_count(y_values)
    if untied_in_x == 0 or untied_in_y == 0:
        return float("nan")
    concordance = _concordance_sum(x_values, y_values)
    tau = concordance / np.sqrt(untied_in_x) / np.sqrt(untied_in_y)
    return float(np.clip(tau, -1.0, 1.0))


def rank_correlation_with(frame: pd.DataFrame, measure: str, column: str) -> float:
    """Kendall tau-b between ``frame[measure]`` and ``frame[column]``.

    Convenience wrapper: ``kendall_tau(frame[measure], frame[column])`` (see
    :func:`kendall_tau`; rows where either is NaN are dropped). With ``column``
    the generalization gap this is the plain (non-granulated) "overall tau" of
    Jiang et al. (ICLR 2020), "Fantastic generalization measures", section 4.
    """
    return kendall_tau(_float_column(frame, measure), _float_column(frame, column))


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


def _axis_consistency(frame: pd.DataFrame, measure: str, gap: str, axis: str, other_axes: Sequence[str]) -> float:
    """psi_i: mean Kendall tau over groups where only ``axis`` (and non-axis columns) vary."""
    taus: list[float] = []
    for group in _groups_sharing(frame, other_axes):
        if len(group) < 2 or group[axis].nunique(dropna=False) < 2:
            continue
        tau = kendall_tau(_float_column(group, measure), _float_column(group, gap))
        if not np.isnan(tau):
            taus.append(tau)
    return float(np.mean(taus)) if taus else float("nan")


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

    Returns ``(Psi, {axis: psi_i})``; ``Psi`` is ``nan`` when no ``psi_i`` is
    defined.
    """
    axes = list(axes)
    rows = _rows_with_values(frame, measure, gap)
    per_axis: dict[str, float] = {}
    for axis in _varying_axes(frame, axes):
        other_axes = [other for other in axes if other != axis]
        per_axis[axis] = _axis_consistency(rows, measure, gap, axis, other_axes)
    defined = [value for value in per_axis.values() if not np.isnan(value)]
    overall = float(np.mean(defined)) if defined else float("nan")
    return overall, per_axis


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
