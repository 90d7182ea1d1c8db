"""The conformance suite plugin authors run on their own measures and models.

    # tests/test_conformance.py of a genbench-<name> package
    from genbench.testing import check_measure, check_model

    def test_my_measure_keeps_the_measure_contract():
        check_measure(MyMeasure())

    def test_my_model_keeps_the_model_contract():
        check_model(MyModel())

Each check raises ``ConformanceError`` (an ``AssertionError``, so pytest reports a failed
test) with one line that names the component and the first rule it breaks.

``check_measure`` checks the metadata (name, kind, version, requires, Options with
defaults that survive JSON, a docstring with the formula), then computes the measure on
two small fitted runs — an MLP and a conv net on 160 digits with half of the labels
corrupted, trained once per process into a temporary store — through the same
``MeasureContext`` the engine builds, and checks that:

- it returns a real number or an ``Estimate`` whose details the store accepts, finite on
  these fitted networks, and in [0, 1] for a capability;
- it leaves the context as it found it: the model's weights (bit for bit), the train/eval
  mode of every submodule, the training data;
- it reads ``ctx.retrainer``, ``ctx.initial_model`` and ``ctx.training_log`` only if it
  declares ``retrain``, ``init_weights`` and ``training_log``: undeclared ones are
  stand-ins that fail on any use, also when the measure catches the error (the evaluate
  stage puts the same stand-ins in every context it builds; here their error is a
  ConformanceError). (Type tests on them, such as ``isinstance``, cannot be seen. The
  training data and its sizes are always there; ``train_data`` in ``requires`` is
  informational.) A ``RetrainingMeasure`` is computed through its ``compute``, which trains
  its jobs for the run alone.
- it gives the same value on a fresh context of the same run (random draws come from
  ``ctx.generator``, which the engine seeds per run and measure).

A measure meant for some architectures only passes ``architectures=("mlp",)`` or
``("cnn",)``.

``check_model`` builds the model for several input shapes (8×8 digits, 1 × 40 sequences as
MNIST-1D gives, 28×28×3 images; ``input_shapes=`` replaces them) and checks that each
build either gives a module whose logits are [batch, classes] and finite, or raises a
``GenbenchError`` (such as ``SpecError``) that says why. For a model that declares
``vmappable`` it checks that a vmapped pair of copies equals the copies one at a time in
eval mode, and that the pair trains under ``vmap`` in train mode as the trainer runs it
(randomness "different", gradients); where ``genbench.training.stacked_forward`` applies, that its
logits equal the copies' too. Closed-form models (``closed_form = True``) get the
metadata checks only.
"""

from __future__ import annotations

import atexit
import copy
import math
import re
import shutil
import tempfile
from functools import lru_cache
from numbers import Real
from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from genbench.errors import GenbenchError
from genbench.measures.base import DECLARED_FIELDS, REQUIREMENTS, Estimate, MeasureContext, Undeclared
from genbench.schemas import ComponentRef, CorruptionSpec, Options, RunSpec, TrainConfig
from genbench.training.stacked_forward import stacked_forward, stacked_plan

NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")
KINDS = ("complexity", "capability")
#: The runs every measure is checked on (architectures and their options).
CHECK_MODELS = (("mlp", {"hidden": [32]}), ("cnn", {"channels": [4, 8]}))
CHECK_TRAIN = TrainConfig(lr=0.05, schedule="constant", max_steps=2000)
INPUT_SHAPES = ((1, 8, 8), (1, 40), (3, 28, 28))
#: What the store accepts as an Estimate's details (``MeasureValue.details``).
_DETAILS = TypeAdapter(dict[str, float | int | str | None])


class ConformanceError(AssertionError):
    """A component breaks its contract; the message names it and the rule."""


def _fail(component: str, message: str) -> None:
    raise ConformanceError(f"{component}: {message}")


# --------------------------------------------------------------------------- measures
def check_measure_metadata(measure: Any) -> None:
    """Name, kind, version, requires, Options and docstring of ``measure`` (an instance or its class)."""
    measure = measure() if isinstance(measure, type) else measure
    name = getattr(measure, "name", None)
    label = f"measure {name!r}"
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        _fail(label, "name must be lower-case letters and digits joined by '-' (e.g. 'my-measure')")
    if getattr(measure, "kind", None) not in KINDS:
        _fail(label, f"kind must be one of {KINDS}, got {getattr(measure, 'kind', None)!r}")
    version = getattr(measure, "version", None)
    if not isinstance(version, str) or not version:
        _fail(label, f"version must be a non-empty string (bump it when values change), got {version!r}")
    requires = getattr(measure, "requires", None)
    if not isinstance(requires, (set, frozenset)) or not requires <= REQUIREMENTS:
        _fail(label, f"requires must be a set within {sorted(REQUIREMENTS)}, got {requires!r}")
    option_type = getattr(measure, "Options", None)
    if not (isinstance(option_type, type) and issubclass(option_type, Options)):
        _fail(label, "Options must be a subclass of genbench.Options")
    defaults = _default_options(label, option_type)
    try:
        round_trip = option_type.model_validate(defaults.model_dump(mode="json"))
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        round_trip = exc
    if round_trip != defaults:
        _fail(label, "its options do not survive a JSON round trip (they are stored as JSON)")
    if not callable(getattr(measure, "compute", None)):
        _fail(label, "has no compute(ctx, options) method")
    doc = type(measure).__doc__ or ""
    if len([line for line in doc.strip().splitlines() if line.strip()]) < 2:
        _fail(label, "needs a docstring that gives its formula and its source")


