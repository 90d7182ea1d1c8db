"""The leaderboard's random-label sanity check on a hand-made grid."""

from __future__ import annotations

import pandas as pd

from genbench.report.leaderboard import build_leaderboard, noise_sanity_failures, render


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
                     value=value, seconds=0.01, error=None, created_at=float(i))
            )
    return runs, pd.DataFrame(rows)


def test_measures_that_do_not_rise_with_label_noise_are_named():
    runs, values = hand_grid()
    board = build_leaderboard(runs, values, kinds={}, default_options={})
    assert sorted(noise_sanity_failures(board)) == ["constant", "falls"]
    text = render(board, "markdown")
    assert "2 of 3 complexity measures do not rise with p_c" in text
    assert "constant, falls" in text or "falls, constant" in text
    assert "do not rise" in render(board, "table")


def test_sanity_line_when_every_measure_rises():
    runs, values = hand_grid()
    board = build_leaderboard(runs, values[values["measure"] == "rises"], kinds={}, default_options={})
    assert noise_sanity_failures(board) == []
    assert "all 1 complexity measures rise with p_c" in render(board, "markdown")
