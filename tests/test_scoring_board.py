"""The board's scores beyond τ: bootstrap intervals, the conditional mutual information, the
sign-error, the corruption axiom's two parts, partial evaluation and the board's notes — each
against an independent computation (brute force over the resampled data, scipy, or numbers
worked by hand in the comments)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau

from genbench.scoring import bootstrap as bootstrap_module
from genbench.scoring import conditional_mutual_information, granulated_kendall, sign_error
from genbench.scoring.board import grid_axes, score_board
from genbench.scoring.bootstrap import GroupedCellTau, _CellTau, cell_weights, mean_over_groups, percentile_interval
from genbench.scoring.granulated import _GranulatedGrid, _axis_codes
from genbench.scoring.mutual_information import PairwiseCMI
from genbench.scoring.selection import select_runs, slices
from genbench.errors import SpecError, UnknownNameError

MEDIUM = settings(max_examples=15, deadline=None)


def grid(models: int, levels: int, seeds: int, noise: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """runs and values frames: a measure = gap + N(0, noise²), gap rising with the level."""
    rng = np.random.default_rng(seed)
    records = []
    for m in range(models):
        for level_index in range(levels):
            for s in range(seeds):
                level = level_index / max(levels - 1, 1)
                records.append(dict(model=f"m{m}", level=level, seed=s, gap=level * 0.8 + 0.05 * m + rng.normal(0, 0.02)))
    runs = pd.DataFrame(records)
    runs.insert(0, "run_id", [f"r{i}" for i in range(len(runs))])
    runs["dataset"], runs["corruption"], runs["num_test"] = "d", "labels", 1000
    runs["labels_uninformative"] = runs["level"] == 1.0
    measure = runs["gap"] + rng.normal(0, noise, len(runs))
    values = value_rows("noisy", runs["run_id"], measure)
    return runs, values


def value_rows(name: str, run_ids, values, kind: str = "complexity") -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(run_id=run_id, measure=name, version="1", options_hash="h", options={}, value=float(value),
                 seconds=0.01, error=None, status="ok", kind=kind, default_options=True, details={},
                 created_at=float(i))
            for i, (run_id, value) in enumerate(zip(run_ids, values))
        ]
    )


def row(scores, name):
    return next(score for score in scores if score.measure == name)


# ---------------------------------------------------------------------------
# The bootstrap: every replicate equals the score of its resampled data
# ---------------------------------------------------------------------------


def _replicate_pairs(frame: pd.DataFrame, cells: np.ndarray, weights: np.ndarray) -> list[tuple[int, int]]:
    """The replicate as pairs of rows of ``frame``: every pair of runs of the drawn cells (a cell
    drawn w times is w draws), except the pairs between two draws of one cell."""
    items = [(run, draw) for run in range(len(frame)) for draw in range(int(weights[cells[run]]))]
    return [
        (a, b)
        for index, (a, draw_a) in enumerate(items)
        for (b, draw_b) in items[index + 1 :]
        if cells[a] != cells[b] or draw_a == draw_b
    ]


def _tau_b_over(pairs, x, y) -> float:
    """Kendall tau-b over a list of pairs: sum of sign products / sqrt(untied in x · untied in y)."""
    pairs = [(a, b) for a, b in pairs if not (np.isnan(x[a]) or np.isnan(x[b]) or np.isnan(y[a]) or np.isnan(y[b]))]
    concordance = sum(np.sign(x[a] - x[b]) * np.sign(y[a] - y[b]) for a, b in pairs)
    untied_x = sum(x[a] != x[b] for a, b in pairs)
    untied_y = sum(y[a] != y[b] for a, b in pairs)
    return concordance / math.sqrt(untied_x * untied_y) if untied_x and untied_y else math.nan


def _psi_axes_over(frame, pairs, axes) -> dict[str, float]:
    """Granulated Kendall's psi per axis over a list of pairs: per group of rows sharing the other
    axes, tau-b over the group's pairs when the group's axis takes two values among rows with a
    measure, averaged over the defined groups."""
    x, y = frame["mu"].to_numpy(), frame["gap"].to_numpy()
    result = {}
    for axis in axes:
        others = [other for other in axes if other != axis]
        keys = [tuple(row) for row in frame[others].to_numpy()] if others else [()] * len(frame)
        taus = []
        for key in dict.fromkeys(keys):
            inside = [(a, b) for a, b in pairs if keys[a] == key and keys[b] == key]
            present = {r for pair in inside for r in pair if not np.isnan(x[r])}
            if len({frame[axis].iloc[r] for r in present}) < 2:
                continue
            tau = _tau_b_over(inside, x, y)
            if not math.isnan(tau):
                taus.append(tau)
        result[axis] = float(np.mean(taus)) if taus else math.nan
    return result


@st.composite
def random_grids(draw):
    models, levels, seeds = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 3))
    rows = [(m, l, s) for m in range(models) for l in range(levels) for s in range(seeds)]
    frame = pd.DataFrame(rows, columns=["model", "level", "seed"])
    values = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, np.nan])  # ties and missing values frequent
    frame["gap"] = draw(st.lists(st.sampled_from([0.0, 0.2, 0.4, 0.6]), min_size=len(rows), max_size=len(rows)))
    frame["mu"] = draw(st.lists(values, min_size=len(rows), max_size=len(rows)))
    return frame


@MEDIUM
@given(random_grids(), st.integers(0, 2**31), st.booleans())
def test_every_bootstrap_replicate_is_the_score_of_its_resampled_runs(frame, seed, large_path):
    if large_path:  # groups bootstrapped one at a time, the path of groups of more than 256 runs
        bootstrap_module._LARGE_GROUP, saved = 1, bootstrap_module._LARGE_GROUP
    try:
        cells = (frame["model"] * 10 + frame["level"]).to_numpy()
        cells = pd.factorize(cells)[0]
        weights = cell_weights(int(cells.max()) + 1, 8, seed)
        overall = _CellTau(cells, frame["gap"].to_numpy(), weights).replicates(frame["mu"].to_numpy())
        grid = _GranulatedGrid({"model": _axis_codes(frame["model"]), "level": _axis_codes(frame["level"])},
                               frame["gap"].to_numpy())
        per_axis = {
            axis: mean_over_groups(
                GroupedCellTau(grouped.groups, grouped.group_count, cells, frame["gap"].to_numpy(), grid.codes[axis],
                               weights).replicates(frame["mu"].to_numpy())
            )
            for axis, grouped in grid.by_axis.items()
        }
    finally:
        if large_path:
            bootstrap_module._LARGE_GROUP = saved
    x, y = frame["mu"].to_numpy(), frame["gap"].to_numpy()
    for b in range(weights.shape[0]):
        pairs = _replicate_pairs(frame, cells, weights[b])
        expected = _tau_b_over(pairs, x, y)
        assert (math.isnan(expected) and math.isnan(overall[b])) or overall[b] == pytest.approx(expected, abs=1e-5)
        expected_axes = _psi_axes_over(frame, pairs, list(grid.by_axis))
        for axis, replicates in per_axis.items():
            want = expected_axes[axis]
            assert (math.isnan(want) and math.isnan(replicates[b])) or replicates[b] == pytest.approx(want, abs=1e-5)


def test_a_replicate_that_draws_every_cell_once_is_the_point_estimate():
    frame = pd.DataFrame([(m, l, s) for m in range(3) for l in range(4) for s in range(3)], columns=["model", "level", "seed"])
    rng = np.random.default_rng(5)
    frame["gap"], frame["mu"] = rng.normal(size=len(frame)), rng.normal(size=len(frame))
    cells = (frame["model"] * 4 + frame["level"]).to_numpy()
    once = np.ones((1, 12), dtype=np.float32)
    assert _CellTau(cells, frame["gap"].to_numpy(), once).replicates(frame["mu"].to_numpy())[0] == pytest.approx(
        kendalltau(frame["mu"], frame["gap"]).statistic, abs=1e-6)


def test_replicates_are_centred_on_the_estimate_when_seeds_are_many():
    # Eight seeds a cell: were the pairs between two draws of one cell kept, the seed-to-seed
    # pairs would weigh twice as much as in the data and pull every replicate down.
    runs, values = grid(models=3, levels=6, seeds=8, noise=0.05, seed=0)
    noisy = row(score_board(runs, values, bootstrap=1000)[0], "noisy")
    assert noisy.tau_gap_low < noisy.tau_gap < noisy.tau_gap_high
    assert noisy.psi_low < noisy.psi < noisy.psi_high
    middle = (noisy.tau_gap_low + noisy.tau_gap_high) / 2
    assert abs(middle - noisy.tau_gap) < 0.25 * (noisy.tau_gap_high - noisy.tau_gap_low)


def test_cell_weights_resample_every_cell_count_with_a_fixed_seed():
    weights = cell_weights(7, 50, seed=3)
    assert weights.shape == (50, 7) and (weights.sum(axis=1) == 7).all()
    assert np.array_equal(weights, cell_weights(7, 50, seed=3))
    assert not np.array_equal(weights, cell_weights(7, 50, seed=4))


def test_percentile_interval_needs_most_replicates_defined():
    assert percentile_interval(np.array([0.0, 1.0, 2.0, 3.0, 4.0])) == pytest.approx((0.1, 3.9))
    assert all(math.isnan(v) for v in percentile_interval(np.array([1.0, np.nan, np.nan])))


@MEDIUM
@given(st.integers(0, 10_000), st.floats(0.0, 0.3))
def test_the_interval_contains_the_point_estimate(seed, noise):
    runs, values = grid(models=3, levels=5, seeds=2, noise=noise, seed=seed)
    scores, _ = score_board(runs, values, bootstrap=400)
    noisy = row(scores, "noisy")
    rounding = 1e-9  # replicates are summed in another order than the point estimate
    assert noisy.tau_gap_low - rounding <= noisy.tau_gap <= noisy.tau_gap_high + rounding
    assert noisy.psi_low - rounding <= noisy.psi <= noisy.psi_high + rounding


def test_the_interval_shrinks_as_cells_grow():
    widths = []
    for levels in (4, 16, 64):
        runs, values = grid(models=2, levels=levels, seeds=2, noise=0.15, seed=1)
        noisy = row(score_board(runs, values, bootstrap=500)[0], "noisy")
        widths.append(noisy.tau_gap_high - noisy.tau_gap_low)
    assert widths[0] > widths[1] > widths[2] > 0


# ---------------------------------------------------------------------------
# Properties of τ and Ψ on the board
# ---------------------------------------------------------------------------


@MEDIUM
@given(st.integers(0, 10_000))
def test_tau_of_the_gap_itself_is_one_and_of_its_negation_minus_one(seed):
    runs, _ = grid(models=2, levels=4, seeds=2, noise=0.0, seed=seed)
    values = pd.concat([value_rows("same", runs["run_id"], runs["gap"]), value_rows("negated", runs["run_id"], -runs["gap"])])
    scores, _ = score_board(runs, values, bootstrap=50)
    assert row(scores, "same").tau_gap == pytest.approx(1.0) and row(scores, "same").psi == pytest.approx(1.0)
    assert row(scores, "negated").tau_gap == pytest.approx(-1.0) and row(scores, "negated").psi == pytest.approx(-1.0)
    assert row(scores, "same").tau_gap_low == pytest.approx(1.0)  # every replicate is perfect too


@MEDIUM
@given(st.integers(0, 10_000))
def test_scores_are_invariant_under_a_strictly_increasing_transform(seed):
    runs, values = grid(models=2, levels=4, seeds=2, noise=0.1, seed=seed)
    transformed = values.assign(measure="exp", value=np.exp(3 * values["value"]) + 1)
    scores, _ = score_board(runs, pd.concat([values, transformed]), bootstrap=100)
    plain, exp = row(scores, "noisy"), row(scores, "exp")
    for field in ("tau_gap", "tau_gap_low", "tau_gap_high", "psi", "psi_low", "psi_high", "cmi", "tau_level"):
        assert getattr(exp, field) == pytest.approx(getattr(plain, field), abs=1e-6), field


def test_a_constant_measure_scores_nothing():
    runs, _ = grid(models=2, levels=4, seeds=2, noise=0.0)
    scores, _ = score_board(runs, value_rows("constant", runs["run_id"], np.full(len(runs), 3.0)), bootstrap=100)
    constant = row(scores, "constant")
    assert math.isnan(constant.tau_gap) and math.isnan(constant.psi) and math.isnan(constant.tau_gap_low)
    assert constant.cmi == 0.0  # V_mu never varies: no information about V_g


# ---------------------------------------------------------------------------
# CMI and sign-error on the board agree with the frame functions
# ---------------------------------------------------------------------------


@MEDIUM
@given(random_grids())
def test_the_board_mutual_information_equals_the_pair_listing_one(frame):
    axes = ["model", "level"]
    expected = conditional_mutual_information(frame, "mu", "gap", axes)
    ours = PairwiseCMI({axis: _axis_codes(frame[axis]) for axis in axes}, frame["gap"].to_numpy()).score(frame["mu"].to_numpy())
    assert (math.isnan(expected) and math.isnan(ours)) or ours == pytest.approx(expected, abs=1e-6)


def test_board_cmi_and_sign_error_equal_the_frame_functions_on_its_axes():
    runs, values = grid(models=3, levels=4, seeds=4, noise=0.1, seed=2)
    scores, notes = score_board(runs, values, bootstrap=0)
    noisy = row(scores, "noisy")
    frame = runs.assign(mu=values["value"].to_numpy())
    assert noisy.cmi == pytest.approx(conditional_mutual_information(frame, "mu", "gap", ["model", "level"]))
    expected = sign_error(frame, "mu", "gap", ["model", "level"], test_size=1000)
    assert noisy.sign_error_environments == expected["environments"] > 0  # 4 seeds: 16 pairs per environment
    assert noisy.sign_error_mean == pytest.approx(expected["mean"])
    assert noisy.sign_error_max == pytest.approx(expected["max"])
    assert not any("Sign-error" in note for note in notes)


def test_sign_error_hand_case_two_configurations_with_four_seeds():
    # One axis (model), two configurations, four seeds each: gaps 0.1 (m0) and 0.5 (m1), so every
    # one of the 16 seed pairs has |dg| = 0.4 and n = 1000: w = (1 - 2 e^{-2·1000·0.2²})² - 1/2
    # = (1 - 2e^-80)² - 1/2 ≈ 0.5, equal weights, effective size 16 ≥ 12: one environment.
    # The measure agrees with the gap except for m1's seed 3, lower than every m0 run: 4 of the
    # 16 pairs are wrong, error 0.25.
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(8)], "model": ["m0"] * 4 + ["m1"] * 4,
                         "seed": [0, 1, 2, 3] * 2, "gap": [0.1] * 4 + [0.5] * 4})
    runs["dataset"], runs["corruption"], runs["level"], runs["num_test"] = "d", "labels", 0.0, 1000
    measure = [1.0, 1.1, 1.2, 1.3, 2.0, 2.1, 2.2, 0.5]
    scores, _ = score_board(runs, value_rows("mu", runs["run_id"], measure), bootstrap=0)
    mu = row(scores, "mu")
    assert mu.sign_error_environments == 1
    assert mu.sign_error_mean == pytest.approx(0.25) and mu.sign_error_max == pytest.approx(0.25)
    assert mu.sign_error_p90 == pytest.approx(0.25)


# ---------------------------------------------------------------------------
# The corruption axiom, whole
# ---------------------------------------------------------------------------


def test_the_axiom_has_two_parts_zero_at_full_noise_and_no_rise_with_it():
    runs, _ = grid(models=1, levels=5, seeds=1, noise=0.0)  # levels 0, .25, .5, .75, 1
    good = [0.9, 0.7, 0.5, 0.2, 0.01]
    rises = [0.9, 0.3, 0.6, 0.2, 0.0]  # 0.3 → 0.6: a rise of 0.3 although the end is 0
    never_zero = [0.9, 0.8, 0.7, 0.6, 0.4]
    values = pd.concat([value_rows(name, runs["run_id"], v, kind="capability")
                        for name, v in (("good", good), ("rises", rises), ("never-zero", never_zero))])
    scores, _ = score_board(runs, values, bootstrap=0)
    assert (row(scores, "good").axiom, row(scores, "good").axiom_zero, row(scores, "good").axiom_monotone) == ("pass",) * 3
    # never rises: max over j of (m_j - min of the earlier means) is the smallest fall, 0.2 → 0.01
    assert row(scores, "good").axiom_rise == pytest.approx(-0.19)
    assert row(scores, "good").axiom_value == pytest.approx(0.01)
    bad = row(scores, "rises")
    assert (bad.axiom, bad.axiom_zero, bad.axiom_monotone) == ("fail", "pass", "fail")
    assert bad.axiom_rise == pytest.approx(0.3)
    far = row(scores, "never-zero")
    assert (far.axiom, far.axiom_zero, far.axiom_monotone) == ("fail", "fail", "pass")
    complexity = row(score_board(runs, value_rows("c", runs["run_id"], good), bootstrap=0)[0], "c")
    assert (complexity.axiom, complexity.axiom_zero, complexity.axiom_monotone) == ("n/a",) * 3


# ---------------------------------------------------------------------------
# Partial evaluation, slices, notes, axes
# ---------------------------------------------------------------------------


def test_the_no_rise_part_compares_levels_within_a_model_not_across_a_changing_mix():
    # score = scale · (2 − p_c) with scales 0.5 (m0) and 0.05 (m1): it falls in each model. m1 has no
    # value at p_c = 1, so the pooled means per level would be 0.55 (p_c 0), 0.4125 (0.5) and 0.5
    # (p_c 1, m0 alone): a rise of 0.0875 > 0.05 made by the mix. Per model the steps are m0
    # 1 → 0.75 → 0.5 and m1 0.1 → 0.075: the largest is m1's −0.025.
    runs, _ = grid(models=2, levels=3, seeds=1, noise=0.0)  # levels 0, 0.5, 1
    scale = np.where(runs["model"] == "m0", 0.5, 0.05)
    score = scale * (2.0 - runs["level"].to_numpy())
    score[((runs["model"] == "m1") & (runs["level"] == 1.0)).to_numpy()] = np.nan
    scores, _ = score_board(runs, value_rows("cap", runs["run_id"], score, kind="capability"), bootstrap=0)
    cap = row(scores, "cap")
    assert cap.axiom_monotone == "pass" and cap.axiom_rise == pytest.approx(-0.025)


def test_recipe_fields_at_their_defaults_are_axes_values_too():
    from genbench.schemas import TrainConfig

    runs, _ = grid(models=1, levels=2, seeds=1, noise=0.0)
    runs = pd.concat([runs, runs.assign(run_id=runs["run_id"] + "b")], ignore_index=True)
    # the stored JSON leaves augment out at its default, False
    runs["train_config"] = [TrainConfig(augment=flag).model_dump_json() for flag in (False, False, True, True)]
    assert "augment" not in runs["train_config"].iloc[0]
    assert list(grid_axes(runs)["train.augment"]) == [0, 0, 1, 1]
    assert list(select_runs(runs, ["train.augment=false"])["run_id"]) == ["r0", "r1"]


def test_a_partly_evaluated_measure_is_marked_and_scored_on_its_own_runs():
    runs, values = grid(models=2, levels=4, seeds=2, noise=0.05)
    half = runs["run_id"][runs["model"] == "m0"]
    partial = value_rows("half", half, runs.loc[half.index, "gap"])
    scores, notes = score_board(runs, pd.concat([values, partial]), bootstrap=0)
    assert row(scores, "half").partial and row(scores, "half").runs == 8 and row(scores, "half").runs_total == 16
    assert not row(scores, "noisy").partial
    alone = row(score_board(runs[runs["model"] == "m0"], partial, bootstrap=0)[0], "half")
    assert row(scores, "half").tau_gap == pytest.approx(alone.tau_gap)  # computed on the runs it has
    assert any("half" in note and "fewer runs" in note for note in notes)


def test_a_board_with_too_few_runs_says_so_and_gives_no_interval():
    runs, values = grid(models=1, levels=2, seeds=1, noise=0.0)  # two runs: every τ is ±1
    scores, notes = score_board(runs, values)
    assert abs(row(scores, "noisy").tau_gap) == 1.0 and math.isnan(row(scores, "noisy").tau_gap_low)
    assert any("too few for τ or Ψ to say anything" in note for note in notes)


def test_the_recipe_enters_the_axes_field_by_field():
    runs, _ = grid(models=1, levels=2, seeds=1, noise=0.0)
    runs = pd.concat([runs, runs.assign(run_id=runs["run_id"] + "b")], ignore_index=True)
    runs["train_config"] = [json.dumps({"lr": lr, "batch_size": 128}) for lr in (0.1, 0.1, 0.01, 0.01)]
    axes = grid_axes(runs)
    assert set(axes) == {"level", "train.lr"}  # the batch size does not vary; model and dataset neither
    assert list(axes["train.lr"]) == [0, 0, 1, 1]


def test_where_and_by_choose_the_runs_of_each_board():
    runs, _ = grid(models=2, levels=3, seeds=1, noise=0.0)
    runs["model"] = runs["model"].map({"m0": "mlp(hidden=[512])", "m1": "cnn(channels=[32, 64])"})
    assert set(select_runs(runs, ["model=mlp"])["model"]) == {"mlp(hidden=[512])"}
    assert list(select_runs(runs, ["level<=0.5", "model!=mlp"])["level"]) == [0.0, 0.5]
    assert list(select_runs(runs, ["level=0,1"])["level"]) == [0.0, 1.0, 0.0, 1.0]  # any of the values
    assert [label for label, _ in slices(runs, "model")] == ["model=cnn(channels=[32, 64])", "model=mlp(hidden=[512])"]
    with pytest.raises(UnknownNameError, match="unknown --where column 'colour'"):
        select_runs(runs, ["colour=red"])
    for bad, message in ((["level<high"], "expects one number"), (["model"], "expects COLUMN=VALUE")):
        with pytest.raises(SpecError, match=message):
            select_runs(runs, bad)
    with pytest.raises(SpecError, match="--by must be one of"):
        slices(runs, "seed")
