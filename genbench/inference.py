"""What trainers and measures share to run a network: the device, logits in chunks, accuracy and loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import SpecError

#: Examples per forward pass when a whole set is evaluated.
EVAL_CHUNK = 2048
BYTES_PER_FLOAT = 4


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given, else ``cuda`` when present, else ``cpu``."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise SpecError(f"unknown device '{requested}'; use cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SpecError(f"device '{requested}' requested but CUDA is not available here")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def predict(model: nn.Module, inputs: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits of ``model`` (eval mode) on ``inputs``, in chunks, on ``device``; returned on CPU."""
    model = model.to(device).eval()
    outputs = [model(inputs[i : i + EVAL_CHUNK].to(device)).cpu() for i in range(0, len(inputs), EVAL_CHUNK)]
    return torch.cat(outputs) if outputs else torch.empty(0)


def accuracy_and_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    if len(labels) == 0:
        return math.nan, math.nan
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    loss = F.cross_entropy(logits, labels).item()
    return accuracy, loss


def activation_floats(model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> int:
    """Floats produced by every leaf module in one forward pass of ``batch_size`` examples
    (the model in eval mode, on the device of its parameters)."""
    total = 0
    device = next(model.parameters(), torch.zeros(0)).device

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((batch_size, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total
