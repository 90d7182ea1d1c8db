"""One wide first layer for ensemble members that see the same minibatch.

Members that share a seed and a training subset draw the same minibatch (the data
order and the augmentation are functions of the seed), and when their inputs are
shared their first layers all multiply the same ``x``. For k such members the k
narrow products ``x·W_1ᵀ … x·W_kᵀ`` are then one wide product ``x·[W_1 … W_k]ᵀ``
(for a convolution: one convolution with k·C_out output channels), forward and
backward, and only the rest of the network runs per member under ``vmap``.

This applies to models that are an ``nn.Sequential`` (possibly nested at its start)
whose first parametrized module is an ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d``
(zero padding, one group) reached only through parameterless shape modules
(``Flatten``, ``Unflatten``, ``Identity``). ``split_first_layer`` returns ``None``
for any other model, and the trainer then runs the whole model under ``vmap``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

#: Parameterless modules that may come before the first layer: they only reshape.
SHAPE_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity)
FIRST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass
class FirstLayerSplit:
    """A model cut after its first layer: ``prefix`` → ``layer`` → ``tail``.

    ``weight`` and ``bias`` name the layer's parameters in the full model's state
    dict (``bias`` is None without one); ``tail_names`` maps every other parameter
    and buffer name of the full model to its name inside ``tail``."""

    prefix: nn.Sequential
    layer: nn.Module
    weight: str
    bias: str | None
    tail: nn.Sequential
    tail_names: dict[str, str]


def _leading_items(model: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The children of ``model`` with qualified names; a leading nested Sequential that
    holds the first parameters is spliced in (Sequential(a, Sequential(b, c), d) runs
    exactly as Sequential(a, b, c, d))."""
    items = [(f"{prefix}{name}", child) for name, child in model.named_children()]
    for position, (name, child) in enumerate(items):
        if any(True for _ in child.parameters()):
            if isinstance(child, nn.Sequential):
                return items[:position] + _leading_items(child, f"{name}.") + items[position + 1 :]
            return items
    return items


def split_first_layer(model: nn.Module) -> FirstLayerSplit | None:
    """Cut ``model`` after its first layer, or ``None`` when the wide product does not apply."""
    if not isinstance(model, nn.Sequential):
        return None
    items = _leading_items(model)
    first = next((i for i, (_, module) in enumerate(items) if any(True for _ in module.parameters())), None)
    if first is None:
        return None
    name, layer = items[first]
    if not isinstance(layer, FIRST_LAYERS) or list(layer.buffers()):
        return None
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)) and (layer.groups != 1 or layer.padding_mode != "zeros"):
        return None
    if not all(isinstance(module, SHAPE_MODULES) for _, module in items[:first]):
        return None
    tail_items = items[first + 1 :]
    tail_names: dict[str, str] = {}
    for position, (qualified, module) in enumerate(tail_items):
        for inner, _ in [*module.named_parameters(), *module.named_buffers()]:
            tail_names[f"{qualified}.{inner}"] = f"{position}.{inner}"
    return FirstLayerSplit(
        prefix=nn.Sequential(*[copy.deepcopy(module) for _, module in items[:first]]),
        layer=copy.deepcopy(layer).to("meta"),
        weight=f"{name}.weight",
        bias=f"{name}.bias" if layer.bias is not None else None,
        tail=copy.deepcopy(nn.Sequential(*[module for _, module in tail_items])).to("meta"),
        tail_names=tail_names,
    )


def wide_first_layer(
    split: FirstLayerSplit, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spans: list[tuple[int, int]]
) -> torch.Tensor:
    """First-layer outputs [M, B, ...] of all members: cohort g (members
    ``spans[g][0]:spans[g][1]`` of the stacked ``weight`` [M, out, ...]) multiplies its
    own minibatch ``x[g]`` with one product for all its members."""
    outputs = []
    layer = split.layer
    for g, (start, end) in enumerate(spans):
        k, out_features = end - start, weight.shape[1]
        xg = split.prefix(x[g])
        w = weight[start:end].reshape(k * out_features, *weight.shape[2:])
        b = bias[start:end].reshape(k * out_features) if bias is not None else None
        if isinstance(layer, nn.Linear):
            h = F.linear(xg, w, b).unflatten(-1, (k, out_features)).movedim(-2, 0)
        else:
            conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
            h = conv(xg, w, b, layer.stride, layer.padding, layer.dilation).unflatten(1, (k, out_features)).movedim(1, 0)
        outputs.append(h)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def wide_forward(
    split: FirstLayerSplit,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
    spans: list[tuple[int, int]],
) -> torch.Tensor:
    """Logits [M, B, classes]: the wide first layer, then the tail per member under ``vmap``."""
    hidden = wide_first_layer(split, x, params[split.weight], params.get(split.bias) if split.bias else None, spans)
    tail_params = {split.tail_names[k]: v for k, v in params.items() if k in split.tail_names}
    tail_buffers = {split.tail_names[k]: v for k, v in buffers.items() if k in split.tail_names}
    forward = vmap(lambda p, b, h: functional_call(split.tail, (p, b), (h,)), randomness="different")
    return forward(tail_params, tail_buffers, hidden)
