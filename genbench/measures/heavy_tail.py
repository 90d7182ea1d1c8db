"""Data-free spectral measures of heavy-tailed self-regularization (Martin & Mahoney 2021).

Each weight layer (batch norm folded in first; biases excluded) gives an empirical spectral
density (ESD): the eigenvalues λ of the correlation matrix X = WᵀW/N of its weight matrix W
(N × M, N ≥ M: the larger side is N). A convolution kernel [out, in, k₁, …] gives, by default,
one [out, in] matrix per kernel position, and the eigenvalues of all k₁·… of them are pooled
into one ESD for the layer — WeightWatcher's default (``pool=True``); the option
``conv_matrices="reshaped"`` uses the [out, in·k₁·…] matrix instead.

The tail of the ESD is fitted by a power law p(λ) ∝ λ^(−α), λ ≥ x_min (Clauset, Shalizi &
Newman 2009): for each candidate x_min among the sorted eigenvalues (all but the largest),
α = 1 + n / Σ_{λ_i ≥ x_min} log(λ_i / x_min) (maximum likelihood, n = number of λ_i ≥ x_min),
and x_min is the candidate minimizing the Kolmogorov–Smirnov distance
D = max_j |F(λ_j) − j/n| over the sorted tail λ_0 ≤ … ≤ λ_{n−1}, F(λ) = 1 − (λ/x_min)^(1−α)
(the empirical CDF taken just below each eigenvalue, as WeightWatcher and the powerlaw
package compute it; a candidate with α ≤ 1 gets D = 1; ties go to the smallest x_min).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from threadpoolctl import threadpool_limits

from genbench.measures.base import BaseMeasure, Estimate, MeasureContext
from genbench.measures.weights import fold_batch_norm, weight_layers
from genbench.schemas import Options

#: Eigenvalues at most this fraction of the layer's largest are numerically zero (rank loss) and
#: left out of the power-law fit (relative, so that α stays invariant to scaling W).
ZERO_EIGENVALUE = 1e-12

#: Candidate x_min values whose KS distances are computed at once (bounds the memory to
#: KS_BLOCK × number of eigenvalues).
KS_BLOCK = 256


# ---------------------------------------------------------------------------
# Spectra
# ---------------------------------------------------------------------------


def layer_matrices(weight: torch.Tensor | np.ndarray, conv_matrices: str) -> np.ndarray:
    """The matrices whose spectra make up a layer's ESD, stacked [count, rows, cols] (float64):
    the [out, in] weight of a linear layer; for a convolution [out, in, k₁, …] either one
    [out, in] slice per kernel position ("slices") or the [out, in·k₁·…] reshape ("reshaped")."""
    if isinstance(weight, torch.Tensor):
        weight = weight.detach().cpu().numpy()
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim == 2:
        return weight[None]
    if conv_matrices == "reshaped":
        return weight.reshape(weight.shape[0], -1)[None]
    out, inputs = weight.shape[:2]
    return weight.reshape(out, inputs, -1).transpose(2, 0, 1)


def layer_eigenvalues(weight: torch.Tensor | np.ndarray, conv_matrices: str = "slices") -> np.ndarray:
    """Sorted eigenvalues of X = WᵀW/N of every matrix of the layer, pooled (N = the larger
    side of each matrix): λ = σ²/N for the singular values σ of W. NaN entries for a
    non-finite weight."""
    matrices = layer_matrices(weight, conv_matrices)
    if not np.isfinite(matrices).all():
        return np.full(min(matrices.shape[1:]) * len(matrices), np.nan)
    # numpy's LAPACK on one thread: on a few shared cores, BLAS threads waiting on each other
    # made these small SVDs 10–20× slower (and torch's svdvals slower still)
    with threadpool_limits(limits=1):
        singular = np.linalg.svd(matrices, compute_uv=False)
    larger_side = max(matrices.shape[1], matrices.shape[2])
    return np.sort((singular**2 / larger_side).ravel())


@dataclass(frozen=True)
class PowerLawFit:
    alpha: float
    xmin: float
    ks_distance: float
    tail_size: int


def ks_distances(log_x: np.ndarray, alphas: np.ndarray, start: int, stop: int) -> np.ndarray:
    """KS distances of the candidates x_min = x[start:stop] (x sorted ascending, given as logs)."""
    n_total = len(log_x)
    rows = np.arange(start, stop)[:, None]
    cols = np.arange(n_total)[None, :]
    tail = cols >= rows
    alpha = alphas[start:stop, None]
    ratio = np.where(tail, log_x[None, :] - log_x[rows], 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        fitted = 1.0 - np.exp((1.0 - alpha) * ratio)
    empirical = (cols - rows) / (n_total - rows)
    distance = np.where(tail, np.abs(fitted - empirical), 0.0).max(axis=1)
    valid = np.isfinite(alphas[start:stop]) & (alphas[start:stop] > 1)
    return np.where(valid, distance, 1.0)


def fit_power_law(eigenvalues: np.ndarray) -> PowerLawFit:
    """Clauset et al.'s power-law fit of ``eigenvalues`` (see the module docstring): the MLE α
    at every candidate x_min, and the candidate with the smallest KS distance."""
    x = np.sort(np.asarray(eigenvalues, dtype=np.float64))
    if len(x) < 2:
        return PowerLawFit(math.nan, math.nan, math.nan, len(x))
    log_x = np.log(x)
    counts = len(x) - np.arange(len(x) - 1)
    suffix_sums = np.cumsum(log_x[::-1])[::-1]
    excess = suffix_sums[:-1] - counts * log_x[:-1]  # Σ_{j ≥ i} log(x_j / x_i)
    with np.errstate(divide="ignore"):
        alphas = 1.0 + counts / excess
    distances = np.concatenate(
        [
            ks_distances(log_x, alphas, start, min(start + KS_BLOCK, len(x) - 1))
            for start in range(0, len(x) - 1, KS_BLOCK)
        ]
    )
    best = int(np.argmin(distances))
    return PowerLawFit(float(alphas[best]), float(x[best]), float(distances[best]), int(counts[best]))


def fitted_part(eigenvalues: np.ndarray) -> np.ndarray:
    """The eigenvalues that are not numerically zero (relative to the largest)."""
    if len(eigenvalues) == 0:
        return eigenvalues
    return eigenvalues[eigenvalues > ZERO_EIGENVALUE * eigenvalues.max()]


# ---------------------------------------------------------------------------
# Per-layer spectral summaries shared by the measures
# ---------------------------------------------------------------------------


class SpectralOptions(Options):
    conv_matrices: Literal["slices", "reshaped"] = Field(
        "slices",
        description="convolution kernels as one [out, in] matrix per kernel position with their eigenvalues "
        "pooled (WeightWatcher's default), or as the reshaped [out, in·k²] matrix",
    )


class PowerLawOptions(SpectralOptions):
    min_eigenvalues: int = Field(
        20, ge=3, description="layers whose ESD has fewer (non-zero) eigenvalues are not fitted and are skipped"
    )


@dataclass(frozen=True)
class LayerSpectrum:
    name: str
    eigenvalues: np.ndarray  # sorted, of X = WᵀW/N, pooled over a convolution's matrices

    @property
    def largest(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def log10_largest(self) -> float:
        """log10 λ_max (−∞ for an all-zero weight)."""
        return math.log10(self.largest) if self.largest > 0 else -math.inf

    @property
    def stable_rank(self) -> float:
        """Σλ / λ_max = ‖W‖_F² / ‖W‖_2² (for slices: over the pooled spectrum); NaN for W = 0."""
        return float(self.eigenvalues.sum() / self.largest) if self.largest > 0 else math.nan


def layer_spectra(ctx: MeasureContext, conv_matrices: str) -> list[LayerSpectrum] | None:
    """The ESD of every linear and convolutional layer after batch-norm folding, in order;
    None when a weight is not finite (a diverged model)."""
    spectra = []
    for name, layer in weight_layers(fold_batch_norm(ctx.model)):
        eigenvalues = layer_eigenvalues(layer.weight, conv_matrices)
        if np.isnan(eigenvalues).any():
            return None
        spectra.append(LayerSpectrum(name, eigenvalues))
    return spectra


def layer_fits(spectra: list[LayerSpectrum], min_eigenvalues: int) -> dict[str, PowerLawFit]:
    """Power-law fits of the layers whose ESD has at least ``min_eigenvalues`` non-zero eigenvalues."""
    fits = {}
    for spectrum in spectra:
        nonzero = fitted_part(spectrum.eigenvalues)
        if len(nonzero) >= min_eigenvalues:
            fits[spectrum.name] = fit_power_law(nonzero)
    return fits


def mean_over_layers(values: dict[str, float], key: str, extra: dict | None = None) -> Estimate:
    """The mean of per-layer ``values``, with each layer's value (``key:<layer>``) in the details;
    NaN when there is no layer."""
    details: dict[str, float | int | str | None] = {"layers": len(values)}
    details.update({f"{key}:{name}": value for name, value in values.items()})
    details.update(extra or {})
    mean = sum(values.values()) / len(values) if values else math.nan
    return Estimate(float(mean), details)


# ---------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------


class _SpectralMeasure(BaseMeasure):
    """A measure of the layers' eigenvalue spectra; NaN for a network with non-finite weights."""

    def compute(self, ctx: MeasureContext, options: SpectralOptions) -> Estimate:
        spectra = layer_spectra(ctx, options.conv_matrices)
        if spectra is None:
            return Estimate(math.nan, {"reason": "non-finite weights"})
        return self.from_spectra(spectra, options)

    def from_spectra(self, spectra: list[LayerSpectrum], options: SpectralOptions) -> Estimate:
        raise NotImplementedError


