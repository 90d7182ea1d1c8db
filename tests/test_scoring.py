"""Tests for genbench.scoring: property tests against scipy plus hand-worked cases."""

from __future__ import annotations

import json
import math
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from genbench import scoring
import genbench.scoring.kendall  # noqa: F401 - the module whose constant a test patches
from genbench.schemas import MeasureScore
from genbench.scoring import (
    conditional_mutual_information,
    granulated_kendall,
    grouped_kendall_tau,
    kendall_tau,
    noisy_oracle,
    rank_correlation_with,
    score_measures,
    sign_error,
)

FAST = settings(max_examples=40, deadline=None)
MEDIUM = settings(max_examples=20, deadline=None)


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------


@st.composite
def tied_pairs(draw, max_size: int = 40, max_value: int = 4) -> tuple[list[int], list[int]]:
    """Two equal-length integer vectors from a small range, so ties are frequent."""
    size = draw(st.integers(0, max_size))
    values = st.integers(-max_value, max_value)
    x = draw(st.lists(values, min_size=size, max_size=size))
    y = draw(st.lists(values, min_size=size, max_size=size))
    return x, y


@st.composite
def grid_frames(draw, max_seeds: int = 2) -> pd.DataFrame:
    """A full grid over two axes (+ seeds) with all-distinct gaps."""
    models = draw(st.integers(2, 3))
    levels = draw(st.integers(2, 3))
    seeds = draw(st.integers(1, max_seeds))
    rows = [(f"m{m}", level, seed) for m in range(models) for level in range(levels) for seed in range(seeds)]
    order = draw(st.permutations(range(len(rows))))
    frame = pd.DataFrame(rows, columns=["model", "corruption", "seed"])
    frame["gap"] = np.asarray(order, dtype=float) / len(rows)
    return frame


def _scipy_tau(x, y) -> float:
    return float(scipy.stats.kendalltau(x, y).statistic)


def _same_or_both_nan(a: float, b: float, tol: float = 1e-12) -> bool:
    if a == b:  # equal infinities too
        return True
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


# ---------------------------------------------------------------------------
# kendall_tau
# ---------------------------------------------------------------------------


@FAST
@given(tied_pairs())
def test_kendall_tau_matches_scipy_tau_b_with_ties(pair):
    x, y = pair
    ours = kendall_tau(x, y)
    theirs = _scipy_tau(x, y) if len(x) >= 2 else float("nan")
    assert _same_or_both_nan(ours, theirs), (ours, theirs)


@FAST
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=30), st.randoms())
def test_kendall_tau_matches_scipy_on_floats(x, random):
    y = list(x)
    random.shuffle(y)
    assert _same_or_both_nan(kendall_tau(x, y), _scipy_tau(x, y))


def test_kendall_tau_matches_scipy_above_block_size():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=4500)  # 4500^2 comparisons > one block, so chunking is used
    y = x + rng.integers(0, 30, size=4500)
    assert kendall_tau(x, y) == pytest.approx(_scipy_tau(x, y), abs=1e-12)


@FAST
@given(tied_pairs())
def test_kendall_tau_is_symmetric_and_bounded(pair):
    x, y = pair
    forward, backward = kendall_tau(x, y), kendall_tau(y, x)
    assert _same_or_both_nan(forward, backward)
    assert math.isnan(forward) or -1.0 <= forward <= 1.0


@FAST
@given(st.lists(st.integers(-5, 5), min_size=2, max_size=30))
def test_kendall_tau_of_vector_with_itself_and_its_negation(x):
    if len(set(x)) < 2:
        assert math.isnan(kendall_tau(x, x))
        return
    assert kendall_tau(x, x) == pytest.approx(1.0)
    assert kendall_tau(x, [-v for v in x]) == pytest.approx(-1.0)


@FAST
@given(tied_pairs(), st.sampled_from(["exp", "cube", "affine", "arctan"]), st.booleans())
def test_kendall_tau_is_invariant_under_monotone_transforms(pair, transform_name, apply_to_x):
    x, y = (np.asarray(v, dtype=float) for v in pair)
    increasing = {
        "exp": np.exp,
        "cube": lambda v: v**3,
        "affine": lambda v: 3.0 * v - 7.0,
        "arctan": np.arctan,
    }[transform_name]
    original = kendall_tau(x, y)
    if apply_to_x:
        increased, decreased = kendall_tau(increasing(x), y), kendall_tau(-increasing(x), y)
    else:
        increased, decreased = kendall_tau(x, increasing(y)), kendall_tau(x, -increasing(y))
    assert _same_or_both_nan(increased, original)
    assert _same_or_both_nan(decreased, -original)


@FAST
@given(tied_pairs(max_size=25), st.data())
def test_kendall_tau_drops_nan_entries(pair, data):
    x, y = (np.asarray(v, dtype=float) for v in pair)
    holes_x = np.asarray(data.draw(st.lists(st.booleans(), min_size=len(x), max_size=len(x))), dtype=bool)
    holes_y = np.asarray(data.draw(st.lists(st.booleans(), min_size=len(x), max_size=len(x))), dtype=bool)
    x_with_nan, y_with_nan = x.copy(), y.copy()
    x_with_nan[holes_x] = np.nan
    y_with_nan[holes_y] = np.nan
    kept = ~(holes_x | holes_y)
    assert _same_or_both_nan(kendall_tau(x_with_nan, y_with_nan), kendall_tau(x[kept], y[kept]))


def test_kendall_tau_nan_hand_case_and_degenerate_inputs():
    # The NaN row (3rd) is dropped; the rest is perfectly concordant.
    assert kendall_tau([1, 2, np.nan, 3], [1, 2, 5, 3]) == pytest.approx(1.0)
    assert math.isnan(kendall_tau([], []))
    assert math.isnan(kendall_tau([1.0], [2.0]))
    assert math.isnan(kendall_tau([1, np.nan], [np.nan, 2]))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))  # constant x
    assert math.isnan(kendall_tau([1, 2, 3], [4, 4, 4]))  # constant y
    with pytest.raises(ValueError):
        kendall_tau([1, 2, 3], [1, 2])


