"""Norm-based complexity measures."""

from __future__ import annotations

import copy
from typing import ClassVar

import torch

from genbench.measures.base import BaseMeasure, MeasureContext
from genbench.errors import MeasureError
from genbench.measures.weights import NORMALIZATION_LAYERS, weight_layers


class DistanceFromInit(BaseMeasure):
    """Squared Frobenius distance of the weights from their initialization.

    dist-from-init = Σ_i ‖W_i − W⁰_i‖_F²  over linear and convolutional weights (no
    biases, no batch norm). Source: Jiang et al. 2020, "Fantastic generalization
    measures" (Frobenius distance to initialization); Nagarajan & Kolter 2019.
    """

    name: ClassVar[str] = "dist-from-init"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"init_weights"})

    def compute(self, ctx: MeasureContext, options) -> float:
        final = weight_layers(ctx.model)
        initial = weight_layers(ctx.initial_model)
        total = 0.0
        for (_, layer), (_, layer0) in zip(final, initial, strict=True):
            total += (layer.weight.detach() - layer0.weight.detach().to(layer.weight.device)).pow(2).sum().item()
        return total


class PathNorm(BaseMeasure):
    """ℓ2 path norm: Σ over input→output paths of the product of squared parameters.

    path-norm = Σ_outputs f_{w²}(1), where f_{w²} is the network with every parameter
    (weights and biases) replaced by its square and 1 is the all-ones input; all
    activations are then non-negative, so the ReLUs pass everything and the sum runs
    over every path. Source: Neyshabur, Tomioka & Srebro 2015; Jiang et al. 2020
    ("path.norm"). Invariant under the rescaling of a hidden ReLU unit (incoming
    weights and bias × c > 0, outgoing × 1/c).
    """

    name: ClassVar[str] = "path-norm"
    version: ClassVar[str] = "1"

    @torch.no_grad()
    def compute(self, ctx: MeasureContext, options) -> float:
        normalizations = [type(m).__name__ for m in ctx.model.modules() if isinstance(m, NORMALIZATION_LAYERS)]
        if normalizations:
            raise MeasureError(
                f"path-norm is defined for networks of linear, conv, ReLU and pooling layers; this one has "
                f"{', '.join(sorted(set(normalizations)))}"
            )
        squared = copy.deepcopy(ctx.model).eval()
        for parameter in squared.parameters():
            parameter.pow_(2)
        ones = torch.ones((1, *ctx.input_shape), device=ctx.device, dtype=torch.float64)
        return squared.double()(ones).sum().item()


MEASURES = (DistanceFromInit, PathNorm)
