"""Robust sign-error (Dziugaite et al., NeurIPS 2020, "In search of robust measures of generalization")."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from genbench.scoring.kendall import _float_column
from genbench.scoring.granulated import _axis_codes, _comparison_sign, _rows_with_values, _varying_axes


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
    with np.errstate(invalid="ignore"):  # an infinite gap difference: NaN, weight 0 below
        hoeffding = np.maximum(0.0, 1.0 - 2.0 * np.exp(-2.0 * test_size * half_difference**2)) ** 2
    return np.nan_to_num(np.maximum(0.0, hoeffding - 0.5), nan=0.0)


class EnvironmentPairs:
    """The environments of Dziugaite et al.'s sign-error for one set of runs, built once and
    scored for any measure: every pair of *configurations* (cells: runs that differ only by
    seed) that differ in exactly one axis is an environment, and its samples are the pairs
    (run of the first configuration, run of the second). The weights depend only on the gaps,
    so the environments that pass the effective-size filter are known before any measure is
    scored (as long as the measure has a value on every run)."""

    def __init__(self, codes: dict[str, np.ndarray], gap: np.ndarray, test_size: float,
                 min_effective_size: float = 12.0, environments: str = "pairs") -> None:
        if environments not in ("pairs", "axis"):
            raise ValueError(f"environments must be 'pairs' or 'axis', got {environments!r}")
        self.gap = np.asarray(gap, dtype=float)
        self.min_effective_size = float(min_effective_size)
        self.paired = environments == "pairs"
        rows = self.gap.size
        firsts, seconds, keys = [], [], []
        environment_count = 0
        for axis, axis_codes in codes.items():
            if axis_codes.size == 0 or (axis_codes == axis_codes[0]).all():
                continue
            others = [other for name, other in codes.items() if name != axis]
            setting = _combined(others, rows)
            first, second = np.triu_indices(rows, k=1) if rows < 4096 else _pairs_sharing(setting)
            same_setting = setting[first] == setting[second]
            differ = same_setting & (axis_codes[first] != axis_codes[second])
            first, second = first[differ], second[differ]
            if self.paired:
                low = np.minimum(axis_codes[first], axis_codes[second])
                high = np.maximum(axis_codes[first], axis_codes[second])
                _, key = np.unique(np.stack([setting[first], low, high]), axis=1, return_inverse=True)
            else:
                _, key = np.unique(setting[first], return_inverse=True)
            key = key.reshape(-1)
            firsts.append(first)
            seconds.append(second)
            keys.append(key + environment_count)
            environment_count += int(key.max()) + 1 if key.size else 0
        empty = np.zeros(0, dtype=np.intp)
        self.first = np.concatenate(firsts) if firsts else empty
        self.second = np.concatenate(seconds) if seconds else empty
        self.environment = np.concatenate(keys) if keys else empty
        self.environment_count = environment_count
        self.gap_sign = _comparison_sign(self.gap[self.first], self.gap[self.second])
        self.weight = _noise_filtered_weight(self.gap[self.first] - self.gap[self.second], test_size)

    def score(self, measure: np.ndarray) -> dict[str, float | int]:
        """``{"mean", "p90", "max", "environments"}`` of ``measure`` (one value per run, NaN
        leaves the run out) over the environments that pass the effective-size filter."""
        measure = np.asarray(measure, dtype=float)
        usable = ~(np.isnan(measure[self.first]) | np.isnan(measure[self.second]))
        usable &= ~(np.isnan(self.gap[self.first]) | np.isnan(self.gap[self.second]))
        first, second, environment = self.first[usable], self.second[usable], self.environment[usable]
        weight = self.weight[usable]
        agreement = _comparison_sign(measure[first], measure[second]) * self.gap_sign[usable]
        errors = (1.0 - agreement) / 2.0
        count = self.environment_count
        weight_sum = np.bincount(environment, weights=weight, minlength=count)
        square_sum = np.bincount(environment, weights=weight**2, minlength=count)
        error_sum = np.bincount(environment, weights=weight * errors, minlength=count)
        with np.errstate(invalid="ignore", divide="ignore"):
            effective_size = np.where(square_sum > 0, weight_sum**2 / np.where(square_sum > 0, square_sum, 1.0), 0.0)
        kept = (weight_sum > 0) & (effective_size >= self.min_effective_size)
        if not kept.any():
            nan = float("nan")
            return {"mean": nan, "p90": nan, "max": nan, "environments": 0}
        environment_errors = error_sum[kept] / weight_sum[kept]
        # the authors' code keeps both orders (A, B) and (B, A) of each pair environment: the
        # same error twice, which leaves the mean and the max alone and is felt by the percentile
        both_orders = np.repeat(environment_errors, 2) if self.paired else environment_errors
        return {
            "mean": float(environment_errors.mean()),
            "p90": float(np.quantile(both_orders, 0.9)),
            "max": float(environment_errors.max()),
            "environments": int(environment_errors.size),
        }


def _combined(columns: list[np.ndarray], rows: int) -> np.ndarray:
    """One code per row for its tuple of values over ``columns`` (0 everywhere without columns)."""
    combined = np.zeros(rows, dtype=np.int64)
    for codes in columns:
        combined = combined * (int(codes.max(initial=0)) + 1) + codes
        combined = pd.factorize(combined)[0].astype(np.int64)
    return combined


def _pairs_sharing(setting: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs i < j of rows with the same ``setting`` (without listing all pairs)."""
    order = np.argsort(setting, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(setting[order]) != 0])
    ends = np.r_[starts[1:], order.size]
    firsts, seconds = [], []
    for start, end in zip(starts, ends):
        members = np.sort(order[start:end])
        a, b = np.triu_indices(members.size, k=1)
        firsts.append(members[a])
        seconds.append(members[b])
    return np.concatenate(firsts), np.concatenate(seconds)


