"""Capacity measures: parameter count, VC-dimension bound, empirical Rademacher complexity and
the Frobenius-norm Rademacher bound."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.fx
from pydantic import Field
from torch import nn

from genbench.errors import MeasureError
from genbench.measures.base import (
    BaseMeasure,
    Estimate,
    MeasureContext,
    SizeNormalizedOptions,
    Retrained,
    RetrainingMeasure,
    RetrainJob,
    standard_error,
)
from genbench.measures.weights import fold_batch_norm, frobenius_norm, layer_weights, weight_count, weight_layers
from genbench.schemas import Options


class ParamsOptions(Options):
    include_biases: bool = Field(True, description="count biases too (Zhang et al.'s Table 1 does)")


class Params(BaseMeasure):
    """Number of parameters of the linear and convolutional layers.

    params = Σ_layers numel(W_i) (+ numel(b_i)); batch-norm parameters are not
    counted, as in Zhang et al. 2017, Table 1. Source: Jiang et al. 2020, "Fantastic
    generalization measures", measure "params".
    """

    name: ClassVar[str] = "params"
    version: ClassVar[str] = "1"
    source: ClassVar[str] = "Jiang et al. 2020, 'Fantastic generalization measures', measure 'params'"
    Options = ParamsOptions

    def compute(self, ctx: MeasureContext, options: ParamsOptions) -> float:
        return float(weight_count(ctx.model, include_biases=options.include_biases))


# ---------------------------------------------------------------------------
# Layers of a network: weight layers grouped by depth
# ---------------------------------------------------------------------------


def weight_layer_depths(model: nn.Module) -> list[int]:
    """``traced_weight_layer_depths`` (the name the measures use)."""
    return traced_weight_layer_depths(model)


def traced_weight_layer_depths(model: nn.Module) -> list[int]:
    """Depth (1, 2, …) of every weight layer of ``weight_layers(model)``, in that order: the
    largest number of linear/conv layers on a path from the input to the layer's output.

    Layers on parallel branches (an inception module's 1×1 and 3×3 convolutions) share a depth;
    in a chain every weight layer is one deeper than the previous one. Found by tracing the
    network with torch.fx; a network that cannot be traced gets one depth per weight layer,
    in registration order (a valid, looser layering)."""
    names = [name for name, _ in weight_layers(model)]
    if not names:
        raise MeasureError("the network has no linear or convolutional layer to bound")
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:
        return list(range(1, len(names) + 1))
    weight_names = set(names)
    depth: dict[torch.fx.Node, int] = {}
    found: dict[str, int] = {}
    for node in graph.nodes:
        before = max((depth[n] for n in node.all_input_nodes), default=0)
        is_weight = node.op == "call_module" and node.target in weight_names
        depth[node] = before + 1 if is_weight else before
        if is_weight:
            found[node.target] = max(found.get(node.target, 0), depth[node])
    if set(found) != weight_names:
        return list(range(1, len(names) + 1))
    return [found[name] for name in names]


@torch.no_grad()
def units_per_weight_layer(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> list[int]:
    """Output units of every weight layer for one input: out_features for a linear layer,
    out_channels × output positions for a convolution (each position is a unit)."""
    sizes: dict[str, int] = {}
    hooks = []
    for name, layer in weight_layers(model):
        def record(module, inputs, output, name=name):
            sizes[name] = int(output[0].numel())
        hooks.append(layer.register_forward_hook(record))
    try:
        probe = model.to(device).eval()
        probe(torch.zeros((1, *input_shape), device=device, dtype=next(model.parameters()).dtype))
    finally:
        for hook in hooks:
            hook.remove()
    return [sizes[name] for name, _ in weight_layers(model)]


@dataclass(frozen=True)
class LayerStructure:
    """Per depth i = 1…L of a network: units k_i and parameters P_i (weights and biases)."""

    units: list[int]
    parameters: list[int]

    @property
    def depth(self) -> int:
        return len(self.units)

    @property
    def total_parameters(self) -> int:
        return sum(self.parameters)


def layer_structure(ctx: MeasureContext) -> LayerStructure:
    """Units and parameters per depth of the run's network with batch norm folded into its weight
    layers (once per run: ``ctx.cache``)."""
    return ctx.cached(
        "capacity:layer-structure", lambda: measured_layer_structure(ctx.model, ctx.input_shape, ctx.device)
    )


def measured_layer_structure(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> LayerStructure:
    folded = fold_batch_norm(model)
    depths = weight_layer_depths(folded)
    units = units_per_weight_layer(folded, input_shape, device)
    count = max(depths)
    per_depth_units, per_depth_parameters = [0] * count, [0] * count
    for (_, layer), depth, k in zip(weight_layers(folded), depths, units):
        per_depth_units[depth - 1] += k
        per_depth_parameters[depth - 1] += layer.weight.numel() + (0 if layer.bias is None else layer.bias.numel())
    return LayerStructure(per_depth_units, per_depth_parameters)


# ---------------------------------------------------------------------------
# vc-bound
# ---------------------------------------------------------------------------


def theorem7_vc_bound(structure: LayerStructure, pieces: int = 2) -> float:
    """Bartlett, Harvey, Liaw & Mehrabian 2019, Theorem 7, for piecewise-linear units (degree 1)
    with p + 1 = ``pieces`` pieces:
    L + L̄·W·log₂(4·e·p·R·log₂(2·e·p·R)), R = Σ_i i·k_i, L̄ = (1/W) Σ_i W_i, W_i = Σ_{j≤i} P_j."""
    p = pieces - 1
    total = structure.total_parameters
    cumulative = 0
    summed_cumulative = 0
    for parameters in structure.parameters:
        cumulative += parameters
        summed_cumulative += cumulative  # Σ_i W_i = L̄·W
    r = sum(i * k for i, k in enumerate(structure.units, start=1))
    if total == 0:
        return 0.0
    return structure.depth + summed_cumulative * math.log2(4 * math.e * p * r * math.log2(2 * math.e * p * r))


def simple_vc_bound(structure: LayerStructure) -> float:
    """W·L·log₂(W) (the O(W L log W) rate with constant 1)."""
    w = structure.total_parameters
    return w * structure.depth * math.log2(w) if w > 1 else 0.0


class VCBoundOptions(SizeNormalizedOptions):
    formula: Literal["theorem-7", "w-l-log-w"] = Field(
        "theorem-7",
        description="theorem-7: L + L̄·W·log₂(4epR·log₂(2epR)) (Bartlett et al. 2019, Theorem 7, p = 1 for ReLU); "
        "w-l-log-w: W·L·log₂W (the O(W L log W) rate with constant 1)",
    )
    value: Literal["vc-dimension", "generalization-bound"] = Field(
        "vc-dimension",
        description="vc-dimension: the bound on the VC dimension itself; generalization-bound: sqrt(VC·ln(m)/m)",
    )


class VCBound(BaseMeasure):
    """Upper bound on the VC dimension of the network's architecture (piecewise-linear networks).

    Bartlett, Harvey, Liaw & Mehrabian 2019 (JMLR 20, "Nearly-tight VC-dimension and
    pseudodimension bounds for piecewise linear neural networks"), Theorem 7, for units
    with piecewise-polynomial activations of p + 1 pieces and degree 1 (ReLU: p = 1):

        VCdim ≤ L + L̄·W·log₂(4·e·p·R·log₂(2·e·p·R)),
        R = Σ_{i=1}^{L} i·k_i,   L̄ = (1/W)·Σ_{i=1}^{L} W_i,   W_i = Σ_{j≤i} P_j,

    where L is the depth in weight layers, k_i the units of layer i, P_i its parameters
    (weights and biases) and W = W_L the total; O(W·L·log W). Conventions: batch norm is
    folded into the preceding layer first (its parameters are not counted; a bias-free
    conv before batch norm gains a bias); a convolution's units are its outputs (channels ×
    positions) and its shared kernel is counted once (W counts distinct parameters, which
    is what the theorem's counting argument uses); pooling and normalization layers are
    not counted as layers (max-pooling is piecewise linear but would need extra ReLU layers
    to fit the theorem's unit model; LRN is outside it); layers on parallel branches share a
    depth (see ``weight_layer_depths``); all K output units are counted (k_L = K, their
    parameters in W): the theorem is stated for one real output, and since the formula
    grows with W and R, counting all K upper-bounds the value for any one output (the class
    of sgn(f_y − f_y') for a pair of classes needs the two outputs: fewer than K for
    K > 2). ``formula = w-l-log-w``
    gives W·L·log₂W instead (constant 1). ``value = generalization-bound`` gives
    sqrt(VC·ln m / m), the rate of the VC generalization bound; the default is the VC
    dimension itself, since at a fixed m the bound is a monotone function of it and ranks
    runs identically. The value depends only on the architecture and the input shape, so it
    is the same for every run of an architecture: it cannot rank runs by label noise
    (Zhang et al. 2017, §2.2).
    """

    name: ClassVar[str] = "vc-bound"
    version: ClassVar[str] = "1"
    source: ClassVar[str] = (
        "Bartlett, Harvey, Liaw & Mehrabian 2019, 'Nearly-tight VC-dimension and pseudodimension bounds for "
        "piecewise linear neural networks', JMLR 20, Theorem 7"
    )
    Options = VCBoundOptions

    def compute(self, ctx: MeasureContext, options: VCBoundOptions) -> Estimate:
        structure = layer_structure(ctx)
        vc = theorem7_vc_bound(structure) if options.formula == "theorem-7" else simple_vc_bound(structure)
        m = ctx.num_train
        value = vc if options.value == "vc-dimension" else math.sqrt(vc * math.log(m) / m)
        details = {
            "vc_dimension": vc,
            "parameters": structure.total_parameters,
            "depth": structure.depth,
            "units": sum(structure.units),
        }
        return Estimate(self.normalized(value, ctx, options), details)


# ---------------------------------------------------------------------------
# rademacher-norm-bound
# ---------------------------------------------------------------------------


class NormBoundOptions(SizeNormalizedOptions):
    log: bool = Field(
        False,
        description="report the natural log of the bound (finite where the product of norms overflows)",
        exclude_if=lambda value: value is False,
    )


class RademacherNormBound(BaseMeasure):
    """Golowich, Rakhlin & Shamir 2018's Frobenius-norm bound on the Rademacher complexity.

    Golowich, Rakhlin & Shamir 2018 ("Size-independent sample complexity of neural
    networks", COLT), Theorem 1: for depth-d networks with 1-Lipschitz, positive-homogeneous
    activations (ReLU) and ‖W_j‖_F ≤ M_F(j),

        R̂_m ≤ B·(sqrt(2·ln(2)·d) + 1)·Π_{j=1}^{d} ‖W_j‖_F / sqrt(m),   B = max_i ‖x_i‖₂,

    evaluated at the trained weights (M_F(j) = ‖W_j‖_F). Chosen over Neyshabur, Tomioka &
    Srebro 2015 (whose bound grows as 2^d) because its depth dependence is only sqrt(d) and
    its constant is explicit. Conventions: batch norm folded into the preceding layer
    (``layer_weights``), biases excluded; a convolution's ‖W‖_F is the norm of its kernel
    tensor [out, in, k…] (not of the convolution as a linear map, which is larger by up to
    sqrt(positions)); d is the depth in weight layers, and layers on parallel branches at
    one depth (inception modules) form one layer whose norm is sqrt(Σ ‖W‖_F²), the norm of
    their concatenation; the K outputs' matrix counts as the last layer (the theorem is for
    one output). B is the largest ℓ2 norm of a flattened training input; m the training-set
    size. ``log`` reports ln of the bound, computed as a sum of logs.
    """

    name: ClassVar[str] = "rademacher-norm-bound"
    version: ClassVar[str] = "1"
    source: ClassVar[str] = (
        "Golowich, Rakhlin & Shamir 2018, 'Size-independent sample complexity of neural networks', COLT, Theorem 1"
    )
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    Options = NormBoundOptions

    def compute(self, ctx: MeasureContext, options: NormBoundOptions) -> Estimate:
        log_norms = [safe_log(norm) for norm in depth_frobenius_norms(ctx.model)]
        depth = len(log_norms)
        radius = ctx.train_inputs.detach().flatten(1).double().norm(dim=1).max().item()
        m = ctx.num_train
        log_bound = (
            safe_log(radius) + math.log(math.sqrt(2 * math.log(2) * depth) + 1) + sum(log_norms) - 0.5 * math.log(m)
        )
        value = log_bound if options.log else safe_exp(log_bound)
        details = {"input_radius": radius, "depth": depth, "log_bound": log_bound}
        return Estimate(self.normalized(value, ctx, options, log_scale=options.log), details)


def depth_frobenius_norms(model: nn.Module) -> list[float]:
    """‖W_j‖_F per depth j (batch norm folded, no biases); parallel layers at one depth combine
    as sqrt(Σ ‖W‖_F²)."""
    depths = weight_layer_depths(model)
    squares = [0.0] * max(depths)
    for weight, depth in zip(layer_weights(model), depths, strict=True):
        squares[depth - 1] += frobenius_norm(weight) ** 2
    return [math.sqrt(s) for s in squares]


def safe_log(x: float) -> float:
    if math.isnan(x):
        return math.nan
    return math.log(x) if x > 0 else -math.inf


def safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


# ---------------------------------------------------------------------------
# rademacher
# ---------------------------------------------------------------------------


class RademacherOptions(Options):
    draws: int = Field(3, gt=0, description="random labelings to average over")
    seed: int = Field(0, description="seed of the labelings and of the retrained networks")
    classes: int | None = Field(
        2,
        ge=2,
        description="K: labels uniform on K classes; 2 = ±1 labelings (Zhang et al.'s Rademacher "
        "complexity); None = the dataset's number of classes",
        exclude_if=lambda value: value == 2,
    )


class EmpiricalRademacher(RetrainingMeasure):
    """Empirical Rademacher complexity of the model class *as trained*, on the training inputs.

    R̂_n(H) = E_σ [ sup_{h∈H} (1/n) Σ_i σ_i h(x_i) ],  σ_i uniform on {−1, +1}.

    Following Zhang et al. 2017 (§2.2, "Rademacher complexity and generalization"), the
    supremum is replaced by what the training procedure finds: the same architecture
    (with two outputs; h(x) = +1 if the second logit is larger, else −1) is trained with
    the same recipe on each random labeling σ, and the value is the mean over ``draws``
    labelings of (1/n) Σ_i σ_i h(x_i) = 2·(training accuracy) − 1. A class that memorizes
    any labeling gets ≈ 1, the trivial bound that explains nothing — the paper's point.

    K-class labelings (``classes = K``): labels y_i uniform on {0, …, K−1}, a network with K
    outputs trained on them, and per draw the training accuracy rescaled to chance,
    c = (K·acc − 1)/(K − 1) (0 for a class that fits no better than chance, 1 for one that
    memorizes every labeling; for K = 2 exactly the ±1 correlation above, and the labels of
    draw t are the same torch.randint(0, K) draws with seed 1000·seed + t). The value is
    the mean of c over draws; ``details["stderr"]`` is its standard error, the sample
    standard deviation (ddof 1) over draws / sqrt(draws) — NaN with one draw, where it is
    undefined. Depends only on the architecture, recipe, training inputs and options: the
    runs that share them ask for the same retraining jobs, which the evaluate stage trains once.
    Version 2: its networks are retrained in stacked ensembles with the retraining jobs of the
    other runs of its training group (before: each run's alone); a conv net rounds differently
    there, and SGD amplifies it (the spread is in benchmarks/RESULTS.md).
    """

    name: ClassVar[str] = "rademacher"
    version: ClassVar[str] = "2"
    source: ClassVar[str] = (
        "Zhang et al. 2017, 'Understanding deep learning requires rethinking generalization', §2.2 "
        "(Rademacher complexity as fitting random labels)"
    )
    requires: ClassVar[frozenset[str]] = frozenset({"train_data", "retrain"})
    Options = RademacherOptions

    def jobs(self, ctx: MeasureContext, options: RademacherOptions) -> list[RetrainJob]:
        n, k = ctx.num_train, rademacher_classes(ctx, options)
        seeds = [options.seed * 1_000 + draw for draw in range(options.draws)]
        return [RetrainJob(labels=random_labels(n, k, seed), seed=seed, num_classes=k) for seed in seeds]

    def finish(self, ctx: MeasureContext, options: RademacherOptions, networks: list[Retrained]) -> Estimate:
        k = rademacher_classes(ctx, options)
        correlations = []
        for network in networks:
            logits = ctx.retrainer.predict(network.model, ctx.train_inputs)
            accuracy = (logits.argmax(-1).cpu() == network.job.labels).double().mean().item()
            correlations.append((k * accuracy - 1) / (k - 1))
        mean = sum(correlations) / len(correlations)
        return Estimate(
            mean,
            {
                "stderr": standard_error(torch.tensor(correlations, dtype=torch.float64)),
                "draws": len(correlations),
                "classes": k,
                "min": min(correlations),
                "max": max(correlations),
            },
        )


def rademacher_classes(ctx: MeasureContext, options: RademacherOptions) -> int:
    return ctx.num_classes if options.classes is None else options.classes


def random_labels(n: int, classes: int, seed: int) -> torch.Tensor:
    """n labels uniform on {0, …, classes − 1} from a generator seeded with ``seed``."""
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


MEASURES = (Params, VCBound, EmpiricalRademacher, RademacherNormBound)
