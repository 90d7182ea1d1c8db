"""Curvature of the training loss at the trained weights: the Hessian's top eigenvalue and trace.

Both work with Hessian-vector products H·v of the mean training cross-entropy
L(w) = (1/n) Σ_i CE(f_w(x_i), y_i) with respect to every parameter of the network as it is
parametrized (batch norm in eval mode, with its running statistics), computed by double
backpropagation: H·v = ∇_w (∇_w L(w) · v). The Hessian itself is never formed.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from genbench.measures.base import BaseMeasure, Estimate, MeasureContext, SizeNormalizedOptions, standard_error
from genbench.measures.quantities import CHUNK, chunks, evaluation_copy, has_nonfinite_parameters, seeded_subset


class HessianVectorProducts:
    """H·v for the mean cross-entropy of ``model`` on (inputs, labels), for flat vectors v.

    The gradient graph of each chunk of at most ``chunk`` examples is built once per call; when
    the whole set fits in one chunk it is built once and kept, so that every later product costs
    one backward pass."""

    def __init__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, chunk: int = CHUNK) -> None:
        self.model = model
        self.parameters = [p for p in model.parameters()]
        self.inputs, self.labels, self.chunk = inputs, labels, chunk
        self.size = sum(p.numel() for p in self.parameters)
        self._batched = True
        self._kept = self._gradient(inputs, labels) if len(inputs) <= chunk else None

    def _gradient(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        loss = F.cross_entropy(self.model(x), y, reduction="sum") / len(self.labels)
        return list(torch.autograd.grad(loss, self.parameters, create_graph=True))

    def _split(self, vector: torch.Tensor) -> list[torch.Tensor]:
        return [vector[start : start + p.numel()].view_as(p) for start, p in self._offsets()]

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        """H·v for each row v of ``vectors`` [k, size]; returns [k, size]."""
        result = torch.zeros_like(vectors)
        gradients = [self._kept] if self._kept is not None else None
        pieces = gradients or (self._gradient(x, y) for x, y in chunks(self.inputs, self.labels, self.chunk))
        for gradient in pieces:
            result += self._products(gradient, vectors)
        return result

    def _products(self, gradient: list[torch.Tensor], vectors: torch.Tensor) -> torch.Tensor:
        """The rows' products with one chunk's Hessian: all rows in one batched backward pass
        where autograd can (vmap over the backward), one pass per row otherwise."""
        if len(vectors) > 1 and self._batched:
            try:
                batched = [
                    vectors[:, start : start + p.numel()].reshape(len(vectors), *p.shape) for start, p in self._offsets()
                ]
                products = torch.autograd.grad(
                    gradient, self.parameters, batched, retain_graph=True, is_grads_batched=True
                )
                return torch.cat([p.reshape(len(vectors), -1) for p in products], dim=1)
            except RuntimeError:
                self._batched = False
        rows = []
        for vector in vectors:
            products = torch.autograd.grad(gradient, self.parameters, self._split(vector), retain_graph=True)
            rows.append(torch.cat([p.reshape(-1) for p in products]))
        return torch.stack(rows)

    def _offsets(self) -> list[tuple[int, torch.Tensor]]:
        offsets, start = [], 0
        for p in self.parameters:
            offsets.append((start, p))
            start += p.numel()
        return offsets


def hessian_operator(ctx: MeasureContext, max_examples: int | None) -> HessianVectorProducts:
    inputs, labels = seeded_subset(ctx, max_examples)
    return HessianVectorProducts(evaluation_copy(ctx.model, ctx.device), inputs, labels)


def power_iteration(
    hvp: HessianVectorProducts,
    generator: torch.Generator,
    iterations: int,
    tolerance: float,
    shift: float = 0.0,
) -> tuple[float, int, bool]:
    """The eigenvalue of largest magnitude of H − shift·I by power iteration from a random
    Gaussian start: λ_k = v_kᵀ(H − shift·I)v_k, v_{k+1} = (H − shift·I)v_k / ‖·‖; stops when
    |λ_k − λ_{k−1}| ≤ tolerance·|λ_k|. Returns (λ, iterations used, converged)."""
    vector = torch.randn(hvp.size, generator=generator, dtype=torch.float32).to(hvp.parameters[0].device)
    vector /= vector.norm()
    previous = math.nan
    for step in range(1, iterations + 1):
        product = hvp(vector[None])[0] - shift * vector
        eigenvalue = float(vector @ product)
        norm = product.norm()
        if not math.isfinite(eigenvalue) or norm == 0:
            return eigenvalue, step, norm == 0
        if abs(eigenvalue - previous) <= tolerance * abs(eigenvalue):
            return eigenvalue, step, True
        previous = eigenvalue
        vector = product / norm
    return eigenvalue, iterations, False


class HessianOptions(SizeNormalizedOptions):
    max_examples: int | None = Field(
        256, ge=1, description="use a seeded random subset of this many training examples (None = all, in chunks)"
    )


class _HessianMeasure(BaseMeasure):
    """A measure of the training-loss Hessian, computed from its Hessian-vector products."""

    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})

    def compute(self, ctx: MeasureContext, options: HessianOptions) -> Estimate | float:
        if has_nonfinite_parameters(ctx.model):
            return math.nan
        return self.from_hessian(hessian_operator(ctx, options.max_examples), ctx, options)

    def from_hessian(self, hvp: HessianVectorProducts, ctx: MeasureContext, options: HessianOptions) -> Estimate:
        raise NotImplementedError


class HessianEigenvalueOptions(HessianOptions):
    iterations: int = Field(20, ge=1, description="at most this many power iterations (Hessian-vector products)")
    tolerance: float = Field(1e-2, gt=0, description="stop when the estimate changes by at most this fraction")


class HessianTopEigenvalue(_HessianMeasure):
    """Largest eigenvalue of the training-loss Hessian, by power iteration on Hessian-vector products.

    λ_max of the Hessian of the mean training cross-entropy with respect to all parameters:

    hessian-top-eigenvalue = λ_max(∇²_w L(w)),  L(w) = (1/n) Σ_i CE(f_w(x_i), y_i),

    over a seeded random subset of ``max_examples`` = 256 training examples (None: all of them,
    in chunks of 2048) and every parameter of the network as it is parametrized (weights, biases,
    batch-norm affine parameters; batch norm in eval mode). At most ``iterations`` = 20 products;
    the iteration stops when the estimate changes by at most ``tolerance`` = 1 %. Power
    iteration finds the eigenvalue of largest magnitude; if that is negative (the trained point
    is not a minimum), a second power iteration on H − λ·I finds the top one. Source: Keskar et al. 2017 (sharpness as the
    Hessian's spectrum); Jiang et al. 2020 discuss it among the sharpness measures; the
    Hessian-vector-product power iteration follows Yao et al. 2020 (PyHessian). Details: the
    iterations used, whether the estimate converged to ``tolerance``. NaN for a diverged network.
    """

    name: ClassVar[str] = "hessian-top-eigenvalue"
    version: ClassVar[str] = "1"
    Options = HessianEigenvalueOptions
    source: ClassVar[str] = "Keskar et al. 2017; Yao et al. 2020 (PyHessian: power iteration on Hessian-vector products)"

    def from_hessian(self, hvp: HessianVectorProducts, ctx: MeasureContext, options: HessianEigenvalueOptions) -> Estimate:
        eigenvalue, used, converged = power_iteration(hvp, ctx.generator, options.iterations, options.tolerance)
        details: dict = {"iterations": used, "converged": int(converged)}
        if eigenvalue < 0:
            shifted, more, converged = power_iteration(
                hvp, ctx.generator, options.iterations, options.tolerance, shift=eigenvalue
            )
            details.update(most_negative=eigenvalue, iterations=used + more, converged=int(converged))
            eigenvalue = shifted + eigenvalue
        return Estimate(self.normalized(eigenvalue, ctx, options), details=details)


class HessianTraceOptions(HessianOptions):
    probes: int = Field(16, ge=2, description="Rademacher probe vectors v (each one Hessian-vector product)")


class HessianTrace(_HessianMeasure):
    """Trace of the training-loss Hessian, by Hutchinson's estimator with Rademacher probes.

    The trace of the Hessian of the mean training cross-entropy with respect to all parameters:

    hessian-trace = tr ∇²_w L(w) ≈ (1/k) Σ_{j=1..k} v_jᵀ H v_j,  v_j with i.i.d. Rademacher (±1)
    entries (E[v vᵀ] = I, so E[vᵀHv] = tr H),

    k = 16 by default, L as for ``hessian-top-eigenvalue`` (a seeded subset of 256 training
    examples by default, or all of them in chunks; every parameter; batch norm in eval mode). The
    probes' products are computed in one batched backward pass where autograd can. Source: Hutchinson 1990; used as a flatness
    measure by Yao et al. 2020 (PyHessian) and Jastrzębski et al. 2020. Details: the standard
    error of the mean over the k = ``probes`` probes, s/√k. NaN for a diverged network.
    """

    name: ClassVar[str] = "hessian-trace"
    version: ClassVar[str] = "1"
    Options = HessianTraceOptions
    source: ClassVar[str] = "Hutchinson 1990 (trace estimator); Yao et al. 2020 (PyHessian)"

    def from_hessian(self, hvp: HessianVectorProducts, ctx: MeasureContext, options: HessianTraceOptions) -> Estimate:
        signs = torch.randint(0, 2, (options.probes, hvp.size), generator=ctx.generator).float() * 2 - 1
        probes = signs.to(hvp.parameters[0].device)
        quadratic_forms = (probes * hvp(probes)).sum(dim=1).double().cpu()
        trace = float(quadratic_forms.mean())
        stderr = standard_error(quadratic_forms)
        return Estimate(self.normalized(trace, ctx, options), details={"stderr": stderr, "probes": options.probes})


MEASURES = (HessianTopEigenvalue, HessianTrace)
