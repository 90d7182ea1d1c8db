"""Norm-based complexity measures: weight norms, spectral products, distances from
initialization, the path norm and the spectral complexity of Bartlett et al. 2017.

Conventions (Jiang et al. 2020, Appendix C; Dziugaite et al. 2020): batch norm is folded
into the preceding linear or convolutional layer first (in both the final and the initial
network), and only the weights W_1 … W_d of the linear and convolutional layers enter the
norms — no biases, no batch-norm parameters — in the order the layers are registered. A
convolution kernel [out, in, k₁, …] is read as the matrix [out, in·k₁·…] for spectral
norms (Jiang et al.'s convention; this is not the operator norm of the convolution).
d is the number of such layers (parallel branches, as in Inception, each count as a layer).

Notation: fro_i = ‖W_i‖_F², spec_i = σ_max(W_i)², γ = the ``percentile``-th percentile over
the training set of the margin logit_y − max_{j≠y} logit_j (10th by default).

Every measure returns NaN for a diverged model (non-finite weights or margin) and +∞ for a
margin-normalized measure when γ ≤ 0 (the model does not fit that percentile).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field

from genbench.errors import MeasureError
from genbench.measures.base import BaseMeasure, MeasureContext, SizeNormalizedOptions
from genbench.measures.quantities import (
    all_finite,
    cached_on_one_thread,
    folded_initial_weights,
    folded_weights,
    training_margin,
    weight_changes,
)
from genbench.measures.weights import NORMALIZATION_LAYERS, as_matrix, fold_batch_norm

JIANG = "Jiang et al. 2020, 'Fantastic generalization measures and where to find them', §C"


def squared_frobenius_norms(weights: list[torch.Tensor]) -> list[float]:
    """‖W_i‖_F² for every layer."""
    return [w.pow(2).sum().item() for w in weights]


def squared_spectral_norm(weight: torch.Tensor) -> float:
    """σ_max(W)² of ``weight`` read as a matrix: the largest eigenvalue of the Gram matrix
    W Wᵀ or Wᵀ W (the smaller one), in float64. As accurate as an SVD for the largest
    singular value (relative error ~1e-15) and several times faster on these small matrices,
    which matters when the CPU is shared (LAPACK's SVD degrades badly under contention)."""
    matrix = as_matrix(weight).double()
    gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    return max(torch.linalg.eigvalsh(gram)[-1].item(), 0.0)


def squared_spectral_norms(weights: list[torch.Tensor]) -> list[float]:
    """σ_max(W_i)² for every layer."""
    return [squared_spectral_norm(w) for w in weights]


def final_spectral(ctx: MeasureContext) -> list[float]:
    """spec_i of the final network, cached."""
    return cached_on_one_thread(ctx, "norms:spec", lambda: squared_spectral_norms(folded_weights(ctx)))


def final_frobenius(ctx: MeasureContext) -> list[float]:
    """fro_i of the final network, cached."""
    return cached_on_one_thread(ctx, "norms:fro", lambda: squared_frobenius_norms(folded_weights(ctx)))


def change_frobenius(ctx: MeasureContext) -> list[float]:
    """‖W_i − W⁰_i‖_F² for every layer, cached."""
    return cached_on_one_thread(ctx, "norms:change-fro", lambda: squared_frobenius_norms(weight_changes(ctx)))


def change_spectral(ctx: MeasureContext) -> list[float]:
    """σ_max(W_i − W⁰_i)² for every layer, cached."""
    return cached_on_one_thread(ctx, "norms:change-spec", lambda: squared_spectral_norms(weight_changes(ctx)))


def change_two_one(ctx: MeasureContext) -> list[float]:
    """‖W_iᵀ − W⁰_iᵀ‖_{2,1} for every layer (see ``two_one_norm``), cached."""
    return cached_on_one_thread(ctx, "norms:change-two-one", lambda: [two_one_norm(c) for c in weight_changes(ctx)])


def sum_of_logs(values: list[float]) -> float:
    """Σ log v_i (−∞ if some v_i = 0)."""
    return sum(math.log(v) if v > 0 else -math.inf for v in values)


def value_without_margin(gamma: float) -> float:
    """What a margin-normalized measure is when γ is not positive: NaN for a diverged model
    (NaN γ), +∞ when γ ≤ 0 (the model does not fit that percentile)."""
    return math.nan if math.isnan(gamma) else math.inf


def log_sum_form(log_product: float, depth: int) -> float:
    """log d + (1/d)·log Π: the log of d times the geometric mean of the d factors."""
    return math.log(depth) + log_product / depth


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------


class MarginNormalizedOptions(SizeNormalizedOptions):
    """Options of a measure divided by the training margin γ."""

    percentile: float = Field(
        10.0, ge=0, le=100, description="percentile over the training set of the margins taken as γ"
    )


# ---------------------------------------------------------------------------
# Base classes: weights-only measures and their -over-margin forms
# ---------------------------------------------------------------------------


class _WeightMeasure(BaseMeasure):
    """A norm of the folded weights W_1 … W_d of the final network (NaN if any is non-finite)."""

    Options = SizeNormalizedOptions
    source: ClassVar[str] = JIANG

    def compute(self, ctx: MeasureContext, options: SizeNormalizedOptions) -> float:
        if not all_finite(folded_weights(ctx)):
            return math.nan
        return self.normalized(self.value(ctx), ctx, options)

    def value(self, ctx: MeasureContext) -> float:
        raise NotImplementedError


class _LogOverMargin(BaseMeasure):
    """A log-scale weight measure with −2 log γ added before the log-sum averaging."""

    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    Options = MarginNormalizedOptions
    source: ClassVar[str] = JIANG
    log_scale: ClassVar[bool] = True
    averaged: ClassVar[bool] = False  # log-sum form: log d + (1/d)(…)

    def compute(self, ctx: MeasureContext, options: MarginNormalizedOptions) -> float:
        if not all_finite(folded_weights(ctx)):
            return math.nan
        gamma = training_margin(ctx, options.percentile)
        if not gamma > 0:
            return self.normalized(value_without_margin(gamma), ctx, options)
        total = sum_of_logs(self.factors(ctx)) - 2.0 * math.log(gamma)
        if self.averaged:
            total = log_sum_form(total, len(folded_weights(ctx)))
        return self.normalized(total, ctx, options)

    def factors(self, ctx: MeasureContext) -> list[float]:
        raise NotImplementedError


# ---------------------------------------------------------------------------
# Frobenius and spectral norms of the weights
# ---------------------------------------------------------------------------


class ParamNorm(_WeightMeasure):
    """Squared ℓ2 norm of all weights.

    param-norm = Σ_i ‖W_i‖_F² over the linear and convolutional weights after batch-norm
    folding (no biases). Source: Jiang et al. 2020, §C ("param norm").
    """

    name: ClassVar[str] = "param-norm"

    def value(self, ctx: MeasureContext) -> float:
        return sum(final_frobenius(ctx))


class LogProdOfFro(_WeightMeasure):
    """Log of the product of the squared Frobenius norms of the layers.

    log-prod-of-fro = Σ_i log ‖W_i‖_F² (folded weights, no biases). Source: Jiang et al.
    2020, §C ("log prod of fro").
    """

    name: ClassVar[str] = "log-prod-of-fro"
    log_scale: ClassVar[bool] = True

    def value(self, ctx: MeasureContext) -> float:
        return sum_of_logs(final_frobenius(ctx))


class LogSumOfFro(_WeightMeasure):
    """Log of d times the geometric mean of the squared Frobenius norms.

    log-sum-of-fro = log d + (1/d) Σ_i log ‖W_i‖_F² (d weight layers, folded, no biases).
    Source: Jiang et al. 2020, §C ("log sum of fro").
    """

    name: ClassVar[str] = "log-sum-of-fro"
    log_scale: ClassVar[bool] = True

    def value(self, ctx: MeasureContext) -> float:
        return log_sum_form(sum_of_logs(final_frobenius(ctx)), len(folded_weights(ctx)))


class LogProdOfSpec(_WeightMeasure):
    """Log of the product of the squared spectral norms of the layers.

    log-prod-of-spec = Σ_i log σ_max(W_i)² (folded weights, no biases; a convolution
    kernel [out, in, k…] as the matrix [out, in·k…]). Source: Jiang et al. 2020, §C
    ("log prod of spec").
    """

    name: ClassVar[str] = "log-prod-of-spec"
    log_scale: ClassVar[bool] = True

    def value(self, ctx: MeasureContext) -> float:
        return sum_of_logs(final_spectral(ctx))


class LogSumOfSpec(_WeightMeasure):
    """Log of d times the geometric mean of the squared spectral norms.

    log-sum-of-spec = log d + (1/d) Σ_i log σ_max(W_i)² (d weight layers, folded, no
    biases). Source: Jiang et al. 2020, §C ("log sum of spec").
    """

    name: ClassVar[str] = "log-sum-of-spec"
    log_scale: ClassVar[bool] = True

    def value(self, ctx: MeasureContext) -> float:
        return log_sum_form(sum_of_logs(final_spectral(ctx)), len(folded_weights(ctx)))


class FroOverSpec(_WeightMeasure):
    """Sum over layers of the stable rank ‖W_i‖_F² / σ_max(W_i)².

    fro-over-spec = Σ_i ‖W_i‖_F² / σ_max(W_i)² (folded weights, no biases; a layer with
    W_i = 0 contributes 0). Source: Jiang et al. 2020, §C ("fro over spec").
    """

    name: ClassVar[str] = "fro-over-spec"

    def value(self, ctx: MeasureContext) -> float:
        return sum(f / s for f, s in zip(final_frobenius(ctx), final_spectral(ctx)) if s > 0)


# ---------------------------------------------------------------------------
# Distances from initialization
# ---------------------------------------------------------------------------


class DistanceFromInit(_WeightMeasure):
    """Squared Frobenius distance of the weights from their initialization.

    dist-from-init = Σ_i ‖W_i − W⁰_i‖_F² over linear and convolutional weights, with batch
    norm folded into both the final and the initial network (no biases, no batch-norm
    parameters). Source: Jiang et al. 2020, §C ("frobenius distance to initialization");
    Nagarajan & Kolter 2019.
    """

    name: ClassVar[str] = "dist-from-init"
    version: ClassVar[str] = "2"  # 2: batch norm folded first
    requires: ClassVar[frozenset[str]] = frozenset({"init_weights"})

    def value(self, ctx: MeasureContext) -> float:
        return sum(change_frobenius(ctx))


class DistSpecInit(_WeightMeasure):
    """Sum of the squared spectral norms of the weight changes since initialization.

    dist-spec-init = Σ_i σ_max(W_i − W⁰_i)² (batch norm folded in both networks, no biases;
    a convolution kernel read as the matrix [out, in·k…]). Source: Jiang et al. 2020, §C
    ("spectral distance to initialization").
    """

    name: ClassVar[str] = "dist-spec-init"
    requires: ClassVar[frozenset[str]] = frozenset({"init_weights"})

    def compute(self, ctx: MeasureContext, options: SizeNormalizedOptions) -> float:
        if not all_finite(folded_initial_weights(ctx)):
            return math.nan
        return super().compute(ctx, options)

    def value(self, ctx: MeasureContext) -> float:
        return sum(change_spectral(ctx))


# ---------------------------------------------------------------------------
# Margin-normalized forms
# ---------------------------------------------------------------------------


class LogProdOfSpecOverMargin(_LogOverMargin):
    """Log of the product of the squared spectral norms over the squared margin.

    log-prod-of-spec-over-margin = Σ_i log σ_max(W_i)² − 2 log γ (γ: the 10th percentile
    of the training margins by default; +∞ when γ ≤ 0). Unchanged when the last layer
    (weights and bias) is scaled by c > 0. Source: Jiang et al. 2020, §C.
    """

    name: ClassVar[str] = "log-prod-of-spec-over-margin"

    def factors(self, ctx: MeasureContext) -> list[float]:
        return final_spectral(ctx)


class LogSumOfSpecOverMargin(_LogOverMargin):
    """Log of d times the geometric mean of the squared spectral norms, over the squared margin.

    log-sum-of-spec-over-margin = log d + (1/d)(Σ_i log σ_max(W_i)² − 2 log γ) (+∞ when
    γ ≤ 0). Unchanged when the last layer is scaled by c > 0. Source: Jiang et al. 2020, §C.
    """

    name: ClassVar[str] = "log-sum-of-spec-over-margin"
    averaged: ClassVar[bool] = True

    def factors(self, ctx: MeasureContext) -> list[float]:
        return final_spectral(ctx)


class LogProdOfFroOverMargin(_LogOverMargin):
    """Log of the product of the squared Frobenius norms over the squared margin.

    log-prod-of-fro-over-margin = Σ_i log ‖W_i‖_F² − 2 log γ (+∞ when γ ≤ 0). Unchanged
    when the last layer is scaled by c > 0. Source: Jiang et al. 2020, §C.
    """

    name: ClassVar[str] = "log-prod-of-fro-over-margin"

    def factors(self, ctx: MeasureContext) -> list[float]:
        return final_frobenius(ctx)


class LogSumOfFroOverMargin(_LogOverMargin):
    """Log of d times the geometric mean of the squared Frobenius norms, over the squared margin.

    log-sum-of-fro-over-margin = log d + (1/d)(Σ_i log ‖W_i‖_F² − 2 log γ) (+∞ when γ ≤ 0).
    Unchanged when the last layer is scaled by c > 0. Source: Jiang et al. 2020, §C.
    """

    name: ClassVar[str] = "log-sum-of-fro-over-margin"
    averaged: ClassVar[bool] = True

    def factors(self, ctx: MeasureContext) -> list[float]:
        return final_frobenius(ctx)


class SpecInitMain(BaseMeasure):
    """Main term of the spectral PAC-Bayes bound of Neyshabur et al. 2018, on a log scale.

    spec-init-main = Σ_i log σ_max(W_i)² − 2 log γ + log Σ_i ‖W_i − W⁰_i‖_F² / σ_max(W_i)²
    (= log-prod-of-spec-over-margin + log of the spectrally weighted distance from
    initialization; batch norm folded in both networks, no biases). +∞ when γ ≤ 0; −∞ at
    initialization (W = W⁰). Source: Jiang et al. 2020, §C ("spec_init main"); Neyshabur,
    Bhojanapalli & Srebro 2018.
    """

    name: ClassVar[str] = "spec-init-main"
    requires: ClassVar[frozenset[str]] = frozenset({"init_weights", "train_data"})
    Options = MarginNormalizedOptions
    source: ClassVar[str] = JIANG
    log_scale: ClassVar[bool] = True

    def compute(self, ctx: MeasureContext, options: MarginNormalizedOptions) -> float:
        if not (all_finite(folded_weights(ctx)) and all_finite(folded_initial_weights(ctx))):
            return math.nan
        gamma = training_margin(ctx, options.percentile)
        if not gamma > 0:
            return self.normalized(value_without_margin(gamma), ctx, options)
        spec = final_spectral(ctx)
        weighted = sum(dist / s for dist, s in zip(change_frobenius(ctx), spec) if s > 0)
        log_weighted = math.log(weighted) if weighted > 0 else -math.inf
        return self.normalized(sum_of_logs(spec) - 2.0 * math.log(gamma) + log_weighted, ctx, options)


# ---------------------------------------------------------------------------
# Path norm
# ---------------------------------------------------------------------------


def squared_parameter_network(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of ``model`` with batch norm folded and every parameter squared.

    Raises MeasureError if a normalization layer remains after folding (a batch norm that
    does not follow a weight layer, local response norm, layer norm, group norm): the path
    norm is not defined through them."""
    folded = fold_batch_norm(model).double()
    remaining = sorted({type(m).__name__ for m in folded.modules() if isinstance(m, NORMALIZATION_LAYERS)})
    if remaining:
        raise MeasureError(
            "path-norm is defined for networks of linear, conv, ReLU, pooling layers and batch norm that "
            f"follows a linear or conv layer; this one has {', '.join(remaining)}"
        )
    with torch.no_grad():
        for parameter in folded.parameters():
            parameter.pow_(2)
    return folded


@torch.no_grad()
def path_norm(ctx: MeasureContext) -> float:
    """Σ_outputs f_{w²}(1) of the folded network (cached in ``ctx.cache``)."""

    def compute() -> float:
        squared = squared_parameter_network(ctx.model)
        ones = torch.ones((1, *ctx.input_shape), device=ctx.device, dtype=torch.float64)
        return squared(ones).sum().item()

    return cached_on_one_thread(ctx, "norms:path-norm", compute)


class PathNorm(BaseMeasure):
    """ℓ2 path norm: Σ over input→output paths of the product of squared parameters.

    path-norm = Σ_outputs f_{w²}(1), where f_{w²} is the network, after folding batch norm
    into the preceding layer, with every parameter (weights and biases) replaced by its
    square, and 1 is the all-ones input; all activations are then non-negative, so the
    ReLUs pass everything and the sum runs over every path (max- and average-pooling layers
    are applied as they are, as in Jiang et al.'s code). Networks with a normalization layer
    that cannot be folded (local response norm, layer norm, …) raise a MeasureError.
    Source: Neyshabur, Tomioka & Srebro 2015; Jiang et al. 2020, §C ("path norm").
    Invariant under the rescaling of a hidden ReLU unit (incoming weights and bias × c > 0,
    outgoing × 1/c).
    """

    name: ClassVar[str] = "path-norm"
    Options = SizeNormalizedOptions
    source: ClassVar[str] = "Neyshabur, Tomioka & Srebro 2015; " + JIANG

    def compute(self, ctx: MeasureContext, options: SizeNormalizedOptions) -> float:
        return self.normalized(path_norm(ctx), ctx, options)


class PathNormOverMargin(BaseMeasure):
    """ℓ2 path norm over the squared margin.

    path-norm-over-margin = path-norm / γ² (path-norm as in ``path-norm``: batch norm
    folded, every parameter squared, all-ones input; +∞ when γ ≤ 0, NaN for a diverged
    model). Unchanged when the last layer (weights and bias) is scaled by c > 0.
    Source: Jiang et al. 2020, §C ("path norm over margin").
    """

    name: ClassVar[str] = "path-norm-over-margin"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    Options = MarginNormalizedOptions
    source: ClassVar[str] = JIANG

    def compute(self, ctx: MeasureContext, options: MarginNormalizedOptions) -> float:
        value = path_norm(ctx)
        gamma = training_margin(ctx, options.percentile)
        if math.isnan(value) or not gamma > 0:
            return self.normalized(math.nan if math.isnan(value) else value_without_margin(gamma), ctx, options)
        return self.normalized(value / gamma**2, ctx, options)


# ---------------------------------------------------------------------------
# Spectral complexity (Bartlett, Foster & Telgarsky 2017)
# ---------------------------------------------------------------------------


def two_one_norm(change: torch.Tensor) -> float:
    """‖Aᵀ − Mᵀ‖_{2,1} of Bartlett et al. for a weight change A − M stored as PyTorch does,
    [out, in] (a convolution kernel as [out, in·k…]): the sum over output units of the ℓ2
    norm of the unit's incoming weight changes (rows of [out, in], columns of its transpose)."""
    return torch.linalg.vector_norm(as_matrix(change), dim=1).sum().item()


def log_spectral_complexity(spectral: list[float], two_one: list[float]) -> float:
    """log of Π_i s_i · (Σ_i (r_i / s_i)^{2/3})^{3/2} with s_i = ‖W_i‖_σ and r_i = ‖·‖_{2,1}.

    Computed as (3/2)·log Σ_i (r_i · Π_{j≠i} s_j)^{2/3}, which equals the formula when every
    s_i > 0 and is its continuous extension when some s_i = 0; −∞ when the value is 0."""
    logs_s = [math.log(s) if s > 0 else -math.inf for s in spectral]
    terms = []
    for i, r in enumerate(two_one):
        log_r = math.log(r) if r > 0 else -math.inf
        terms.append((2 / 3) * (log_r + sum(log for j, log in enumerate(logs_s) if j != i)))
    finite = [t for t in terms if t != -math.inf]
    if not finite:
        return -math.inf
    top = max(finite)
    return 1.5 * (top + math.log(sum(math.exp(t - top) for t in finite)))


class SpectralComplexity(BaseMeasure):
    """Spectral complexity of Bartlett, Foster & Telgarsky 2017 over the margin (raw scale).

    spectral-complexity = Π_i ‖W_i‖_σ · (Σ_i (‖W_iᵀ − W⁰_iᵀ‖_{2,1} / ‖W_i‖_σ)^{2/3})^{3/2} / γ,

    with ρ_i = 1 (ReLU and max-pooling are 1-Lipschitz), the reference matrices M_i = W⁰_i
    (the initialization), ‖·‖_σ the spectral norm and ‖A‖_{2,1} = Σ_columns ‖A_{:,k}‖_2 as
    in the paper, applied to the transpose: for a weight stored [out, in] (PyTorch's layout,
    x ↦ W x, the paper's A_i) it is the sum over output units of the ℓ2 norm of that unit's
    incoming weight changes. Convolution kernels are read as the matrix [out, in·k…]. Batch
    norm is folded into both networks first; biases are left out.

    Reported on the raw scale: the product is evaluated through logarithms, so it only
    overflows (to +∞) when the value itself exceeds ~1.8e308 (Σ log ‖W_i‖_σ > 709), far
    beyond the networks here (the 22-layer small Inception). +∞ when γ ≤ 0; 0 at
    initialization. Source: Bartlett, Foster & Telgarsky 2017, "Spectrally-normalized
    margin bounds for neural networks", Theorem 1.1.
    """

    name: ClassVar[str] = "spectral-complexity"
    requires: ClassVar[frozenset[str]] = frozenset({"init_weights", "train_data"})
    Options = MarginNormalizedOptions
    source: ClassVar[str] = "Bartlett, Foster & Telgarsky 2017, 'Spectrally-normalized margin bounds', Thm 1.1"

    def compute(self, ctx: MeasureContext, options: MarginNormalizedOptions) -> float:
        if not (all_finite(folded_weights(ctx)) and all_finite(folded_initial_weights(ctx))):
            return math.nan
        gamma = training_margin(ctx, options.percentile)
        if not gamma > 0:
            return self.normalized(value_without_margin(gamma), ctx, options)
        spectral = [math.sqrt(s) for s in final_spectral(ctx)]
        log_value = log_spectral_complexity(spectral, change_two_one(ctx)) - math.log(gamma)
        value = math.exp(log_value) if log_value < 709.7 else math.inf
        return self.normalized(value, ctx, options)


MEASURES = (
    ParamNorm,
    DistanceFromInit,
    DistSpecInit,
    LogProdOfFro,
    LogSumOfFro,
    LogProdOfSpec,
    LogSumOfSpec,
    FroOverSpec,
    SpecInitMain,
    LogProdOfSpecOverMargin,
    LogSumOfSpecOverMargin,
    LogProdOfFroOverMargin,
    LogSumOfFroOverMargin,
    PathNorm,
    PathNormOverMargin,
    SpectralComplexity,
)
