"""``label-variation``: the 3rd-placed measure of the PGDL competition (NeurIPS 2020).

Lassance, Béthune, Bontonou, Hamidouche & Gripon, "Ranking Deep Learning Generalization using
Label Variation in Latent Geometry Graphs" (arXiv 2011.12737); code (MIT licence):
github.com/cadurosar/pgdl, ``VPM_1/complexity.py`` — the final submission, "VPM (G=1)":
``complexity``, ``mixup_output``, ``generate_laplacian``, ``knn_tf``, ``smoothness``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from scipy.special import betaincinv

import genbench
from genbench import MeasureError
from genbench_pgdl.features import capture, last_linear, one_thread_on_cpu

#: Upper clip of the value, as in the authors' ``smoothness``.
CLIP = 1000.0


def knn_adjacency(features: torch.Tensor, k: int) -> torch.Tensor:
    """Binary directed k-nearest-neighbour adjacency [n, n] of the rows of ``features``.

    u_i = x_i / max(‖x_i‖, 1e-6) (``tf.math.l2_normalize``), D_ij = ‖u_i − u_j‖²;
    A_ij = 1 for j ≠ i with D_ij ≤ the k-th smallest of {D_il : l ≠ i} (ties included), else 0.
    The authors rank by the RBF similarity exp(−γ D_ij), γ = 1/(3 std D), and keep the
    entries ≥ the row's (k+1)-th largest (itself included), then zero the diagonal and drop
    the weights (``knn_tf`` returns the 0/1 adjacency): the same graph, since the RBF is
    decreasing in D and D_ii = 0 is the row's smallest. Needs k < n."""
    n = features.shape[0]
    if not 0 < k < n:
        raise MeasureError(f"a {k}-nearest-neighbour graph needs more than {k} examples; got {n}")
    x = features.to(torch.float64).reshape(n, -1)
    u = x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)
    squared = (u * u).sum(dim=1, keepdim=True)
    distances = squared - 2.0 * (u @ u.T) + squared.T
    distances.fill_diagonal_(float("inf"))
    kth = distances.kthvalue(k, dim=1, keepdim=True).values
    return (distances <= kth).to(torch.float64)


def label_variation(adjacency: torch.Tensor, targets: torch.Tensor, normalizer: float) -> float:
    """tr(Yᵀ L Y) / normalizer, L = I − D^{−1/2} A D^{−1/2}, D = diag(Σ_j A_ij), clipped to [0, 1000].

    = (1/normalizer) [Σ_i ‖y_i‖² − Σ_{i,j} A_ij ⟨y_i, y_j⟩ / √(d_i d_j)] for label rows y_i of
    ``targets`` [n, K]; with one-hot labels and exactly k neighbours per node this is
    (1/(normalizer·k)) Σ_{i→j} 1[y_i ≠ y_j], the label variation over the graph's edges
    (the authors' ``smoothness`` with ``generate_laplacian``)."""
    a = adjacency.to(torch.float64)
    y = targets.to(torch.float64)
    scale = a.sum(dim=1).pow(-0.5)
    laplacian = torch.eye(a.shape[0], dtype=torch.float64) - scale[:, None] * a * scale[None, :]
    value = torch.trace(y.T @ laplacian @ y).item() / normalizer
    return min(max(value, 0.0), CLIP)


def beta_quantiles(uniforms: torch.Tensor, alpha: float) -> torch.Tensor:
    """Beta(α, α) draws by inversion of the uniforms (float64); all ones for α = 0 (no mixup,
    as in the authors' ``mixup_output``)."""
    if alpha <= 0:
        return torch.ones_like(uniforms, dtype=torch.float64)
    return torch.from_numpy(betaincinv(alpha, alpha, uniforms.double().numpy()))


class LabelVariationOptions(genbench.Options):
    """Options of ``label-variation``; the defaults are the authors' final submission."""

    examples: int = Field(
        500, ge=1, description="examples drawn: examples // classes of each class (all of a smaller class)"
    )
    k: int = Field(1, ge=1, description="neighbours per node of the k-nearest-neighbour graph")
    mixup_alpha: float = Field(
        2.0, ge=0.0, description="input mixup before the graph: λ ~ Beta(α, α) per example, partner by a random permutation; 0 = none"
    )


