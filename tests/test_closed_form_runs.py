"""Closed-form models go through the same run → store → measure path as trained ones."""

from __future__ import annotations

import genbench
from genbench.schemas import ComponentRef, ExperimentSpec


def test_kernel_and_interpolation_runs_are_stored_and_measured(tmp_path):
    spec = ExperimentSpec(
        name="closed-form",
        models=[ComponentRef(name="kernel"), ComponentRef(name="interpolation")],
        levels=[0.0, 1.0],
        seeds=[0],
        measures=[ComponentRef(name="params"), ComponentRef(name="inverse-margin"),
                  ComponentRef(name="cross-validation")],
    )
    store = genbench.open_store(tmp_path / "store")
    board = genbench.run(spec, store=store)
    runs = store.runs().set_index(["model", "level"])
    assert (runs["train_accuracy"] == 1.0).all() and (runs["steps"] == 0).all()
    kernel = runs.xs("kernel(gamma=None,kernel=gaussian,ridge=0.0)", level="model")
    assert kernel.loc[0.0, "test_accuracy"] > 0.9 and kernel.loc[1.0, "test_accuracy"] < 0.2
    assert kernel.loc[1.0, "diag_rkhs_norm"] > kernel.loc[0.0, "diag_rkhs_norm"]  # Zhang et al. §5
    interpolation = runs.xs("interpolation(bias_rule=midpoint)", level="model")
    assert (interpolation["diag_residual"] < 1e-2).all()
    assert set(board["measure"]) >= {"params", "inverse-margin", "cross-validation"}
    values = store.measure_values()
    assert values["value"].notna().all() and values["error"].isna().all()
