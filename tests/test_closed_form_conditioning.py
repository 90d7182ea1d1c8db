"""The 2n+d construction's condition number: estimated, recorded with the run, and warned about
(one line) when the triangular solve can no longer be trusted."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

from genbench.cli.common import one_line_warnings
from genbench.cli.main import app
from genbench.errors import GenbenchWarning
from genbench.models.interpolation import (
    ILL_CONDITIONED,
    FiniteSampleInterpolation,
    IllConditionedFit,
    InterpolationOptions,
    condition_number,
)
from genbench.schemas import TrainConfig
from genbench.training import ClosedFormTrainer


def near_duplicates(pairs: int, gap: float, dim: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``pairs`` random float64 points, each beside a copy of itself moved by about ``gap``, and
    random labels of 10 classes."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(pairs, dim, generator=generator, dtype=torch.float64)
    moved = base + gap * torch.randn(pairs, dim, generator=generator, dtype=torch.float64)
    return torch.cat([base, moved]), torch.randint(0, 10, (2 * pairs,), generator=generator)


def spread(n: int, dim: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def design(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A 2n+d triangular design matrix of the points ``x`` (as the fit builds it)."""
    generator = torch.Generator().manual_seed(seed)
    projections = torch.sort(x.double() @ torch.randn(x.shape[1], generator=generator, dtype=torch.float64)).values
    thresholds = torch.cat([projections[:1] - 1, (projections[:-1] + projections[1:]) / 2])
    return torch.relu(projections[:, None] - thresholds[None, :])


def test_near_duplicate_points_warn_and_record_the_condition_number():
    x, y = near_duplicates(20, gap=1e-12)
    with pytest.warns(IllConditionedFit, match=r"condition number .* above 1e\+15") as caught:
        _, diagnostics = FiniteSampleInterpolation().fit(x, y, 10, InterpolationOptions(), seed=0)
    assert diagnostics["condition_number"] > ILL_CONDITIONED
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert "40 training points" in str(caught[0].message) and "near-duplicate" in str(caught[0].message)
    assert issubclass(IllConditionedFit, GenbenchWarning)


def test_well_spread_points_do_not_warn():
    x, y = spread(300)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedFit)
        module, diagnostics = FiniteSampleInterpolation().fit(x, y, 10, InterpolationOptions(), seed=0)
    assert 1.0 <= diagnostics["condition_number"] < ILL_CONDITIONED
    with torch.no_grad():
        assert torch.equal(module(x).argmax(1), y)


@pytest.mark.parametrize(
    "points",
    [spread(1)[0], spread(3)[0], spread(200)[0], spread(200, dim=1, seed=4)[0], near_duplicates(30, 1e-6)[0]],
    ids=["n=1", "n=3", "n=200", "n=200-in-1-d", "near-duplicates-1e-6"],
)
def test_the_estimate_is_the_2_norm_condition_number_from_below(points):
    matrix = design(points)
    exact = float(torch.linalg.cond(matrix))
    estimate = condition_number(matrix)
    assert estimate >= 1.0
    assert exact * 0.95 <= estimate <= exact * (1 + 1e-6)


def test_the_trainer_passes_the_warning_and_the_number_on_with_the_outcome():
    x, y = near_duplicates(20, gap=1e-12)
    trainer = ClosedFormTrainer(FiniteSampleInterpolation(), InterpolationOptions(), (5,), 10, TrainConfig())
    with pytest.warns(IllConditionedFit):
        [outcome] = trainer.fit(x, y[None, :], [0])
    assert outcome.diagnostics["condition_number"] > ILL_CONDITIONED


def test_the_command_line_shows_a_genbench_warning_as_one_line(capsys):
    with pytest.warns(UserWarning) as python_shown:
        with one_line_warnings():
            warnings.warn("the solve\nmay be off", IllConditionedFit)
            warnings.warn("an ordinary warning", UserWarning)
    assert capsys.readouterr().err == "warning: the solve; may be off\n"
    assert [str(w.message) for w in python_shown] == ["an ordinary warning"]  # left to Python


def test_a_stored_interpolation_run_lists_its_condition_number(tmp_path):
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app,
        ["run", "--dataset", "gaussian-mixture", "--model", "interpolation", "--levels", "0", "--seeds", "0",
         "--measure", "params", "--store", str(store), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.stderr
    listed = CliRunner().invoke(app, ["runs", "--store", str(store), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    [run] = json.loads(listed.stdout)
    assert 1.0 <= run["diag_condition_number"] < ILL_CONDITIONED and run["diag_residual"] < 1e-3