@FAST
@given(tied_pairs(max_size=25))
def test_kendall_tau_orders_infinities_like_extreme_finite_values(pair):
    x, y = (np.asarray(v, dtype=float) for v in pair)
    top, bottom = x == x.max(initial=0), x == x.min(initial=0)
    with_infinities = x.copy()
    with_infinities[top] = np.inf
    with_infinities[bottom & ~top] = -np.inf
    with_extremes = x.copy()
    with_extremes[top] = 1e9
    with_extremes[bottom & ~top] = -1e9
    assert _same_or_both_nan(kendall_tau(with_infinities, y), kendall_tau(with_extremes, y))


def test_kendall_tau_hand_case_with_ties():
    # x = [1, 2, 2, 3], y = [1, 3, 2, 3]; pairs (i<j):
    # (0,1) C, (0,2) C, (0,3) C, (1,2) x-tie, (1,3) y-tie, (2,3) C -> C=4, D=0
    # n0 = 6, x-ties n1 = 1, y-ties n2 = 1 -> tau_b = 4 / sqrt(5 * 5) = 0.8
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 3]) == pytest.approx(0.8)


def test_rank_correlation_with_uses_named_columns():
    frame = pd.DataFrame({"measure": [3.0, 1.0, 2.0], "gap": [30.0, 10.0, 20.0], "width": [1, 2, 3]})
    assert rank_correlation_with(frame, "measure", "gap") == pytest.approx(1.0)
    # measure vs width: (0,1) D, (0,2) D, (1,2) C -> (1 - 2) / 3
    assert rank_correlation_with(frame, "measure", "width") == pytest.approx(-1 / 3)


# ---------------------------------------------------------------------------
# granulated_kendall
# ---------------------------------------------------------------------------


@MEDIUM
@given(grid_frames())
def test_granulated_kendall_is_one_when_measure_is_gap(frame):
    frame["measure"] = frame["gap"]
    overall, per_axis = granulated_kendall(frame, "measure", "gap", ["model", "corruption"])
    assert overall == pytest.approx(1.0)
    assert per_axis == pytest.approx({"model": 1.0, "corruption": 1.0})


@MEDIUM
@given(grid_frames())
def test_granulated_kendall_is_minus_one_for_decreasing_transform_of_gap(frame):
    frame["measure"] = -np.exp(frame["gap"])
    overall, _ = granulated_kendall(frame, "measure", "gap", ["model", "corruption"])
    assert overall == pytest.approx(-1.0)


@MEDIUM
@given(grid_frames(), st.integers(0, 2**31 - 1))
def test_granulated_kendall_is_mean_of_axis_scores_within_bounds(frame, seed):
    frame["measure"] = np.random.default_rng(seed).integers(0, 3, size=len(frame))
    overall, per_axis = granulated_kendall(frame, "measure", "gap", ["model", "corruption"])
    defined = [v for v in per_axis.values() if not math.isnan(v)]
    assert set(per_axis) == {"model", "corruption"}
    assert all(-1.0 <= v <= 1.0 for v in defined)
    assert _same_or_both_nan(overall, float(np.mean(defined)) if defined else float("nan"))


def test_granulated_kendall_hand_case_two_axes():
    # model axis: group corruption=0 -> rows a,c: dg>0, dmu>0 -> tau=+1
    #             group corruption=1 -> rows b,d: dg>0, dmu<0 -> tau=-1   => psi_model = 0
    # corruption axis: group m1 -> rows a,b: + + -> +1
    #                  group m2 -> rows c,d: dg>0, dmu=2.5-2>0 -> +1       => psi_corruption = 1
    # Psi = (0 + 1) / 2 = 0.5; "dataset" is constant -> skipped.
    frame = pd.DataFrame(
        {
            "model": ["m1", "m1", "m2", "m2"],
            "corruption": [0, 1, 0, 1],
            "dataset": ["cifar", "cifar", "cifar", "cifar"],
            "gap": [1.0, 2.0, 3.0, 4.0],
            "measure": [1.0, 3.0, 2.0, 2.5],
        },
        index=list("abcd"),
    )
    overall, per_axis = granulated_kendall(frame, "measure", "gap", ["model", "corruption", "dataset"])
    assert per_axis == pytest.approx({"model": 0.0, "corruption": 1.0})
    assert overall == pytest.approx(0.5)


def test_granulated_kendall_pools_seeds_into_one_group():
    # One axis (model); the seed column is not an axis, so all three rows form one group.
    # pairs: (r0,r1) dg>0, dmu<0 -> D; (r0,r2) C; (r1,r2) C -> tau = (2 - 1) / 3
    frame = pd.DataFrame(
        {"model": ["m1", "m1", "m2"], "seed": [0, 1, 0], "gap": [1.0, 2.0, 3.0], "measure": [1.0, 0.0, 3.0]}
    )
    overall, per_axis = granulated_kendall(frame, "measure", "gap", ["model"])
    assert per_axis == pytest.approx({"model": 1 / 3})
    assert overall == pytest.approx(1 / 3)


def test_granulated_kendall_undefined_cases():
    single = pd.DataFrame({"model": ["m1"], "gap": [1.0], "measure": [1.0]})
    overall, per_axis = granulated_kendall(single, "measure", "gap", ["model"])
    assert math.isnan(overall) and per_axis == {}
    # Model varies but every group has a constant measure -> psi undefined but reported.
    constant_measure = pd.DataFrame({"model": ["m1", "m2"], "gap": [1.0, 2.0], "measure": [5.0, 5.0]})
    overall, per_axis = granulated_kendall(constant_measure, "measure", "gap", ["model"])
    assert math.isnan(overall) and list(per_axis) == ["model"] and math.isnan(per_axis["model"])