class WWAlpha(_SpectralMeasure):
    """Mean power-law exponent α of the layers' eigenvalue spectra (WeightWatcher's alpha).

    ww-alpha = (1/L) Σ_l α_l over the L layers whose ESD has at least ``min_eigenvalues``
    (default 20) non-zero eigenvalues; α_l is the maximum-likelihood exponent of the power law
    p(λ) ∝ λ^(−α), λ ≥ x_min, fitted to the eigenvalues of X = WᵀW/N with x_min chosen by the
    Kolmogorov–Smirnov distance (Clauset, Shalizi & Newman 2009; formulas in the module
    docstring). Batch norm is folded into the preceding layer; a convolution's ESD pools the
    eigenvalues of its per-position [out, in] matrices (WeightWatcher's default). Smaller α
    (a heavier tail) indicates a better-trained layer, so α is read as a complexity.
    Layers with fewer eigenvalues are skipped (their count is in the details, ``skipped``,
    with each fitted layer's α, x_min and tail size); WeightWatcher fits layers of 8–19
    eigenvalues with a different small-sample estimator, which is not used here. Invariant
    to scaling any W by c > 0. NaN for a diverged model or when no layer is large enough.
    Source: Martin & Mahoney 2021, "Predicting trends in the quality of state-of-the-art
    neural networks without access to training or testing data" (Nature Communications);
    the WeightWatcher tool (0.7.7).
    """

    name: ClassVar[str] = "ww-alpha"
    version: ClassVar[str] = "1"
    Options = PowerLawOptions
    source: ClassVar[str] = (
        "Martin & Mahoney 2021, 'Predicting trends in the quality of state-of-the-art neural networks "
        "without access to training or testing data'; WeightWatcher; Clauset, Shalizi & Newman 2009"
    )

    def from_spectra(self, spectra: list[LayerSpectrum], options: PowerLawOptions) -> Estimate:
        fits = layer_fits(spectra, options.min_eigenvalues)
        extra: dict = {"skipped": len(spectra) - len(fits)}
        for name, fit in fits.items():
            extra[f"xmin:{name}"] = fit.xmin
            extra[f"tail:{name}"] = fit.tail_size
        return mean_over_layers({name: fit.alpha for name, fit in fits.items()}, "alpha", extra)


