"""``check_model``: a model factory's metadata, and the modules it builds for several input shapes."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from genbench.errors import GenbenchError
from genbench.testing._common import (
    check_name,
    check_description,
    check_name_free,
    check_options_type,
    check_protocol,
    fail,
    first_line,
    instance,
)
from genbench.training.stacked_forward import stacked_forward, stacked_plan

#: The input shapes (without the batch axis) a model is built for: 8×8 digits, 1 × 40
#: sequences as MNIST-1D gives, 28×28×3 images.
INPUT_SHAPES = ((1, 8, 8), (1, 40), (3, 28, 28))
def check_model(model: Any, num_classes: int = 10, input_shapes: tuple[tuple[int, ...], ...] = INPUT_SHAPES) -> None:
    """Check a model factory (an instance, as registered, or its class) against the model
    contract, for ``num_classes`` classes and each of ``input_shapes`` (without the batch axis):
    a kebab-case name that no other distribution has registered, a one-line description,
    Options with defaults that survive JSON, a ``vmappable`` bool, the registry's protocol; then (unless ``closed_form``) each build
    gives a module with finite [batch, classes] logits or raises a GenbenchError saying why, and
    a vmappable model trains and predicts under ``vmap`` as its copies do one at a time."""
    model = instance(model)
    name = getattr(model, "name", None)
    label = f"model {name!r}"
    check_name(label, name, "my-net")
    check_name_free("models", label, model)
    check_description(label, model)
    options = check_options_type(label, model)
    if not isinstance(getattr(model, "vmappable", None), bool):
        fail(label, "must say whether it is vmappable (a bool)")
    check_protocol("models", label, model)
    if getattr(model, "closed_form", False):
        return  # fitted in closed form: built from data by the engine, not by build()
    built = 0
    for shape in input_shapes:
        where = f"{label} for inputs {shape}"
        try:
            module = model.build(shape, num_classes, options)
        except GenbenchError as exc:
            if not str(exc).strip():
                fail(where, f"raised {type(exc).__name__} without saying why")
            continue
        except Exception as exc:  # noqa: BLE001 - reported as the broken rule
            fail(where, f"build raised {first_line(exc)}; raise genbench.errors.SpecError saying why")
        if not isinstance(module, nn.Module):
            fail(where, f"build must return an nn.Module, got {type(module).__name__}")
        built += 1
        _check_logits(where, model, module, shape, num_classes)
    if not built:
        fail(label, f"builds for none of the input shapes {list(input_shapes)} (pass input_shapes= for others)")


def _check_logits(where: str, model: Any, module: nn.Module, shape: tuple[int, ...], num_classes: int) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, *shape, generator=generator)
    module = module.eval()
    try:
        with torch.no_grad():
            logits = module(x)
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        fail(where, f"the built module fails on a batch of 3: {first_line(exc)}")
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (3, num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        fail(where, f"logits for a batch of 3 must have shape (3, {num_classes}), got {got}")
    if not torch.isfinite(logits).all():
        fail(where, "gives non-finite logits on standard-normal inputs")
    if model.vmappable:
        _check_vmappable(where, module, x, generator)


def _check_vmappable(where: str, module: nn.Module, x: torch.Tensor, generator: torch.Generator) -> None:
    """A vmapped pair of copies: equal to the copies alone in eval mode; trainable in train mode."""
    second = copy.deepcopy(module)
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    params, buffers = stack_module_state([module, second])
    base = copy.deepcopy(module).to("meta")
    pair = x.expand(2, *x.shape)

    def forward(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    try:
        with torch.no_grad():
            stacked = vmap(forward)(params, buffers, pair)
        base.train()
        trained = vmap(forward, randomness="different")(params, buffers, pair)
        torch.autograd.grad(trained.square().sum(), list(params.values()), allow_unused=True)
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        fail(where, f"declares vmappable but the trainer's vmap fails: {first_line(exc)}")
    with torch.no_grad():
        alone = torch.stack([module(x), second.eval()(x)])
    if not torch.allclose(stacked, alone, rtol=1e-4, atol=1e-5):
        fail(where, "declares vmappable but a vmapped pair of copies differs from the copies one at a time")
    plan = stacked_plan(base.eval())
    if plan is not None:
        with torch.no_grad():
            ours = stacked_forward(plan, {k: v.detach() for k, v in params.items()}, pair)
        if not torch.allclose(ours, alone, rtol=1e-4, atol=1e-5):
            fail(where, "genbench.training.stacked_forward gives other logits than the copies one at a time")