def sign_error(
    frame: pd.DataFrame,
    measure: str,
    gap: str,
    axes: Sequence[str],
    test_size: float,
    min_effective_size: float = 12.0,
    environments: str = "pairs",
) -> dict[str, float | int]:
    """Distribution over environments of the weighted sign-error of Dziugaite
    et al. (NeurIPS 2020), "In search of robust measures of generalization".

    For every unordered pair of rows (a, b) that differ in exactly one of
    ``axes`` (all other axes equal; non-axis columns such as the seed are free)::

        error(a, b) = (1 - sign(mu_a - mu_b) * sign(g_a - g_b)) / 2
        w(a, b)     = max(0, 1 - 2 exp(-2 n (|g_a - g_b| / 2)^2))^2
        w(a, b)     = max(0, w(a, b) - 1/2)

    with ``n = test_size``: the weight discounts pairs whose gaps differ by less
    than the Monte-Carlo noise of a test set of that size (Hoeffding bound); a tie
    in the measure counts half an error. An environment's error is
    ``sum(w * error) / sum(w)``, kept only if its effective sample size
    ``(sum w)^2 / sum w^2 >= min_effective_size``.

    ``environments="pairs"`` (the authors'): one environment per pair of
    configurations (the values of all axes) that differ in one axis; its samples
    are the pairs of their seeds, so the effective size is at most seeds^2 and
    the default filter (12) needs at least 4 seeds per configuration. The
    authors' code lists each such environment in both orders; the 90th
    percentile is taken over that doubled list (the mean and the max do not
    change). ``environments="axis"``: all pairs along one axis with a shared
    setting of the others form one environment (coarser, for few seeds).

    Rows whose measure or gap is NaN are excluded. Returns
    ``{"mean", "p90", "max", "environments"}`` over the kept environments'
    errors (p90: linear-interpolated 90th percentile); the statistics are
    ``nan`` and ``environments`` is 0 when none qualifies.
    """
    rows = _rows_with_values(frame, measure, gap)
    codes = {axis: _axis_codes(rows[axis]) for axis in _varying_axes(rows, list(axes))}
    pairs = EnvironmentPairs(codes, _float_column(rows, gap), test_size, min_effective_size, environments)
    return pairs.score(_float_column(rows, measure))
