"""Where the PGDL measures read a network: the first layer's output and the penultimate features.

Both are taken with forward hooks, in eval mode, under ``torch.no_grad``, on the context's
device; every hook is removed and every submodule's train/eval flag restored afterwards, so
the model is left exactly as it was.

- first layer: the output of the model's first ``nn.Linear``/``nn.Conv*`` module (in the order
  of ``model.modules()``, which is the order of execution for the sequential built-in
  networks), optionally after the activation module that follows it (batch norms in between
  are passed through, as in a conv → batch norm → ReLU module);
- penultimate: the input of the model's last ``nn.Linear`` (a forward pre-hook), i.e. the
  representation the classifier head reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from genbench import MeasureError, NotApplicable

#: The layers that carry weights, as everywhere in genbench: linear and convolutional.
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Element-wise activation modules that may follow the first layer.
ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
)
#: Normalizations passed through between the first layer and its activation.
NORMALIZATIONS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Examples per forward pass.
CHUNK = 512


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if not list(module.children())]


def first_layer(model: nn.Module, after_activation: bool) -> tuple[str, nn.Module]:
    """(name, module) whose output is the first layer's feature map.

    The first ``nn.Linear``/``nn.Conv*`` leaf of ``model``; with ``after_activation``, the
    activation module that directly follows it (batch norms in between allowed) when there
    is one. NotApplicable when the model has no linear or convolutional layer (closed-form
    kernel machines)."""
    leaves = _leaves(model)
    index = next((i for i, (_, module) in enumerate(leaves) if isinstance(module, WEIGHT_LAYERS)), None)
    if index is None:
        raise NotApplicable(f"{type(model).__name__} has no linear or convolutional layer to read features from")
    if after_activation:
        following = index + 1
        while following < len(leaves) and isinstance(leaves[following][1], NORMALIZATIONS):
            following += 1
        if following < len(leaves) and isinstance(leaves[following][1], ACTIVATIONS):
            return leaves[following]
    return leaves[index]


def last_linear(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) of the last ``nn.Linear`` of ``model``, whose input is the penultimate
    representation; NotApplicable when there is none."""
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise NotApplicable(f"{type(model).__name__} has no linear classifier layer to read penultimate features from")
    return linears[-1]


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block; every submodule's flag restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


@contextmanager
def one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """One intra-op torch thread inside the block when ``device`` is the CPU (restored
    afterwards): the many small forward passes of these measures gain nothing from more
    threads, which only wait on each other."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def max_pool_valid(features: torch.Tensor, window: int) -> torch.Tensor:
    """Non-overlapping max pooling of a conv map [b, c, *spatial] with a window (and stride) of
    ``window`` per spatial side, 'valid' (the incomplete border dropped), as Keras'
    ``MaxPooling2D(pool_size=window)``; a side shorter than ``window`` is pooled whole. A map
    without spatial sides (a linear layer's [b, d]) and ``window`` ≤ 1 pass unchanged."""
    spatial = features.shape[2:]
    if window <= 1 or features.dim() < 3:
        return features
    kernel = tuple(min(window, int(side)) for side in spatial)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}.get(len(spatial))
    if pool is None:
        raise MeasureError(f"cannot max-pool a feature map of {len(spatial)} spatial dimensions")
    return pool(features, kernel_size=kernel, stride=kernel)


def capture(
    model: nn.Module,
    module: nn.Module,
    inputs: torch.Tensor,
    device: torch.device,
    *,
    pre: bool = False,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The output of ``module`` (its input with ``pre``) on ``inputs``, flattened to [n, d],
    float64 on the CPU; ``transform`` is applied to each captured tensor before flattening.

    A module called on sub-batches within one forward pass (a network that splits its input
    into chunks) has its calls concatenated; a module called more than once on the whole batch
    (a shared layer) is read at its first call."""
    calls: list[torch.Tensor] = []

    def keep(tensor: torch.Tensor) -> None:
        tensor = tensor.detach()
        if transform is not None:
            tensor = transform(tensor)
        calls.append(tensor.reshape(tensor.shape[0], -1).to("cpu", torch.float64))

    if pre:
        handle = module.register_forward_pre_hook(lambda _m, args: keep(args[0]))
    else:
        handle = module.register_forward_hook(lambda _m, _args, output: keep(output))
    outputs: list[torch.Tensor] = []
    try:
        with evaluating(model), torch.no_grad():
            for start in range(0, inputs.shape[0], CHUNK):
                batch = inputs[start : start + CHUNK]
                calls.clear()
                model(batch.to(device))
                rows = sum(call.shape[0] for call in calls)
                if calls and calls[0].shape[0] == batch.shape[0]:
                    outputs.append(calls[0])
                elif rows == batch.shape[0]:
                    outputs.append(torch.cat(calls))
                else:
                    raise MeasureError(
                        f"the {type(module).__name__} layer saw {rows} rows for a batch of {batch.shape[0]} examples"
                    )
    finally:
        handle.remove()
    if not outputs:
        return torch.empty(0, 0, dtype=torch.float64)
    return torch.cat(outputs)


def predicted_classes(model: nn.Module, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """argmax of the model's logits on ``inputs`` (eval mode, no gradients), int64 on the CPU."""
    predictions = []
    with evaluating(model), torch.no_grad():
        for start in range(0, inputs.shape[0], CHUNK):
            predictions.append(model(inputs[start : start + CHUNK].to(device)).argmax(dim=-1).cpu())
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.int64)
