"""The leaderboard: formatting the scored rows, its random-label sanity check, and the API's board."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

import genbench
from genbench.api import measure_kinds
from genbench.report.leaderboard import COLUMNS, board_frame, noise_sanity_failures, render
from genbench.scoring import score_measures


def build_leaderboard(runs, values):
    """The board the API builds: the scored rows, formatted as a frame."""
    return board_frame(score_measures(runs, values))
from genbench.schemas import ComponentRef, CorruptionSpec, MeasureScore, MeasureValue, RunResult, RunSpec


def hand_grid() -> tuple[pd.DataFrame, pd.DataFrame]:
    levels = [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(6)],
            "dataset": "digits",
            "model": ["a", "a", "a", "b", "b", "b"],
            "corruption": "labels",
            "level": levels,
            "gap": [0.0, 0.4, 0.9, 0.1, 0.5, 0.8],
            "labels_uninformative": [level == 1.0 for level in levels],
        }
    )
    measures = {
        "rises": [1.0, 2.0, 3.0, 1.5, 2.5, 3.5],  # grows with p_c
        "falls": [3.0, 2.0, 1.0, 3.5, 2.5, 1.5],  # shrinks with p_c
        "constant": [7.0] * 6,  # no τ at all
    }
    rows = []
    for measure, values in measures.items():
        for i, value in enumerate(values):
            rows.append(
                dict(run_id=f"r{i}", measure=measure, version="1", options_hash="h", options={},
                     value=value, seconds=0.01, error=None, status="ok", kind="complexity",
                     default_options=True, details={}, created_at=float(i))
            )
    return runs, pd.DataFrame(rows)


def test_measures_that_do_not_rise_with_label_noise_are_named():
    runs, values = hand_grid()
    board = build_leaderboard(runs, values)
    assert sorted(noise_sanity_failures(board)) == ["constant", "falls"]
    text = render(board, "markdown")
    assert "2 of 3 complexity measures do not rise with p_c" in text
    assert "constant, falls" in text or "falls, constant" in text
    assert "do not rise" in render(board, "table")


def test_sanity_line_when_every_measure_rises():
    runs, values = hand_grid()
    board = build_leaderboard(runs, values[values["measure"] == "rises"])
    assert noise_sanity_failures(board) == []
    assert "all 1 complexity measures rise with p_c" in render(board, "markdown")


def test_the_board_has_one_column_per_score_field_sorted_by_tau():
    runs, values = hand_grid()
    board = build_leaderboard(runs, values)
    assert list(board.columns) == COLUMNS == list(MeasureScore.model_fields)
    assert set(board["measure"]) == {"rises", "oracle σ=0.02", "oracle σ=0.05", "falls", "constant"}
    taus = board["tau_gap"].dropna().tolist()
    assert taus == sorted(taus, reverse=True) and len(taus) == 4
    assert board.loc[board["measure"] == "rises", "name"].item() == "rises"
    # model axis: the pairs (r0, r3) and (r1, r4) agree with the gap, (r2, r5) does not -> 1/3;
    # level axis: within each model the measure rises with the gap -> 1
    rises = board.loc[board["measure"] == "rises", "psi_axes"].item()
    assert rises == {"model": pytest.approx(1 / 3), "level": pytest.approx(1.0)}
    assert board.loc[board["measure"] == "rises", "psi"].item() == pytest.approx(2 / 3)
    assert math.isnan(board.loc[4, "tau_gap"])  # a constant measure: last
    empty = build_leaderboard(runs.iloc[0:0], values)
    assert empty.empty and list(empty.columns) == COLUMNS


def test_csv_has_one_psi_column_per_axis_and_json_keeps_them_nested():
    runs, values = hand_grid()
    board = build_leaderboard(runs, values)
    header, *lines = render(board, "csv").splitlines()
    assert header.startswith("measure,kind,reference,runs,runs_total,partial,tau_gap,tau_gap_low,tau_gap_high,psi,"
                             "psi_low,psi_high,psi_model,psi_level,cmi,")
    assert header.endswith(",seconds_per_run,name,plugin,plugin_version,genbench_version")
    assert any(line.startswith("rises,complexity,False,6,6,False,") for line in lines)
    records = json.loads(render(board, "json"))["rows"]
    rises = next(record for record in records if record["measure"] == "rises")
    assert rises["psi_axes"] == {"model": pytest.approx(1 / 3), "level": pytest.approx(1.0)}
    constant = records[-1]
    assert constant["measure"] == "constant" and constant["tau_gap"] is None
    assert constant["psi_axes"] == {"model": None, "level": None}  # NaN inside the dict too
    # values without the provenance columns (an older store's frame): nothing recorded, said so
    assert all(record["plugin"] is None and record["genbench_version"] is None for record in records)
    provenance = json.loads(render(board, "json"))["provenance"]
    assert provenance["genbench_version"] == genbench.__version__ and provenance["values_genbench_versions"] == []
    assert [entry["measure"] for entry in provenance["measures"]] == [r["measure"] for r in records if not r["reference"]]


# ---------------------------------------------------------------------------
# genbench.leaderboard on a store: the registry only for kinds the store lacks
# ---------------------------------------------------------------------------


def _save_hand_store(path):
    store = genbench.open_store(path)
    runs, values = hand_grid()
    for row in runs.itertuples():
        spec = RunSpec(
            dataset=ComponentRef(name="digits"),
            model=ComponentRef(name="mlp", options={"hidden": [4 if row.model == "a" else 8]}),
            corruption=CorruptionSpec(name="labels", level=row.level),
        )
        result = RunResult(
            run_id=spec.run_id, status="converged", steps=10, epochs=1.0, steps_to_fit=10, train_accuracy=1.0,
            train_loss=0.01, test_accuracy=1.0 - row.gap, test_loss=1.0, gap=row.gap, wall_time=0.1, device="cpu",
            num_train=10, num_test=10, num_classes=10, num_parameters=100, labels_changed=row.level * 0.9,
            genbench_version="test", labels_uninformative=row.labels_uninformative,
        )
        store.save_run(spec, result, {}, {})
        accuracy = 1.0 - row.gap if row.level < 1.0 else 0.0
        for measure, value, kind in (
            ("rises", values.loc[(values.run_id == row.run_id) & (values.measure == "rises"), "value"].iloc[0], "complexity"),
            ("not-installed", accuracy, "capability"),  # a capability score whose plugin is gone
            ("cross-validation", accuracy, None),  # an older store: installed, kind not recorded
            ("gone-unrecorded", accuracy, None),  # an older store: not installed, kind not recorded
        ):
            store.save_measure_value(MeasureValue(
                run_id=spec.run_id, measure=measure, version="1", options_hash="h", options={}, value=value,
                seconds=0.01, kind=kind, default_options=None if kind is None else True,
            ))
    return store


def test_api_leaderboard_reads_kinds_from_the_store_and_the_registry_only_where_missing(tmp_path):
    store = _save_hand_store(tmp_path / "store")
    board = genbench.leaderboard(store).set_index("measure")
    assert board.loc["not-installed", "kind"] == "capability"
    assert board.loc["not-installed", "axiom"] == "pass" and board.loc["not-installed", "tau_gap"] > 0.9
    assert measure_kinds(["cross-validation", "gone-unrecorded"]) == {"cross-validation": "capability"}
    assert board.loc["cross-validation", "kind"] == "capability"  # from the registry
    assert board.loc["gone-unrecorded", "kind"] == "complexity"  # nothing says otherwise
    same = ["tau_gap", "psi", "tau_level", "axiom", "axiom_value", "value_clean", "value_noise", "runs"]
    assert board.loc["cross-validation", same].tolist() == board.loc["not-installed", same].tolist()
    assert board.loc["rises", "runs"] == 6 and board.loc["rises", "kind"] == "complexity"