class WWAlphaWeighted(_SpectralMeasure):
    """Mean over layers of α·log10 λ_max (WeightWatcher's alpha_weighted, α̂).

    ww-alpha-weighted = (1/L) Σ_l α_l · log10 λ_max,l, with α_l as in ww-alpha (same layers:
    those with at least ``min_eigenvalues`` eigenvalues) and λ_max,l the largest eigenvalue
    of X = WᵀW/N (for a convolution: over the pooled per-position matrices). Smaller is
    better in Martin & Mahoney's study, so it is a complexity. NaN for a diverged model.
    Source: Martin & Mahoney 2021, "Predicting trends in the quality of state-of-the-art
    neural networks without access to training or testing data" (weighted alpha α̂);
    WeightWatcher. WeightWatcher 0.7.7 uses λ = σ² of W without the 1/N, which adds
    α_l·log10 N_l to each layer's term.
    """

    name: ClassVar[str] = "ww-alpha-weighted"
    version: ClassVar[str] = "1"
    Options = PowerLawOptions
    source: ClassVar[str] = (
        "Martin & Mahoney 2021, 'Predicting trends in the quality of state-of-the-art neural networks "
        "without access to training or testing data' (weighted alpha); WeightWatcher"
    )

    def from_spectra(self, spectra: list[LayerSpectrum], options: PowerLawOptions) -> Estimate:
        fits = layer_fits(spectra, options.min_eigenvalues)
        log_largest = {spectrum.name: spectrum.log10_largest for spectrum in spectra}
        values = {name: fit.alpha * log_largest[name] for name, fit in fits.items()}
        return mean_over_layers(values, "alpha_weighted", {"skipped": len(spectra) - len(fits)})