def test_granulated_kendall_ignores_rows_with_nan_measure():
    frame = pd.DataFrame(
        {"model": ["m1", "m2", "m3"], "gap": [1.0, 2.0, 3.0], "measure": [1.0, 2.0, np.nan]}
    )
    overall, _ = granulated_kendall(frame, "measure", "gap", ["model"])
    assert overall == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# sign_error
# ---------------------------------------------------------------------------


def _two_axis_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["m1", "m1", "m2", "m2"],
            "corruption": [0, 1, 0, 1],
            "gap": [0.1, 0.2, 0.3, 0.4],
            "measure": [1.0, 3.0, 2.0, 2.5],
        }
    )


def test_sign_error_hand_case_four_environments():
    # Pairs differing in exactly one axis (rows 0..3 as in _two_axis_frame):
    #   env (model, corruption=0):  rows 0,2: dg>0, dmu>0      -> error 0
    #   env (model, corruption=1):  rows 1,3: dg>0, dmu<0      -> error 1
    #   env (corruption, model=m1): rows 0,1: + +               -> error 0
    #   env (corruption, model=m2): rows 2,3: + +               -> error 0
    # rows (0,3) and (1,2) differ in both axes -> not compared.
    # test_size = 10_000, |dg| >= 0.1: exp(-2 * 1e4 * 0.05^2) = e^-50 ~ 0 -> w = 1 - 0.5 = 0.5,
    # one pair per environment -> effective size 1.
    # errors [0, 1, 0, 0]: mean 0.25, max 1. One row per configuration, so both kinds of
    # environment are these four; the authors list each pair environment in both orders:
    # [0, 0, 1, 1, 0, 0, 0, 0] sorted has 1 at positions 6 and 7, p90 at position 6.3 -> 1.0;
    # the axis environments, listed once: p90 = 0 + 0.7 * (1 - 0) = 0.7 (linear, position 2.7).
    args = dict(measure="measure", gap="gap", axes=["model", "corruption"], test_size=10_000, min_effective_size=1.0)
    result = sign_error(_two_axis_frame(), **args)
    assert result == pytest.approx({"mean": 0.25, "p90": 1.0, "max": 1.0, "environments": 4})
    coarse = sign_error(_two_axis_frame(), environments="axis", **args)
    assert coarse == pytest.approx({"mean": 0.25, "p90": 0.7, "max": 1.0, "environments": 4})


def test_sign_error_default_effective_size_rejects_single_pair_environments():
    result = sign_error(_two_axis_frame(), "measure", "gap", ["model", "corruption"], test_size=10_000)
    assert result["environments"] == 0
    assert all(math.isnan(result[key]) for key in ("mean", "p90", "max"))


def test_sign_error_hand_case_noise_weighting():
    # One axis, one environment (environments="axis": all pairs along the axis), three rows; n = 100.
    #   pair (0,1): |dg| = 0.1: 1 - 2 e^{-2*100*0.05^2} = 1 - 2 e^-0.5 = -0.213 -> w = 0, wrong sign (error 1)
    #   pair (0,2): |dg| = 0.4: (1 - 2 e^-8)^2 - 0.5   = 0.49866          right sign (error 0)
    #   pair (1,2): |dg| = 0.3: (1 - 2 e^-4.5)^2 - 0.5 = 0.45606          right sign (error 0)
    # environment error = (0*1 + w02*0 + w12*0) / (w02 + w12) = 0
    # effective size = (w02 + w12)^2 / (w02^2 + w12^2) = 0.91146 / 0.45665 = 1.996
    frame = pd.DataFrame({"model": ["m1", "m2", "m3"], "gap": [0.0, 0.1, 0.4], "measure": [0.0, -1.0, 5.0]})
    w02 = (1 - 2 * math.exp(-8)) ** 2 - 0.5
    w12 = (1 - 2 * math.exp(-4.5)) ** 2 - 0.5
    effective_size = (w02 + w12) ** 2 / (w02**2 + w12**2)
    assert effective_size == pytest.approx(1.996, abs=1e-3)
    kept = sign_error(frame, "measure", "gap", ["model"], test_size=100, min_effective_size=1.9, environments="axis")
    assert kept == pytest.approx({"mean": 0.0, "p90": 0.0, "max": 0.0, "environments": 1})
    rejected = sign_error(frame, "measure", "gap", ["model"], test_size=100, min_effective_size=2.1, environments="axis")
    assert rejected["environments"] == 0
    # With a huge test set all three pairs weigh 0.5 and the wrong pair counts: error 1/3.
    noiseless = sign_error(frame, "measure", "gap", ["model"], test_size=10**9, min_effective_size=1.0, environments="axis")
    assert noiseless["mean"] == pytest.approx(1 / 3)


def test_sign_error_tied_measure_counts_as_half_an_error():
    frame = pd.DataFrame({"model": ["m1", "m2"], "gap": [0.0, 0.5], "measure": [1.0, 1.0]})
    result = sign_error(frame, "measure", "gap", ["model"], test_size=10**6, min_effective_size=1.0)
    assert result["mean"] == pytest.approx(0.5)


def test_sign_error_excludes_rows_with_nan_measure():
    frame = _two_axis_frame()
    with_bad_row = pd.concat(
        [frame, pd.DataFrame({"model": ["m3"], "corruption": [0], "gap": [0.9], "measure": [np.nan]})],
        ignore_index=True,
    )
    args = dict(measure="measure", gap="gap", axes=["model", "corruption"], test_size=10_000, min_effective_size=1.0)
    assert sign_error(with_bad_row, **args) == pytest.approx(sign_error(frame, **args))


