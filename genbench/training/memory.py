"""How many members an ensemble may have: a per-member memory estimate against a budget."""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from genbench.inference import BYTES_PER_FLOAT, EVAL_CHUNK, activation_floats

#: Copies of the parameters a member holds while training: weights, gradients,
#: momentum, the saved initial state, and the stacked copy made when members leave.
PARAMETER_COPIES = 5
#: Activations are kept for the backward pass and their gradients are built there.
ACTIVATION_COPIES = 3


def member_bytes(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, num_train: int, own_inputs: bool
) -> int:
    """Estimated bytes one ensemble member needs on the training device."""
    parameters = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    training = activation_floats(model, input_shape, batch_size) * ACTIVATION_COPIES
    evaluation = activation_floats(model, input_shape, 1) * min(EVAL_CHUNK, num_train)
    inputs = num_train * math.prod(input_shape) if own_inputs else 0
    floats = parameters * PARAMETER_COPIES + max(training, evaluation) + inputs
    return floats * BYTES_PER_FLOAT + num_train * 8  # labels (int64)


def default_budget(device: torch.device) -> int:
    """Bytes ensembles may use: 70 % of free GPU memory, or half the available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.7)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        available = 4 << 30
    return int(available * 0.5)


def ensemble_size(per_member: int, budget: int, ceiling: int) -> int:
    """Members that fit in ``budget`` (at least 1, at most ``ceiling``)."""
    return max(1, min(ceiling, budget // max(per_member, 1)))
