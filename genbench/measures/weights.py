"""Which tensors of a network the norm-based measures look at.

Following Jiang et al. (2020) and Dziugaite et al. (2020): the weights of linear
and convolutional layers only — no biases, no batch-norm parameters — in the
order the layers appear in the network.
"""

from __future__ import annotations

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
