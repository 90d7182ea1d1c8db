"""Zhang et al. 2017's finite-sample expressivity construction (§4, Theorem 1), fitted in closed form."""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from genbench.errors import DataError, GenbenchWarning, SpecError
from genbench.models.closed_form import ClosedFormModel
from genbench.schemas import Options

#: Rows of inputs pushed through the hidden layer at once (bounds the [rows, n] float64 activations).
_CHUNK_ELEMENTS = 1 << 22
#: Fresh projection directions drawn before giving up on distinct projections.
_MAX_DRAWS = 100
#: Above this condition number of the triangular system the float64 solve no longer fits the labels
#: reliably (relative errors of order cond · 1.1e-16 reach 0.1): the fit warns.
ILL_CONDITIONED = 1e15
#: Power-iteration steps of ``condition_number``'s two singular-value estimates.
_CONDITION_STEPS = 20


class IllConditionedFit(GenbenchWarning):
    """The 2n+d construction's triangular system is too badly conditioned (above
    ``ILL_CONDITIONED``) for its float64 solve to be trusted: near-duplicate training points."""


class InterpolationOptions(Options):
    bias_rule: Literal["midpoint"] = Field(
        "midpoint",
        description="placement of the thresholds between the sorted projections: b_1 = x_(1) - 1, "
        "b_j = (x_(j-1) + x_(j)) / 2 (the only rule so far)",
    )