@MEDIUM
@given(grid_frames(max_seeds=3))
def test_sign_error_is_zero_for_gap_and_one_for_negated_gap(frame):
    axes = ["model", "corruption"]
    frame["measure"] = frame["gap"]
    agreeing = sign_error(frame, "measure", "gap", axes, test_size=10**8, min_effective_size=1.0)
    frame["measure"] = -frame["gap"]
    opposing = sign_error(frame, "measure", "gap", axes, test_size=10**8, min_effective_size=1.0)
    assert agreeing["environments"] == opposing["environments"] > 0
    assert agreeing["max"] == pytest.approx(0.0)
    assert opposing["mean"] == pytest.approx(1.0) and opposing["p90"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# conditional_mutual_information
# ---------------------------------------------------------------------------


def _random_grid(rng: np.random.Generator, models: int, levels: int, seeds: int) -> pd.DataFrame:
    rows = [(f"m{m}", level, seed) for m in range(models) for level in range(levels) for seed in range(seeds)]
    frame = pd.DataFrame(rows, columns=["model", "corruption", "seed"])
    frame["gap"] = rng.normal(size=len(frame)) + 0.3 * frame["corruption"]
    return frame


def test_cmi_is_100_for_measure_equal_to_gap_and_its_negation():
    frame = _random_grid(np.random.default_rng(1), models=3, levels=3, seeds=3)
    frame["measure"] = frame["gap"]
    assert conditional_mutual_information(frame, "measure", "gap", ["model", "corruption"]) == pytest.approx(100.0)
    frame["measure"] = -frame["gap"]  # MI is symmetric: perfect anti-correlation also scores 100
    assert conditional_mutual_information(frame, "measure", "gap", ["model", "corruption"]) == pytest.approx(100.0)


def test_cmi_is_near_zero_for_independent_measure():
    rng = np.random.default_rng(2)
    frame = _random_grid(rng, models=4, levels=4, seeds=20)  # 320 rows, ~400 ordered pairs per cell
    frame["measure"] = rng.normal(size=len(frame))
    score = conditional_mutual_information(frame, "measure", "gap", ["model", "corruption"])
    assert 0.0 <= score < 5.0


@MEDIUM
@given(grid_frames(max_seeds=3), st.integers(0, 2**31 - 1))
def test_cmi_lies_in_0_100(frame, seed):
    frame["measure"] = np.random.default_rng(seed).integers(0, 4, size=len(frame))
    score = conditional_mutual_information(frame, "measure", "gap", ["model", "corruption", "seed"])
    assert math.isnan(score) or 0.0 <= score <= 100.0


@MEDIUM
@given(grid_frames(max_seeds=3))
def test_cmi_is_invariant_under_monotone_transform_of_measure(frame):
    frame["measure"] = np.random.default_rng(0).normal(size=len(frame))
    base = conditional_mutual_information(frame, "measure", "gap", ["model", "corruption"])
    frame["measure"] = np.exp(frame["measure"])
    assume(not math.isnan(base))
    assert conditional_mutual_information(frame, "measure", "gap", ["model", "corruption"]) == pytest.approx(base)


def test_cmi_hand_case_single_varying_axis():
    # Rows A1, A2, A3 (model A) with gap 1, 2, 3 and measure 1, 3, 2; row B with gap 10, measure 10.
    # Only "model" varies, so cells are (model(a), model(b)).
    # cell (A, A): 6 ordered pairs; (V_mu, V_g) counts: (0,0): 2 [(1,2), (1,3)], (1,1): 2 [(2,1), (3,1)],
    #   (1,0): 1 [(2,3)], (0,1): 1 [(3,2)].  Marginals are 1/2 each, so
    #   MI = 2/3 log2((1/3)/(1/4)) + 1/3 log2((1/6)/(1/4)) = 0.276692 - 0.194988 = 0.081704 bits, H(V_g) = 1.
    # cell (A, B): V_g always 0 -> MI = H = 0; cell (B, A): V_g always 1 -> MI = H = 0; no (B, B) pair.
    # score = (0.081704 / 3) / (1 / 3) -> 8.1704
    frame = pd.DataFrame(
        {"model": ["A", "A", "A", "B"], "gap": [1.0, 2.0, 3.0, 10.0], "measure": [1.0, 3.0, 2.0, 10.0]}
    )
    expected = 100 * (2 / 3 * math.log2(4 / 3) + 1 / 3 * math.log2(2 / 3))
    assert expected == pytest.approx(8.1704, abs=1e-4)
    assert conditional_mutual_information(frame, "measure", "gap", ["model"]) == pytest.approx(expected)
    # "dataset" is constant so it does not count as a conditioning axis.
    frame["dataset"] = "cifar"
    assert conditional_mutual_information(frame, "measure", "gap", ["model", "dataset"]) == pytest.approx(expected)


def test_cmi_takes_minimum_over_axis_pairs():
    rng = np.random.default_rng(3)
    frame = _random_grid(rng, models=3, levels=3, seeds=4)
    frame["width"] = frame["seed"] % 2
    frame["measure"] = frame["gap"] + rng.normal(scale=0.5, size=len(frame))
    axes = ["model", "corruption", "width"]
    combined = conditional_mutual_information(frame, "measure", "gap", axes)
    per_pair = [
        conditional_mutual_information(frame, "measure", "gap", list(pair))
        for pair in (("model", "corruption"), ("model", "width"), ("corruption", "width"))
    ]
    assert combined == pytest.approx(min(per_pair))
    assert 0.0 < combined < 100.0


def test_cmi_undefined_for_too_few_rows():
    frame = pd.DataFrame({"model": ["A"], "gap": [1.0], "measure": [1.0]})
    assert math.isnan(conditional_mutual_information(frame, "measure", "gap", ["model"]))


# ---------------------------------------------------------------------------
# noisy_oracle
# ---------------------------------------------------------------------------


def test_noisy_oracle_is_reproducible_and_has_requested_noise():
    gap = np.linspace(0.0, 1.0, 20_000)
    first, second = noisy_oracle(gap, 0.05, seed=7), noisy_oracle(gap, 0.05, seed=7)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, noisy_oracle(gap, 0.05, seed=8))
    assert np.std(first - gap) == pytest.approx(0.05, rel=0.05)
    expected = gap + np.random.default_rng(7).normal(0.0, 0.05, size=gap.shape)
    np.testing.assert_allclose(first, expected)
    np.testing.assert_array_equal(noisy_oracle(gap, 0.0, seed=1), gap)
    with pytest.raises(ValueError):
        noisy_oracle(gap, -1.0, seed=0)


