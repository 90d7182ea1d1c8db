"""Robust sign-error (Dziugaite et al., NeurIPS 2020, "In search of robust measures of generalization")."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from genbench.scoring.kendall import _float_column
from genbench.scoring.granulated import _axis_codes, _comparison_sign, _groups_sharing, _rows_with_values, _varying_axes


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