def _default_options(label: str, option_type: type[Options]) -> Options:
    try:
        return option_type()
    except Exception:  # noqa: BLE001 - reported as the broken rule
        missing = [name for name, field in option_type.model_fields.items() if field.is_required()]
        _fail(label, f"every option needs a default; {', '.join(missing) or 'Options()'} has none")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@lru_cache(maxsize=1)
def _check_runs() -> tuple[Any, list[tuple[RunSpec, Any]]]:
    """The engine and the trained runs ``check_measure`` computes on (trained once per process)."""
    from genbench.engine import Engine
    from genbench.store import Store

    root = tempfile.mkdtemp(prefix="genbench-conformance-")
    atexit.register(shutil.rmtree, root, True)
    engine = Engine(Store(f"{root}/store"), device="cpu")
    runs = [
        RunSpec(
            dataset=ComponentRef(name="digits", options={"subset": 160}),
            model=ComponentRef(name=model, options=options),
            corruption=CorruptionSpec(name="labels", level=0.5),
            train=CHECK_TRAIN,
            seed=0,
        )
        for model, options in CHECK_MODELS
    ]
    engine.train(runs)
    return engine, list(engine.store.iter_runs([run.run_id for run in runs]))


def _context(engine: Any, run: RunSpec, result: Any, measure: Any) -> tuple[MeasureContext, list[Undeclared]]:
    """The engine's context for ``run`` (a fresh run cache), with the training data copied (a
    measure that writes to it must not spoil the later checks) and stand-ins for undeclared
    fields that raise ConformanceError."""
    ctx = engine.context(run, result, measure, stand_in_error=ConformanceError)
    ctx.train_inputs, ctx.train_labels = ctx.train_inputs.clone(), ctx.train_labels.clone()
    stand_ins = [getattr(ctx, name) for name, _ in DECLARED_FIELDS if isinstance(getattr(ctx, name), Undeclared)]
    return ctx, stand_ins


def _snapshot(ctx: MeasureContext) -> dict[str, Any]:
    state: dict[str, Any] = {f"model.{k}": v.detach().clone() for k, v in ctx.model.state_dict().items()}
    state["train_inputs"] = ctx.train_inputs.clone()
    state["train_labels"] = ctx.train_labels.clone()
    state["modes"] = [module.training for module in ctx.model.modules()]
    return state