class StableRank(_SpectralMeasure):
    """Mean over layers of the stable rank ‖W‖_F² / ‖W‖_2².

    stable-rank = (1/d) Σ_l Σ_i λ_i,l / λ_max,l over all d linear and convolutional layers
    (batch norm folded), λ the eigenvalues of X = WᵀW/N (the 1/N cancels): for a linear layer
    exactly ‖W‖_F²/‖W‖_2², in [1, rank W]; for a convolution, by default, over the pooled
    per-position matrices (‖W‖_F² / max over positions of ‖W_pos‖_2²), as WeightWatcher's
    stable_rank. Per-layer values in the details. NaN for a diverged model. Source:
    Martin & Mahoney 2021 (stable rank among their norm-based metrics); WeightWatcher;
    Sanyal, Torr & Dokania 2020 ("Stable rank normalization").
    """

    name: ClassVar[str] = "stable-rank"
    version: ClassVar[str] = "1"
    Options = SpectralOptions
    source: ClassVar[str] = "Martin & Mahoney 2021 (norm-based metrics); WeightWatcher's stable_rank"

    def from_spectra(self, spectra: list[LayerSpectrum], options: SpectralOptions) -> Estimate:
        return mean_over_layers({s.name: s.stable_rank for s in spectra}, "stable_rank")


class LogSpectralNorm(_SpectralMeasure):
    """Mean over layers of log10 λ_max, the log of the squared spectral norm.

    log-spectral-norm = (1/d) Σ_l log10 λ_max,l over all d linear and convolutional layers
    (batch norm folded), λ_max,l the largest eigenvalue of X = WᵀW/N, i.e. σ_max(W)²/N
    (for a convolution, by default, the largest over its per-position matrices). The mean,
    as WeightWatcher's summary of log_spectral_norm (the per-layer values are in the
    details). WeightWatcher 0.7.7 leaves out the 1/N (its value is larger by the mean of
    log10 N_l). Not normalized by m: a per-layer average, not a bound. NaN for a diverged
    model. Source: Martin & Mahoney 2021, "Predicting trends in the quality of
    state-of-the-art neural networks without access to training or testing data"
    (log spectral norm); WeightWatcher.
    """

    name: ClassVar[str] = "log-spectral-norm"
    version: ClassVar[str] = "1"
    Options = SpectralOptions
    source: ClassVar[str] = "Martin & Mahoney 2021 (log spectral norm); WeightWatcher's log_spectral_norm"

    def from_spectra(self, spectra: list[LayerSpectrum], options: SpectralOptions) -> Estimate:
        return mean_over_layers({s.name: s.log10_largest for s in spectra}, "log_spectral_norm")


MEASURES = (WWAlpha, WWAlphaWeighted, StableRank, LogSpectralNorm)
