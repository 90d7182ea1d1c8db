"""Minimum-norm kernel interpolation (Zhang et al. 2017, §5), fitted in closed form."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from genbench.errors import SpecError
from genbench.models.closed_form import ClosedFormModel
from genbench.schemas import Options

#: Kernel entries computed at once in the forward pass (bounds the [rows, n] float64 block).
_CHUNK_ELEMENTS = 1 << 22
#: A Cholesky solve whose interpolation residual max|(K + ridge I) α − Y| exceeds this is
#: treated as numerically singular and replaced by the pseudo-inverse solution.
_CHOLESKY_RESIDUAL_TOLERANCE = 1e-6

KernelName = Literal["gaussian", "linear"]


class KernelOptions(Options):
    kernel: KernelName = Field(
        "gaussian",
        description="'gaussian': exp(-gamma ||x - x'||^2); 'linear': <x, x'> (the minimum-norm linear model)",
    )
    gamma: float | None = Field(
        None,
        gt=0,
        description="width of the Gaussian kernel; None = 1 / (d · Var(x_train)) over all training entries, "
        "scikit-learn's gamma='scale' (Zhang et al.'s 0.02 on MNIST is for raw pixels in [0, 1])",
    )
    ridge: float = Field(
        0.0, ge=0, description="added to the kernel's diagonal before solving; 0 = exact (minimum-norm) interpolation"
    )


def kernel_matrix(kernel: str, x: torch.Tensor, support: torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
    """k(x_i, s_j) for rows of ``x`` [m, d] and ``support`` [n, d], in their (float64) dtype: [m, n]."""
    inner = x @ support.T
    if kernel == "linear":
        return inner
    if kernel == "gaussian":
        squared = (x * x).sum(1)[:, None] + (support * support).sum(1)[None, :] - 2 * inner
        return torch.exp(-gamma * squared.clamp_min(0.0))
    raise SpecError(f"unknown kernel {kernel!r}; expected 'gaussian' or 'linear'")


class KernelMachine(nn.Module):
    """f(x) = k(flatten(x), support) @ alpha: one column of ``alpha`` per class.

    Buffers ``support`` [n, d] (the training inputs) and ``gamma`` (a float64 scalar;
    unused by the linear kernel), parameter ``alpha`` [n, K], all float64; inputs are cast
    to float64, the kernel rows are computed in chunks and the scores come back as float32.
    """

    def __init__(self, kernel: str, num_support: int, num_features: int, num_classes: int) -> None:
        super().__init__()
        if kernel not in ("gaussian", "linear"):
            raise SpecError(f"unknown kernel {kernel!r}; expected 'gaussian' or 'linear'")
        self.kernel = kernel
        self.register_buffer("support", torch.zeros(num_support, num_features, dtype=torch.float64))
        self.register_buffer("gamma", torch.zeros((), dtype=torch.float64))
        self.alpha = nn.Parameter(torch.zeros(num_support, num_classes, dtype=torch.float64))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, support={tuple(self.support.shape)}, classes={self.alpha.shape[1]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        rows = max(1, _CHUNK_ELEMENTS // max(1, self.support.shape[0]))
        outputs = [
            kernel_matrix(self.kernel, chunk, self.support, self.gamma) @ self.alpha for chunk in flat.split(rows)
        ]
        if not outputs:
            return torch.zeros(0, self.alpha.shape[1], dtype=torch.float32, device=x.device)
        return torch.cat(outputs).to(torch.float32)


class KernelInterpolation(ClosedFormModel):
    """Minimum-norm kernel interpolation, Zhang, Bengio, Hardt, Recht & Vinyals (ICLR 2017), §5.

    SGD from zero on a linear model stays in the span of the data, so an interpolating
    solution is f(x) = Σ_i α_i k(x_i, x) with K α = Y: the minimum-RKHS-norm interpolant.
    Here Y is the one-hot label matrix [n, K] and K is either the Gaussian kernel
    exp(−γ‖x − x'‖²) or the linear kernel X Xᵀ (then w = Xᵀα = X⁺Y). ``gamma`` None means
    1 / (d · Var(x_train)), the variance taken over all training entries (scikit-learn's
    gamma='scale'; 1 when that variance is 0). Everything is solved in float64. The linear
    kernel without ridge goes through the thin SVD X = U S Vᵀ: α = U S⁻² Uᵀ Y, singular values
    below max(n, d)·eps·s_max dropped — the minimum-norm least-squares solution, which no longer
    interpolates when X Xᵀ is singular (n > d, or duplicate points). Otherwise (K + ridge·I) α = Y
    is solved by Cholesky; when that fails or does not interpolate to 1e-6 (K numerically
    singular) the minimum-norm solution α = (K + ridge·I)⁺ Y is used instead (eigenvalues below
    n·eps·λ_max dropped). Either way the diagnostic ``pseudo_inverse`` is 1 when K was singular.

    Diagnostics: ``rkhs_norm`` = sqrt(trace(αᵀ K α)) = sqrt(Σ_k α_kᵀ K α_k), the RKHS norm of
    the vector-valued interpolant (the K output columns' squared norms summed, then
    square-rooted; K without the ridge); ``residual`` = max|K α − Y|; ``train_accuracy_closed_form``
    = mean(argmax (K α) = y); ``gamma`` (the value used; 0 for the linear kernel);
    ``pseudo_inverse`` (1 when the pseudo-inverse fallback was used, else 0).
    Memory and time: the dense n × n kernel (O(n²) memory, O(n³) solve).
    """

    name: ClassVar[str] = "kernel"
    description: ClassVar[str] = (
        "minimum-norm kernel interpolation K α = Y, Gaussian or linear kernel, in closed form (Zhang et al. §5)"
    )
    Options = KernelOptions
    solved_parameter: ClassVar[str] = "alpha"  # zeroed in the initial state

    def fit(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        num_classes: int,
        options: KernelOptions,
        seed: int,
    ) -> tuple[nn.Module, dict[str, float]]:
        """Deterministic: ``seed`` is unused."""
        support, labels = self.training_matrix(x_train, y_train, num_classes)
        n, d = support.shape
        gamma = resolve_gamma(options, support) if options.kernel == "gaussian" else 0.0

        gram = kernel_matrix(options.kernel, support, support, gamma)
        targets = nn.functional.one_hot(labels, num_classes).to(torch.float64)
        alpha, pseudo_inverse = _solve(options, support, gram, targets)

        fitted_scores = gram @ alpha
        module = KernelMachine(options.kernel, n, d, num_classes)
        with torch.no_grad():
            module.support.copy_(support)
            module.gamma.fill_(gamma)
            module.alpha.copy_(alpha)
        module.eval()
        diagnostics = {
            "rkhs_norm": math.sqrt(max(0.0, float((alpha * fitted_scores).sum()))),
            "residual": float((fitted_scores - targets).abs().max()),
            "train_accuracy_closed_form": float((fitted_scores.argmax(1) == labels).to(torch.float64).mean()),
            "gamma": float(gamma),
            "pseudo_inverse": float(pseudo_inverse),
        }
        return module, diagnostics

    def from_state(
        self,
        state: dict[str, torch.Tensor],
        input_shape: tuple[int, ...],
        num_classes: int,
        options: KernelOptions,
    ) -> nn.Module:
        try:
            num_support, num_features = state["support"].shape
            state_classes = state["alpha"].shape[1]
        except (KeyError, IndexError, ValueError) as exc:
            raise SpecError(f"not a saved {self.name} model: missing or malformed {exc}") from exc
        self.check_saved_shape(num_features, state_classes, input_shape, num_classes)
        module = KernelMachine(options.kernel, num_support, num_features, num_classes)
        module.load_state_dict(state)
        return module.eval()


def _solve(
    options: KernelOptions, support: torch.Tensor, gram: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, bool]:
    """α solving (K + ridge I) α = Y, and whether the minimum-norm pseudo-inverse solution was
    needed (K singular, or numerically so)."""
    n = gram.shape[0]
    eps = torch.finfo(torch.float64).eps
    if options.kernel == "linear" and options.ridge == 0:
        # K = X Xᵀ = U S² Uᵀ from the thin SVD of X (O(n d²), no n × n factorization);
        # α = U_r S_r⁻² U_rᵀ Y is the minimum-norm solution, exact when rank(X) = n.
        left, singular, _ = torch.linalg.svd(support, full_matrices=False)
        keep = singular > max(support.shape) * eps * float(singular.max()) if singular.numel() else singular > 0
        left, singular = left[:, keep], singular[keep]
        alpha = left @ ((left.T @ targets) / (singular**2)[:, None])
        return alpha, int(keep.sum()) < n
    system = gram + options.ridge * torch.eye(n, dtype=torch.float64) if options.ridge > 0 else gram
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) == 0:
        alpha = torch.cholesky_solve(targets, factor)
        if bool(torch.isfinite(alpha).all()) and (
            float((system @ alpha - targets).abs().max()) <= _CHOLESKY_RESIDUAL_TOLERANCE
        ):
            return alpha, False
    return torch.linalg.pinv(system, rtol=n * eps, hermitian=True) @ targets, True


def resolve_gamma(options: KernelOptions, support: torch.Tensor) -> float:
    """``options.gamma``, or 1 / (d · Var(x)) over all entries of the flattened training inputs
    (scikit-learn's gamma='scale'; 1 when the variance is 0)."""
    if options.gamma is not None:
        return float(options.gamma)
    variance = float(support.var(unbiased=False)) if support.numel() > 1 else 0.0
    return 1.0 / (support.shape[1] * variance) if variance > 0 else 1.0