# ---------------------------------------------------------------------------
# brute-force references (straight from the definitions) on small random frames
# ---------------------------------------------------------------------------


@st.composite
def small_random_frames(draw) -> pd.DataFrame:
    size = draw(st.integers(2, 14))
    column = lambda values: draw(st.lists(values, min_size=size, max_size=size))  # noqa: E731
    return pd.DataFrame(
        {
            "model": column(st.sampled_from(["a", "b", "c"])),
            "corruption": column(st.integers(0, 2)),
            "width": column(st.integers(0, 1)),
            "gap": column(st.integers(0, 5).map(lambda v: v / 10)),
            "measure": column(st.integers(0, 3)),
        }
    )


def _entropy_bits(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts if c)


def _reference_cmi(frame: pd.DataFrame, axes: list[str]) -> float:
    records = frame.to_dict("records")
    varying = [axis for axis in axes if frame[axis].nunique() > 1]
    if len(varying) >= 2:
        conditionings = [(h1, h2) for i, h1 in enumerate(varying) for h2 in varying[i + 1 :]]
    else:
        conditionings = [tuple(varying)]
    scores = []
    for conditioning in conditionings:
        cells: dict[tuple, list[tuple[bool, bool]]] = {}
        for i, a in enumerate(records):
            for j, b in enumerate(records):
                if i != j:
                    key = tuple(v for h in conditioning for v in (a[h], b[h]))
                    cells.setdefault(key, []).append((a["measure"] > b["measure"], a["gap"] > b["gap"]))
        informations, entropies = [], []
        for pairs in cells.values():
            joint = [sum(1 for p in pairs if p == (u, v)) for u in (False, True) for v in (False, True)]
            h_mu = _entropy_bits([joint[0] + joint[1], joint[2] + joint[3]])
            h_g = _entropy_bits([joint[0] + joint[2], joint[1] + joint[3]])
            informations.append(h_mu + h_g - _entropy_bits(joint))
            entropies.append(h_g)
        if np.mean(entropies) > 1e-12:
            scores.append(np.mean(informations) / np.mean(entropies))
    return 100 * min(scores) if scores else float("nan")


def _reference_sign_error(frame: pd.DataFrame, axes: list[str], test_size: int, min_size: float,
                          paired: bool = False) -> list[float]:
    """Kept environment errors, by brute force over all pairs of rows. ``paired``: one environment
    per pair of configurations (Dziugaite et al.'s), else one per axis and shared setting."""
    records = frame.to_dict("records")
    environments: dict[tuple, list[tuple[float, float]]] = {}
    for i, a in enumerate(records):
        for b in records[i + 1 :]:
            differing = [axis for axis in axes if a[axis] != b[axis]]
            if len(differing) != 1:
                continue
            shared = tuple((axis, a[axis]) for axis in axes if axis != differing[0])
            error = (1 - np.sign(a["measure"] - b["measure"]) * np.sign(a["gap"] - b["gap"])) / 2
            hoeffding = max(0.0, 1 - 2 * math.exp(-2 * test_size * (abs(a["gap"] - b["gap"]) / 2) ** 2)) ** 2
            key = (differing[0], shared, frozenset((a[differing[0]], b[differing[0]])) if paired else None)
            environments.setdefault(key, []).append((max(0.0, hoeffding - 0.5), error))
    kept = []
    for pairs in environments.values():
        weights = np.array([w for w, _ in pairs])
        errors = np.array([e for _, e in pairs])
        if weights.sum() > 0 and weights.sum() ** 2 / np.sum(weights**2) >= min_size:
            kept.append(float(np.sum(weights * errors) / weights.sum()))
    return sorted(kept)


@MEDIUM
@given(small_random_frames())
def test_cmi_matches_brute_force_reference(frame):
    axes = ["model", "corruption", "width"]
    ours = conditional_mutual_information(frame, "measure", "gap", axes)
    assert _same_or_both_nan(ours, _reference_cmi(frame, axes), tol=1e-9)


@MEDIUM
@given(small_random_frames(), st.sampled_from([50, 400, 10**6]), st.sampled_from([1.0, 1.5, 2.5]))
def test_sign_error_matches_brute_force_reference(frame, test_size, min_size):
    axes = ["model", "corruption", "width"]
    for environments, paired in (("axis", False), ("pairs", True)):
        ours = sign_error(frame, "measure", "gap", axes, test_size=test_size, min_effective_size=min_size,
                          environments=environments)
        expected = _reference_sign_error(frame, axes, test_size, min_size, paired=paired)
        assert ours["environments"] == len(expected)
        if expected:
            assert ours["mean"] == pytest.approx(np.mean(expected))
            assert ours["max"] == pytest.approx(max(expected))
            # the authors list each pair environment in both orders
            listed = np.repeat(expected, 2) if paired else expected
            assert ours["p90"] == pytest.approx(np.quantile(listed, 0.9))


# ---------------------------------------------------------------------------
# grouped_kendall_tau: all groups at once, against a loop of scipy over groups
# ---------------------------------------------------------------------------

VALUES_WITH_GAPS = st.sampled_from([-2.0, -1.0, 0.0, 0.0, 1.0, 2.0, 3.0, np.inf, -np.inf, np.nan])