class InterpolatingReLUNetwork(nn.Module):
    """c(x) = W^T relu(<a, flatten(x)> - b): one shared projection ``a``, ``n`` thresholds ``b``
    and one output weight per (threshold, class).

    Parameters are float64 (the triangular system is badly conditioned); inputs are
    cast to float64 and the logits come back as float32.
    """

    def __init__(self, num_features: int, num_hidden: int, num_classes: int) -> None:
        super().__init__()
        self.projection = nn.Linear(num_features, 1, bias=False, dtype=torch.float64)
        self.thresholds = nn.Parameter(torch.zeros(num_hidden, dtype=torch.float64))
        self.output = nn.Linear(num_hidden, num_classes, bias=False, dtype=torch.float64)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """relu(<a, x> - b_j) for every row of ``x`` [m, *input_shape]: [m, n] float64."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        return torch.relu(self.projection(flat) - self.thresholds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = max(1, _CHUNK_ELEMENTS // max(1, self.thresholds.shape[0]))
        outputs = [self.output(self.hidden(chunk)) for chunk in torch.split(x, rows)] if x.shape[0] else []
        if not outputs:
            return torch.zeros(0, self.output.out_features, dtype=torch.float32, device=x.device)
        return torch.cat(outputs).to(torch.float32)


class FiniteSampleInterpolation(ClosedFormModel):
    """Zhang, Bengio, Hardt, Recht & Vinyals (ICLR 2017), §4, Theorem 1: a two-layer ReLU
    network c(x) = Σ_j w_j · max(<a, x> − b_j, 0) with 2n + d weights represents any
    function on n distinct points in d dimensions (d + n + K·n weights for K outputs:
    one column of W per class, the targets being the one-hot labels).

    Construction (seeded): draw a ~ N(0, I_d) from ``torch.Generator().manual_seed(seed)``,
    redrawing until the projections x_i = <a, z_i> of the training points are pairwise
    distinct; sort them, x_(1) < … < x_(n); interleave the thresholds, b_1 = x_(1) − 1 and
    b_j = (x_(j−1) + x_(j)) / 2, so that b_1 < x_(1) < b_2 < … < b_n < x_(n); then
    A_ij = max(x_(i) − b_j, 0) is lower-triangular with a positive diagonal and A W = Y is
    solved by a float64 forward substitution (``torch.linalg.solve_triangular``).
    A is badly conditioned (cond ≈ 7e7 at n = 200), hence float64 throughout; the fit
    reports the residual max|A W − Y|, cond(A) (the 2-norm condition number, estimated from
    below by ``condition_number``) and the weight count, and warns (``IllConditionedFit``, one
    line) when cond(A) exceeds ``ILL_CONDITIONED``: near-duplicate points make the solve lose
    labels. A is dense: memory grows as n².
    """

    name: ClassVar[str] = "interpolation"
    description: ClassVar[str] = (
        "two-layer ReLU net with d + n + K·n weights interpolating any labels in closed form (Zhang et al. §4)"
    )
    Options = InterpolationOptions
    solved_parameter: ClassVar[str] = "output.weight"  # zeroed in the initial state

    def fit(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        num_classes: int,
        options: InterpolationOptions,
        seed: int,
    ) -> tuple[nn.Module, dict[str, float]]:
        points, labels = self.training_matrix(x_train, y_train, num_classes)
        n, d = points.shape
        if torch.unique(points, dim=0).shape[0] < n:
            raise DataError("interpolation needs n distinct points; found duplicates")

        generator = torch.Generator().manual_seed(int(seed))
        for _ in range(_MAX_DRAWS):
            direction = torch.randn(d, generator=generator, dtype=torch.float64)
            projections, order = torch.sort(points @ direction)
            thresholds = _thresholds(projections, options.bias_rule)
            # distinct projections and a strictly positive diagonal x_(j) - b_j (a midpoint
            # of two adjacent floats could round onto one of them)
            if bool((projections[1:] > projections[:-1]).all()) and bool((projections > thresholds).all()):
                break
        else:  # pragma: no cover - needs pathological inputs
            raise DataError(f"interpolation found no projection separating the {n} points in {_MAX_DRAWS} draws")

        design = torch.relu(projections[:, None] - thresholds[None, :])  # A_ij, lower-triangular
        targets = nn.functional.one_hot(labels[order], num_classes).to(torch.float64)
        weights = torch.linalg.solve_triangular(design, targets, upper=False)  # [n, K]

        module = InterpolatingReLUNetwork(d, n, num_classes)
        with torch.no_grad():
            module.projection.weight.copy_(direction[None, :])
            module.thresholds.copy_(thresholds)
            module.output.weight.copy_(weights.T)
        module.eval()
        diagnostics = {
            "residual": float((design @ weights - targets).abs().max()),
            "condition_number": condition_number(design),
            "num_weights": float(d + n + num_classes * n),
        }
        if diagnostics["condition_number"] > ILL_CONDITIONED:
            warnings.warn(
                f"interpolation (seed {seed}): the triangular system of its {n} training points has condition "
                f"number {diagnostics['condition_number']:.1e}, above {ILL_CONDITIONED:.0e}, so the float64 solve "
                f"may not fit every label (max residual {diagnostics['residual']:.2g}); near-duplicate training "
                "points are the usual cause",
                IllConditionedFit,
                stacklevel=2,
            )
        return module, diagnostics

    def from_state(
        self,
        state: dict[str, torch.Tensor],
        input_shape: tuple[int, ...],
        num_classes: int,
        options: InterpolationOptions,
    ) -> nn.Module:
        try:
            num_features = state["projection.weight"].shape[1]
            num_hidden = state["thresholds"].shape[0]
            state_classes = state["output.weight"].shape[0]
        except (KeyError, IndexError) as exc:
            raise SpecError(f"not a saved {self.name} model: missing or malformed {exc}") from exc
        self.check_saved_shape(num_features, state_classes, input_shape, num_classes)
        module = InterpolatingReLUNetwork(num_features, num_hidden, num_classes)
        module.load_state_dict(state)
        return module.eval()


def condition_number(lower: torch.Tensor, steps: int = _CONDITION_STEPS) -> float:
    """The 2-norm condition number σ_max/σ_min of an invertible lower-triangular float64 matrix,
    estimated from below: σ_max as ‖A v‖ after ``steps`` power-iteration steps on AᵀA, 1/σ_min as
    ‖A⁻¹ w‖ after ``steps`` steps on A⁻ᵀA⁻¹ (two triangular solves each), both from seeded unit
    vectors. Each factor is the norm of the matrix applied to a unit vector, so in exact arithmetic
    neither exceeds its true value; the iterations converge to them (on the 2n+d designs, to
    ``torch.linalg.cond``'s SVD value within a few percent). O(n²) per step, where the SVD is O(n³).
    At least 1, as every condition number is."""
    generator = torch.Generator().manual_seed(0)
    n = lower.shape[0]
    v = torch.randn(n, 1, generator=generator, dtype=lower.dtype)
    w = torch.randn(n, 1, generator=generator, dtype=lower.dtype)
    v, w = v / v.norm(), w / w.norm()
    for _ in range(steps):
        v = lower.T @ (lower @ v)
        v = v / v.norm()
        w = torch.linalg.solve_triangular(lower.T, torch.linalg.solve_triangular(lower, w, upper=False), upper=True)
        w = w / w.norm()
    largest = (lower @ v).norm()
    inverse = torch.linalg.solve_triangular(lower, w, upper=False).norm()
    return max(1.0, float(largest * inverse))


def _thresholds(sorted_projections: torch.Tensor, rule: str) -> torch.Tensor:
    if rule != "midpoint":  # pragma: no cover - guarded by the Literal
        raise SpecError(f"unknown bias_rule {rule!r}")
    first = sorted_projections[:1] - 1.0
    midpoints = (sorted_projections[:-1] + sorted_projections[1:]) / 2
    return torch.cat([first, midpoints])