def _changed(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """What differs between two snapshots, in words (None when nothing does)."""
    if before.keys() != after.keys():
        return "replaced ctx.model with another network; work on a copy (copy.deepcopy(ctx.model))"
    for key in before:
        if key == "modes":
            if before[key] != after[key]:
                return "left a module of the model in a different train/eval mode"
        elif not torch.equal(before[key], after[key]):
            if key.startswith("model."):
                return f"changed {key} of the context; work on a copy (copy.deepcopy(ctx.model))"
            return f"changed ctx.{key}; work on a copy (ctx.{key}.clone())"
    return None


def _value(label: str, outcome: Any) -> float:
    if isinstance(outcome, Estimate):
        try:
            _DETAILS.validate_python(outcome.details)
        except Exception as exc:  # noqa: BLE001 - reported as the broken rule
            _fail(label, f"Estimate.details must map names to numbers, strings or None ({_first_line(exc)})")
        outcome = outcome.value
    if isinstance(outcome, torch.Tensor):
        _fail(label, "compute returned a tensor; return a float (tensor.item()) or an Estimate")
    if isinstance(outcome, (bool, np.bool_)) or not isinstance(outcome, Real):
        _fail(label, f"compute must return a float or an Estimate, got {type(outcome).__name__}")
    return float(outcome)


def check_measure(
    measure: Any,
    options: Options | dict | None = None,
    rtol: float = 1e-6,
    architectures: tuple[str, ...] = ("mlp", "cnn"),
) -> dict[str, float]:
    """Check ``measure`` (an instance, as registered, or its class) against the measure
    contract; returns its value on each check run, by architecture name. ``options`` (an
    Options instance or a dict) default to the defaults; ``rtol`` is the tolerance of the
    same-value-twice check; ``architectures`` chooses the check runs ("mlp", "cnn")."""
    measure = measure() if isinstance(measure, type) else measure
    check_measure_metadata(measure)
    label = f"measure {measure.name!r}"
    if options is None:
        options = measure.Options()
    elif not isinstance(options, measure.Options):
        try:
            options = measure.Options.model_validate(options)
        except Exception as exc:  # noqa: BLE001 - reported as the broken rule
            _fail(label, f"the options given are not valid: {_first_line(exc)}")
    unknown = sorted(set(architectures) - {model for model, _ in CHECK_MODELS})
    if unknown or not architectures:
        _fail(label, f"architectures must be among {[model for model, _ in CHECK_MODELS]}, got {list(architectures)}")
    engine, pairs = _check_runs()
    values: dict[str, float] = {}
    for run, result in pairs:
        if run.model.name not in architectures:
            continue
        where = f"{label} on the {run.model.name} check run"
        value = _checked_compute(where, engine, run, result, measure, options)
        again = _checked_compute(where + " (computed again)", engine, run, result, measure, options)
        if not math.isclose(value, again, rel_tol=rtol, abs_tol=1e-12):
            _fail(where, f"gave {value} and then {again} on a fresh context; draw randomness from ctx.generator")
        values[run.model.name] = value
    return values


def _checked_compute(where: str, engine: Any, run: RunSpec, result: Any, measure: Any, options: Options) -> float:
    """One computation on a fresh context, with every per-call rule checked."""
    ctx, stand_ins = _context(engine, run, result, measure)
    before = _snapshot(ctx)
    try:
        outcome = measure.compute(ctx, options)
    except ConformanceError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        used = next((s for s in stand_ins if s.used), None)
        if used is not None:
            raise ConformanceError(used.message) from None
        _fail(where, f"compute raised {_first_line(exc)}")
    used = next((s for s in stand_ins if s.used), None)
    if used is not None:  # the measure caught the stand-in's error and went on
        raise ConformanceError(used.message)
    value = _value(where, outcome)
    if not math.isfinite(value):
        _fail(where, f"gave {value}; on a fitted network a measure's value must be finite")
    if measure.kind == "capability" and not 0.0 <= value <= 1.0:
        _fail(where, f"is a capability but gave {value}, outside [0, 1]")
    change = _changed(before, _snapshot(ctx))
    if change is not None:
        _fail(where, change)
    return value


# --------------------------------------------------------------------------- models
def check_model(model: Any, num_classes: int = 10, input_shapes: tuple[tuple[int, ...], ...] = INPUT_SHAPES) -> None:
    """Check a model factory (an instance, as registered, or its class) against the model
    contract, for ``num_classes`` classes and each of ``input_shapes`` (without the batch axis)."""
    model = model() if isinstance(model, type) else model
    name = getattr(model, "name", None)
    label = f"model {name!r}"
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        _fail(label, "name must be lower-case letters and digits joined by '-' (e.g. 'my-net')")
    if not isinstance(getattr(model, "description", None), str) or not model.description:
        _fail(label, "needs a one-line description")
    option_type = getattr(model, "Options", None)
    if not (isinstance(option_type, type) and issubclass(option_type, Options)):
        _fail(label, "Options must be a subclass of genbench.Options")
    if not isinstance(getattr(model, "vmappable", None), bool):
        _fail(label, "must say whether it is vmappable (a bool)")
    options = _default_options(label, option_type)
    if getattr(model, "closed_form", False):
        return  # fitted in closed form: built from data by the engine, not by build()
    built = 0
    for shape in input_shapes:
        where = f"{label} for inputs {shape}"
        try:
            module = model.build(shape, num_classes, options)
        except GenbenchError as exc:
            if not str(exc).strip():
                _fail(where, f"raised {type(exc).__name__} without saying why")
            continue
        except Exception as exc:  # noqa: BLE001 - reported as the broken rule
            _fail(where, f"build raised {_first_line(exc)}; raise genbench.errors.SpecError saying why")
        if not isinstance(module, nn.Module):
            _fail(where, f"build must return an nn.Module, got {type(module).__name__}")
        built += 1
        _check_logits(where, model, module, shape, num_classes)
    if not built:
        _fail(label, f"builds for none of the input shapes {list(input_shapes)} (pass input_shapes= for others)")


def _check_logits(where: str, model: Any, module: nn.Module, shape: tuple[int, ...], num_classes: int) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, *shape, generator=generator)
    module = module.eval()
    try:
        with torch.no_grad():
            logits = module(x)
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        _fail(where, f"the built module fails on a batch of 3: {_first_line(exc)}")
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (3, num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        _fail(where, f"logits for a batch of 3 must have shape (3, {num_classes}), got {got}")
    if not torch.isfinite(logits).all():
        _fail(where, "gives non-finite logits on standard-normal inputs")
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
        _fail(where, f"declares vmappable but the trainer's vmap fails: {_first_line(exc)}")
    with torch.no_grad():
        alone = torch.stack([module(x), second.eval()(x)])
    if not torch.allclose(stacked, alone, rtol=1e-4, atol=1e-5):
        _fail(where, "declares vmappable but a vmapped pair of copies differs from the copies one at a time")
    plan = stacked_plan(base.eval())
    if plan is not None:
        with torch.no_grad():
            ours = stacked_forward(plan, {k: v.detach() for k, v in params.items()}, pair)
        if not torch.allclose(ours, alone, rtol=1e-4, atol=1e-5):
            _fail(where, "genbench.training.stacked_forward gives other logits than the copies one at a time")