@st.composite
def grouped_vectors(draw, max_size: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y (ties, NaN and ±inf frequent) and group codes in -1..4 (-1: in no group)."""
    size = draw(st.integers(0, max_size))
    x = draw(st.lists(VALUES_WITH_GAPS, min_size=size, max_size=size))
    y = draw(st.lists(VALUES_WITH_GAPS, min_size=size, max_size=size))
    groups = draw(st.lists(st.integers(-1, 4), min_size=size, max_size=size))
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(groups, dtype=np.int64)


def _scipy_by_group(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> list[float]:
    taus = []
    for group in range(int(groups.max(initial=-1)) + 1):
        chosen = (groups == group) & ~np.isnan(x) & ~np.isnan(y)
        taus.append(_scipy_tau(x[chosen], y[chosen]) if chosen.sum() >= 2 else float("nan"))
    return taus


@FAST
@given(grouped_vectors(), st.sampled_from([256, 3]))
def test_grouped_kendall_tau_equals_scipy_group_by_group(vectors, largest_pairwise_group):
    # with 3, groups of more than 3 rows take the scipy path: both paths are checked
    x, y, groups = vectors
    with mock.patch.object(scoring.kendall, "_PAIRWISE_MAX_ROWS", largest_pairwise_group):
        ours = grouped_kendall_tau(x, y, groups)
    expected = _scipy_by_group(x, y, groups)
    assert len(ours) == len(expected)
    assert all(_same_or_both_nan(a, b) for a, b in zip(ours, expected)), (list(ours), expected)


def test_grouped_kendall_tau_mixes_small_and_large_groups():
    rng = np.random.default_rng(5)
    sizes = [1, 2, 3, 7, 40, 129, 256, 257, 600]  # padded blocks of several widths, and scipy's
    groups = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(groups)
    x = rng.integers(0, 6, size=groups.size).astype(float)
    y = x + rng.integers(-3, 4, size=groups.size)
    x[rng.random(groups.size) < 0.05] = np.nan
    y[rng.random(groups.size) < 0.02] = np.inf
    ours = grouped_kendall_tau(x, y, groups)
    expected = _scipy_by_group(x, y, groups)
    assert math.isnan(ours[0]) and math.isnan(expected[0])
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_grouped_kendall_tau_rejects_mismatched_or_fractional_groups():
    with pytest.raises(ValueError):
        grouped_kendall_tau([1.0, 2.0], [1.0, 2.0], [0])
    with pytest.raises(ValueError):
        grouped_kendall_tau([1.0, 2.0], [1.0, 2.0], [0.5, 1.0])
    assert grouped_kendall_tau([], [], []).size == 0


# ---------------------------------------------------------------------------
# granulated_kendall against a plain pandas groupby with scipy's tau
# ---------------------------------------------------------------------------


def _reference_granulated(frame: pd.DataFrame, measure: str, gap: str, axes: list[str]) -> tuple[float, dict[str, float]]:
    rows = frame[frame[measure].notna() & frame[gap].notna()]
    per_axis = {}
    for axis in axes:
        if frame[axis].nunique(dropna=False) < 2:
            continue
        others = [other for other in axes if other != axis]
        groups = rows.groupby(others, dropna=False, sort=False) if others else [(None, rows)]
        taus = []
        for _, group in groups:
            if len(group) >= 2 and group[axis].nunique(dropna=False) >= 2:
                tau = _scipy_tau(group[measure].to_numpy(float), group[gap].to_numpy(float))
                if not math.isnan(tau):
                    taus.append(tau)
        per_axis[axis] = float(np.mean(taus)) if taus else float("nan")
    defined = [value for value in per_axis.values() if not math.isnan(value)]
    return (float(np.mean(defined)) if defined else float("nan")), per_axis


@MEDIUM
@given(small_random_frames(), st.data())
def test_granulated_kendall_matches_pandas_groupby_with_nan_and_inf(frame, data):
    holes = np.asarray(data.draw(st.lists(st.sampled_from([0, 0, 0, 1, 2, 3]), min_size=len(frame), max_size=len(frame))))
    frame = frame.astype({"measure": float, "gap": float})
    frame.loc[holes == 1, "measure"] = np.nan
    frame.loc[holes == 2, "gap"] = np.nan
    frame.loc[holes == 3, "measure"] = np.inf
    axes = ["model", "corruption", "width"]
    overall, per_axis = granulated_kendall(frame, "measure", "gap", axes)
    expected_overall, expected_axes = _reference_granulated(frame, "measure", "gap", axes)
    assert list(per_axis) == list(expected_axes)
    assert all(_same_or_both_nan(per_axis[a], expected_axes[a]) for a in per_axis)
    assert _same_or_both_nan(overall, expected_overall)


# ---------------------------------------------------------------------------
# score_measures: the leaderboard's rows from the store's two frames
# ---------------------------------------------------------------------------


def _store_runs(seeds: int = 3, seed: int = 0) -> pd.DataFrame:
    """A grid of runs as ``Store.runs()`` has them (the columns scoring reads)."""
    rng = np.random.default_rng(seed)
    rows = [
        dict(dataset="digits", model=model, corruption=corruption, level=level, seed=s,
             test_labels="clean", train_config='{"lr":0.1}')
        for model in ("mlp", "cnn", "linear")
        for corruption in ("labels", "shuffled-pixels")
        for level in (0.0, 0.5, 1.0)
        for s in range(seeds)
    ]
    runs = pd.DataFrame(rows)
    runs.insert(0, "run_id", [f"run{i:03d}" for i in range(len(runs))])
    runs["gap"] = np.round(0.6 * runs["level"] + rng.normal(0, 0.15, len(runs)), 2)
    runs.loc[4, "gap"] = np.nan  # a diverged run
    runs["labels_uninformative"] = (runs["corruption"] == "labels") & (runs["level"] == 1.0)
    return runs


def _value_rows(runs: pd.DataFrame, measure: str, values, kind="complexity", version="1", options=None,
                default=True, status=None, created=0.0) -> list[dict]:
    options = {} if options is None else options
    rows = []
    for i, (run_id, value) in enumerate(zip(runs["run_id"], values)):
        state = "ok" if status is None else status[i]
        rows.append(dict(
            run_id=run_id, measure=measure, version=version, options_hash=json.dumps(options, sort_keys=True),
            options=options, value=value if state == "ok" else np.nan, seconds=0.01 * (i % 5 + 1),
            error=None if state == "ok" else "broke", status=state, kind=kind, default_options=default,
            details={}, created_at=created + i,
        ))
    return rows


def _store_values(runs: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gap = runs["gap"].fillna(0.3).to_numpy()
    statuses = np.where(rng.random(len(runs)) < 0.1, "failed", "ok")
    rows = _value_rows(runs, "close", gap + rng.normal(0, 0.1, len(runs)), status=statuses)
    rows += _value_rows(runs, "coarse", np.round(gap * 3), created=1000)  # many ties
    accuracy = np.where(runs["labels_uninformative"], 0.01, 1.0 - gap + rng.normal(0, 0.05, len(runs)))
    rows += _value_rows(runs, "held-out", accuracy, kind="capability", created=2000)
    with_inf = rng.normal(size=len(runs))
    with_inf[::7] = np.inf
    rows += _value_rows(runs, "wild", with_inf, created=3000)
    return pd.DataFrame(rows)


def _reference_row(runs: pd.DataFrame, values: pd.DataFrame, measure: str, capability: bool) -> dict:
    """One row computed from the definitions, with pandas and scipy only."""
    chosen = values[values["measure"] == measure]
    merged = runs.merge(chosen[["run_id", "value", "seconds", "status"]], on="run_id")
    merged["value"] = merged["value"].where(merged["status"] == "ok")
    merged["oriented"] = -merged["value"] if capability else merged["value"]
    usable = merged.dropna(subset=["oriented", "gap"])
    axes = [a for a in scoring.AXES if runs[a].nunique() > 1]
    psi, psi_axes = _reference_granulated(merged, "oriented", "gap", axes)
    level_taus = []
    for _, group in merged.dropna(subset=["oriented"]).groupby("corruption"):
        tau = _scipy_tau(group["oriented"].to_numpy(float), group["level"].to_numpy(float))
        if not math.isnan(tau):
            level_taus.append(tau)
    at_one = merged.loc[merged["labels_uninformative"], "value"]
    return dict(
        tau_gap=_scipy_tau(usable["oriented"].to_numpy(float), usable["gap"].to_numpy(float)),
        psi=psi, psi_axes=psi_axes, tau_level=float(np.mean(level_taus)),
        runs=int(merged["value"].notna().sum()),
        seconds_per_run=float(merged.loc[merged["status"] == "ok", "seconds"].mean()),
        value_clean=float(merged.loc[merged["level"] == 0.0, "value"].mean()),
        value_noise=float(merged.loc[merged["level"] == 1.0, "value"].mean()),
        axiom_value=float(at_one.mean()) if capability else None,
    )


def _by_label(scores: list[MeasureScore]) -> dict[str, MeasureScore]:
    return {score.measure: score for score in scores}


def test_score_measures_matches_the_definitions_computed_with_pandas_and_scipy():
    runs = _store_runs()
    values = _store_values(runs)
    rows = _by_label(score_measures(runs, values))
    assert set(rows) == {"close", "coarse", "held-out", "wild", "oracle σ=0.02", "oracle σ=0.05"}
    for label, capability in (("close", False), ("coarse", False), ("held-out", True), ("wild", False)):
        row, expected = rows[label], _reference_row(runs, values, label, capability)
        assert row.name == label and row.kind == ("capability" if capability else "complexity")
        assert row.runs == expected["runs"] and not row.reference
        for field in ("tau_gap", "psi", "tau_level", "seconds_per_run", "value_clean", "value_noise"):
            assert _same_or_both_nan(getattr(row, field), expected[field], tol=1e-12), (label, field)
        assert list(row.psi_axes) == list(expected["psi_axes"]) == ["model", "corruption", "level"]
        for axis, psi in expected["psi_axes"].items():
            assert _same_or_both_nan(row.psi_axes[axis], psi, tol=1e-12), (label, axis)
        if capability:
            assert row.axiom_value == pytest.approx(expected["axiom_value"]) and row.axiom == "pass"
        else:
            assert row.axiom == "n/a" and row.axiom_value is None
    assert rows["close"].runs < len(runs)  # failed values are not scored
    taus = [score.tau_gap for score in score_measures(runs, values)]
    assert taus == sorted(taus, reverse=True)


def test_reference_rows_are_the_gap_plus_seeded_noise():
    runs = _store_runs()
    rows = _by_label(score_measures(runs, _store_values(runs)))
    for std in (0.02, 0.05):
        oracle = noisy_oracle(runs["gap"].to_numpy(float), std, seed=0)
        row = rows[f"oracle σ={std}"]
        assert row.kind == "reference" and row.reference and row.name == "oracle"
        assert row.tau_gap == pytest.approx(kendall_tau(oracle, runs["gap"]), abs=1e-12)
        assert row.runs == int(np.isfinite(oracle).sum()) and row.seconds_per_run == 0.0
        assert row.axiom == "n/a"


def test_axiom_and_orientation_by_hand():
    # Two labels runs at p_c = 1 have uninformative labels; so does the shuffled-pixels run that
    # recorded it, while the gaussian run at 1 recorded False and the last run recorded nothing
    # (a labels run at 1: the name fallback counts it).
    runs = pd.DataFrame({
        "run_id": ["a", "b", "c", "d", "e", "f", "g"],
        "model": ["m"] * 7,
        "corruption": ["labels", "labels", "labels", "shuffled-pixels", "gaussian", "labels", "labels"],
        "level": [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0],
        "gap": [0.1, 0.4, 0.9, 0.8, 0.7, 0.85, 0.95],
        "labels_uninformative": [False, False, True, True, False, True, None],
    })
    accuracy = [0.9, 0.6, 0.02, 0.04, 0.5, 0.0, 0.02]  # at the uninformative runs: mean 0.02
    values = pd.DataFrame(
        _value_rows(runs, "accuracy", accuracy, kind="capability")
        + _value_rows(runs, "bad-accuracy", [a + 0.2 for a in accuracy], kind="capability", created=100)
        + _value_rows(runs, "neg-gap", [-g for g in runs["gap"]], created=200)
    )
    rows = _by_label(score_measures(runs, values))
    assert rows["accuracy"].axiom == "pass" and rows["accuracy"].axiom_value == pytest.approx(0.02)
    assert rows["bad-accuracy"].axiom == "fail" and rows["bad-accuracy"].axiom_value == pytest.approx(0.22)
    # a capability score enters negated: accuracy falls as the gap grows, so its τ is positive
    assert rows["accuracy"].tau_gap == pytest.approx(kendall_tau([-a for a in accuracy], runs["gap"]))
    assert rows["accuracy"].tau_gap == pytest.approx(-kendall_tau(accuracy, runs["gap"]))
    assert rows["accuracy"].tau_gap > 0.7
    # a complexity measure is not: minus the gap is perfectly wrong
    assert rows["neg-gap"].tau_gap == pytest.approx(-1.0) and rows["neg-gap"].axiom == "n/a"
    assert rows["accuracy"].value_clean == pytest.approx(0.9)
    assert rows["accuracy"].value_noise == pytest.approx(np.mean([0.02, 0.04, 0.5, 0.0, 0.02]))


def test_capability_kind_recorded_in_the_store_needs_no_plugin():
    runs = _store_runs()
    values = _store_values(runs)
    values.loc[values["measure"] == "held-out", "measure"] = "not-installed"
    alone = _by_label(score_measures(runs, values))["not-installed"]
    told = _by_label(score_measures(runs, values, kinds={"not-installed": "capability"}))["not-installed"]
    assert alone.model_dump_json() == told.model_dump_json()
    assert alone.kind == "capability" and alone.axiom == "pass"
    # the recorded kind wins over a fallback that disagrees
    overruled = _by_label(score_measures(runs, values, kinds={"not-installed": "complexity"}))["not-installed"]
    assert overruled.model_dump_json() == alone.model_dump_json()


def test_an_old_store_without_kinds_or_default_options_still_scores():
    recorded_runs = _store_runs()
    runs = recorded_runs.drop(columns="labels_uninformative")
    values = _store_values(recorded_runs)
    values["kind"] = None
    values["default_options"] = None
    extra = _value_rows(runs, "coarse", np.arange(len(runs)), options={"bins": 4}, default=None, created=5000)
    values = pd.concat([values, pd.DataFrame(extra)], ignore_index=True)
    values["kind"] = None
    values = values.drop(columns="status")  # older frames: the status follows from the error
    plain = _by_label(score_measures(runs, values))
    assert set(plain) == {"close", "coarse[]", "coarse[bins=4]", "held-out", "wild", "oracle σ=0.02", "oracle σ=0.05"}
    assert plain["held-out"].kind == "complexity" and plain["held-out"].axiom == "n/a"
    assert plain["close"].runs < len(runs)  # values with an error are failed
    told = _by_label(score_measures(runs, values, kinds={"held-out": "capability"}))
    assert told["held-out"].kind == "capability"
    # the p_c = 1 runs come from the corruption's name: labels at level 1
    at_one = (runs["corruption"] == "labels") & (runs["level"] == 1.0)
    assert told["held-out"].axiom == "pass"
    assert told["held-out"].axiom_value == pytest.approx(0.01)
    assert at_one.sum() == 9
    # the same store with kinds and labels_uninformative recorded gives the same row
    recorded = _store_values(recorded_runs)
    same = _by_label(score_measures(recorded_runs, recorded))["held-out"]
    assert same.model_dump_json() == told["held-out"].model_dump_json()


def test_newest_version_and_labels_for_options():
    runs = _store_runs(seeds=1)
    gap = runs["gap"].fillna(0).to_numpy()
    values = pd.DataFrame(
        _value_rows(runs, "norm", -gap, version="1")
        + _value_rows(runs, "norm", gap, version="2", created=100)
        + _value_rows(runs, "norm", gap * 2, version="2", options={"p": 1, "scale": "log"}, default=False, created=200)
        + _value_rows(runs, "other", gap, version="9", created=300)
        + _value_rows(runs, "other", -gap, version="3", created=400)  # created last: the newest
    )
    rows = _by_label(score_measures(runs, values))
    assert set(rows) - {"oracle σ=0.02", "oracle σ=0.05"} == {"norm", "norm[p=1,scale=log]", "other"}
    assert rows["norm"].tau_gap == pytest.approx(1.0)  # version 2, not version 1
    assert rows["norm[p=1,scale=log]"].name == "norm"
    assert rows["other"].tau_gap == pytest.approx(-1.0)


def test_rows_are_sorted_by_tau_with_undefined_last_and_values_of_other_runs_ignored():
    runs = _store_runs(seeds=1)
    gap = runs["gap"].fillna(0).to_numpy()
    stranger = _value_rows(runs.assign(run_id="elsewhere"), "constant", [1.0] * len(runs), created=500)[:1]
    values = pd.DataFrame(
        _value_rows(runs, "constant", [1.0] * len(runs))
        + _value_rows(runs, "worse", -gap, created=100)
        + _value_rows(runs, "better", gap, created=200)
        + stranger
    )
    scores = score_measures(runs, values)
    assert [s.measure for s in scores][:1] == ["better"] and scores[-1].measure == "constant"
    assert math.isnan(scores[-1].tau_gap) and scores[-1].runs == len(runs)
    assert score_measures(runs.iloc[0:0], values) == []
    assert [s.reference for s in score_measures(runs, values.iloc[0:0])] == [True, True]


def test_measure_scores_carry_nan_and_infinity_through_json():
    runs = _store_runs(seeds=1)
    values = pd.DataFrame(_value_rows(runs, "inf", [np.inf] * len(runs)))
    row = _by_label(score_measures(runs, values))["inf"]
    assert math.isinf(row.value_clean) and math.isnan(row.tau_gap)
    again = MeasureScore.model_validate_json(row.model_dump_json())
    assert math.isinf(again.value_noise) and math.isnan(again.psi)
    assert again.model_dump_json() == row.model_dump_json()
