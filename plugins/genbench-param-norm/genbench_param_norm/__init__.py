"""genbench-param-norm: an example genbench plugin contributing the measure ``frobenius-norm``.

genbench finds this module through the entry point declared in ``pyproject.toml``::

    [project.entry-points.genbench]
    param-norm = "genbench_param_norm"

and calls its ``register_measures`` hook implementation.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from torch import nn

import genbench

__version__ = "0.1.0"

__all__ = ["ParamNorm", "ParamNormOptions", "param_norm", "register_measures"]

#: The layers whose weights count, as in Jiang et al. (2020): linear and convolutional
#: layers only — no biases, no batch-norm or other normalization parameters.
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def param_norm(model: nn.Module, squared: bool = True) -> float:
    """Σ_i ‖W_i‖_F² over the linear and convolutional weights of ``model`` (its square
    root if ``squared`` is False), accumulated in float64."""
    total = 0.0
    for module in model.modules():
        if isinstance(module, WEIGHT_LAYERS):
            total += module.weight.detach().double().pow(2).sum().item()
    return total if squared else total**0.5


class ParamNormOptions(genbench.Options):
    """Options of ``frobenius-norm``."""

    squared: bool = Field(
        False,
        description="False: the Frobenius norm of all weights; True: its square, Σ_i ‖W_i‖_F² (Jiang et al.'s "
        "param-norm, built into genbench)",
    )


class ParamNorm:
    """Frobenius norm of all weights taken together.

    frobenius-norm = √(Σ_i ‖W_i‖_F²)  over the weight tensors W_i of the linear and
    convolutional layers (biases and batch-norm parameters excluded); with
    ``squared=True`` the value is Σ_i ‖W_i‖_F², genbench's built-in ``param-norm``
    (without its batch-norm folding).

    Source: Y. Jiang, B. Neyshabur, H. Mobahi, D. Krishnan and S. Bengio, "Fantastic
    Generalization Measures and Where to Find Them", ICLR 2020 — measure
    "param.norm" (parameter Frobenius norm).
    """

    name: ClassVar[str] = "frobenius-norm"
    kind: ClassVar[Literal["complexity", "capability"]] = "complexity"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type[genbench.Options]] = ParamNormOptions

    @property
    def description(self) -> str:
        return "Frobenius norm of all weights: √(Σ_i ‖W_i‖_F²) over linear and convolutional weights."

    def compute(self, ctx, options: ParamNormOptions) -> float:
        return param_norm(ctx.model, squared=options.squared)


@genbench.hookimpl
def register_measures(register) -> None:
    register(ParamNorm())
