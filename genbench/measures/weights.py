"""Which tensors of a network the norm-based measures look at.

Following Jiang et al. (2020) and Dziugaite et al. (2020): the weights of linear
and convolutional layers only — no biases, no batch-norm parameters — in the
order the layers appear in the network.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMALIZATION_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every linear or convolutional layer, in registration order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, WEIGHT_LAYERS)]


def weight_count(model: nn.Module, include_biases: bool = True) -> int:
    """Parameters of linear and convolutional layers (biases optional); batch norm excluded."""
    total = 0
    for _, layer in weight_layers(model):
        total += layer.weight.numel()
        if include_biases and layer.bias is not None:
            total += layer.bias.numel()
    return total


BATCH_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if not list(module.children())]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def batch_norm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(weight layer, batch norm) name pairs where the batch norm directly follows the layer
    (the next leaf module in registration order) and normalizes its outputs."""
    leaves = _leaves(model)
    pairs = []
    for (name, layer), (next_name, following) in zip(leaves, leaves[1:]):
        if isinstance(layer, WEIGHT_LAYERS) and isinstance(following, BATCH_NORM_LAYERS):
            outputs = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
            if following.num_features == outputs and following.running_var is not None:
                pairs.append((name, next_name))
    return pairs


@torch.no_grad()
def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every batch norm that directly follows a linear or
    convolutional layer folded into it, and replaced by the identity.

    With s = γ / sqrt(running_var + ε): W' = s·W (per output unit), b' = s·(b − running_mean) + β.
    The folded network computes the same function as the original in eval mode. This is the
    convention of Jiang et al. 2020 and Dziugaite et al. 2020 before any norm is taken. A batch
    norm that does not follow a weight layer is left in place.
    """
    folded = copy.deepcopy(model).eval()
    for layer_name, norm_name in batch_norm_pairs(folded):
        layer = folded.get_submodule(layer_name)
        norm = folded.get_submodule(norm_name)
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps) if norm.affine else 1 / torch.sqrt(norm.running_var + norm.eps)
        shift = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        bias = layer.bias if layer.bias is not None else torch.zeros_like(norm.running_mean)
        new_bias = scale * (bias - norm.running_mean) + shift
        layer.weight.mul_(scale.reshape(shape))
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias.clone())
        else:
            layer.bias.copy_(new_bias)
        _set_module(folded, norm_name, nn.Identity())
    return folded


def layer_weights(model: nn.Module, fold: bool = True) -> list[torch.Tensor]:
    """The weight tensors (float64, detached; no biases) of the linear and convolutional layers
    of ``model`` after folding batch norm (``fold``), in registration order."""
    source = fold_batch_norm(model) if fold else model
    return [layer.weight.detach().double() for _, layer in weight_layers(source)]


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A weight as a matrix: [out, in] for a linear layer; a convolution kernel
    [out, in, k₁, …] reshaped to [out, in·k₁·…] (the convention of Jiang et al. 2020's
    spectral measures for convolutions)."""
    return weight.reshape(weight.shape[0], -1)


def spectral_norm(weight: torch.Tensor) -> float:
    """Largest singular value σ_max of ``as_matrix(weight)`` (exact, via SVD, in float64)."""
    return torch.linalg.matrix_norm(as_matrix(weight).double(), ord=2).item()


def frobenius_norm(weight: torch.Tensor) -> float:
    """‖W‖_F."""
    return torch.linalg.vector_norm(weight.double()).item()