class LabelVariation:
    """Label variation on a k-NN graph of the penultimate features of mixed-up training examples.

    label-variation = clip(tr(Yᵀ (I − D^{−1/2} A D^{−1/2}) Y) / (4n), 0, 1000), the PGDL 2020
    3rd place, "VPM (G=1)" (Lassance et al. 2020, arXiv 2011.12737, "Ranking Deep Learning
    Generalization using Label Variation in Latent Geometry Graphs"; github.com/cadurosar/pgdl
    VPM_1/complexity.py ``complexity``, ``mixup_output``, ``generate_laplacian``, ``knn_tf``,
    ``smoothness``), on the training set:

    1. draw ``examples`` // K (500 // K) training examples of each class without replacement
       (all of a smaller class): n nodes x_i with labels y_i (one-hot, K columns);
    2. input mixup: a random permutation π and λ_i ~ Beta(2, 2); x̃_i = λ_i x_i + (1 − λ_i) x_π(i),
       ỹ_i = λ_i y_i + (1 − λ_i) y_π(i);
    3. features h_i = the input of the model's last nn.Linear on x̃_i, flattened, L2-normalized;
    4. A = the binary directed k-NN graph (k = 1) of the h_i by Euclidean distance between the
       normalized features (the authors' RBF similarity ranks the same), D its out-degrees;
    5. value = tr(Ỹᵀ L Ỹ)/(4n), L = I − D^{−1/2} A D^{−1/2}; with hard labels and k neighbours
       each, (1/(4nk)) Σ_{i→j} 1[y_i ≠ y_j]: how often a sample's nearest latent neighbour has
       another label.

    Larger = labels vary more across the latent geometry graph, samples of distinct classes
    strongly connected, which the authors read as poorer generalization: a complexity. The
    training labels are those the model saw (corrupted ones included). Differences from their
    code (TensorFlow): draws come from ``ctx.generator`` (theirs: a shuffle buffer of 100
    over each class's repeated stream, so a class smaller than 500 // K repeats examples;
    here it contributes each example once); the normalizer is 4n with n the nodes drawn (theirs:
    the constant 2·2·500 — the same whenever n = 500, e.g. 10 classes of at least 50
    examples). Details: ``nodes``, ``layer``. NotApplicable on a model without a linear layer.
    """

    name: ClassVar[str] = "label-variation"
    kind: ClassVar[Literal["complexity", "capability"]] = "complexity"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    Options: ClassVar[type[genbench.Options]] = LabelVariationOptions
    source: ClassVar[str] = (
        "Lassance et al. 2020, arXiv 2011.12737 (PGDL 2020 3rd place); github.com/cadurosar/pgdl VPM_1/complexity.py"
    )

    @property
    def description(self) -> str:
        return "PGDL 3rd place: label variation on a 1-NN graph of penultimate features of mixed-up training examples."

    def compute(self, ctx, options: LabelVariationOptions) -> genbench.Estimate:
        with one_thread_on_cpu(ctx.device):
            return self._compute(ctx, options)

    def _compute(self, ctx, options: LabelVariationOptions) -> genbench.Estimate:
        model, device = ctx.model, ctx.device
        layer_name, layer = last_linear(model)
        classes = ctx.num_classes
        per_class = options.examples // classes
        if per_class == 0:
            raise MeasureError(f"examples ({options.examples}) must be at least the number of classes ({classes})")
        labels = ctx.train_labels.cpu()
        chosen = []
        for label in range(classes):
            members = torch.nonzero(labels == label).flatten()
            chosen.append(members[torch.randperm(members.numel(), generator=ctx.generator)[:per_class]])
        nodes = torch.cat(chosen)
        n = nodes.numel()
        if n <= options.k:
            raise MeasureError(f"a {options.k}-nearest-neighbour graph needs more than {options.k} examples; drew {n}")

        partner = torch.randperm(n, generator=ctx.generator)
        lam = beta_quantiles(torch.rand(n, generator=ctx.generator, dtype=torch.float64), options.mixup_alpha)
        x = ctx.train_inputs[nodes]
        shape = (n,) + (1,) * (x.dim() - 1)
        lam_x = lam.to(device=x.device, dtype=x.dtype).view(shape)
        mixed = lam_x * x + (1.0 - lam_x) * x[partner.to(x.device)]
        one_hot = torch.nn.functional.one_hot(labels[nodes], classes).to(torch.float64)
        targets = lam[:, None] * one_hot + (1.0 - lam[:, None]) * one_hot[partner]

        features = capture(model, layer, mixed, device, pre=True)
        value = label_variation(knn_adjacency(features, options.k), targets, 4.0 * n)
        return genbench.Estimate(value, {"nodes": n, "layer": layer_name})


__all__ = ["LabelVariation", "LabelVariationOptions", "beta_quantiles", "knn_adjacency", "label_variation"]
