"""The conformance suite plugin authors run on their own measures and models.

    # tests/test_conformance.py of a genbench-<name> package
    from genbench.testing import check_measure, check_model

    def test_my_measure_keeps_the_measure_contract():
        check_measure(MyMeasure())

    def test_my_model_keeps_the_model_contract():
        check_model(MyModel())

Each check raises ``ConformanceError`` (an ``AssertionError``, so pytest reports a failed
test) with one line that names the component and the first rule it breaks.

``check_measure`` checks the metadata (name, kind, version, requires, Options, a docstring
with the formula), then computes the measure on two small trained runs — an MLP and a conv
net on 160 digits with half of the labels corrupted, trained once per process into a
temporary store — through the same ``MeasureContext`` the engine builds, and checks that:

- it returns a real number or an ``Estimate``, finite, and in [0, 1] for a capability;
- it leaves the context as it found it (the model's weights and mode, the training data);
- it reads only what it declares in ``requires``: without ``retrain`` the context has no
  retrainer, without ``init_weights`` no initial model, without ``training_log`` no log;
- it gives the same value on a fresh context of the same run (random draws come from
  ``ctx.generator``, which the engine seeds per run and measure).

``check_model`` builds the model for several input shapes (8×8 digits, 40-feature 1-D
inputs, 28×28×3 images) and checks that each build either gives a module whose logits
are [batch, classes] and finite, or raises a ``GenbenchError`` that says why; and, for a
model that declares ``vmappable``, that a vmapped ensemble of two copies gives the same
logits as the copies one at a time.
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

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from genbench.errors import GenbenchError
from genbench.measures.base import REQUIREMENTS, Estimate, MeasureContext
from genbench.schemas import ComponentRef, CorruptionSpec, Options, RunSpec, TrainConfig

NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")
KINDS = ("complexity", "capability")
#: The runs every measure is checked on (architectures and their options).
CHECK_MODELS = (("mlp", {"hidden": [32]}), ("cnn", {"channels": [4, 8]}))
CHECK_TRAIN = TrainConfig(lr=0.05, schedule="constant", max_steps=2000)
INPUT_SHAPES = ((1, 8, 8), (1, 40), (3, 28, 28))


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
        _fail(label, "name must be lower-case words joined by '-' (e.g. 'my-measure')")
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
    try:
        defaults = option_type()
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        _fail(label, f"every option needs a default; Options() failed: {str(exc).splitlines()[0]}")
    if option_type.model_validate(defaults.model_dump(mode="json")) != defaults:
        _fail(label, "its options do not survive a JSON round trip (they are stored as JSON)")
    if not callable(getattr(measure, "compute", None)):
        _fail(label, "has no compute(ctx, options) method")
    doc = type(measure).__doc__ or ""
    if len([line for line in doc.strip().splitlines() if line.strip()]) < 2:
        _fail(label, "needs a docstring that gives its formula and its source")


class _Undeclared:
    """Stands in for a context field the measure did not declare in ``requires``."""

    def __init__(self, measure: str, field: str, requirement: str) -> None:
        self._message = f"measure {measure!r}: reads ctx.{field} without declaring {requirement!r} in requires"

    def __getattr__(self, attribute: str) -> Any:
        raise ConformanceError(self._message)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ConformanceError(self._message)

    def __iter__(self):
        raise ConformanceError(self._message)


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


def _context(engine: Any, run: RunSpec, result: Any, measure: Any) -> MeasureContext:
    ctx = engine.context(run, result, measure.name)
    requires = measure.requires
    if "retrain" not in requires:
        ctx.retrainer = _Undeclared(measure.name, "retrainer", "retrain")
    if "init_weights" not in requires:
        ctx.initial_model = _Undeclared(measure.name, "initial_model", "init_weights")
    if "training_log" not in requires:
        ctx.training_log = _Undeclared(measure.name, "training_log", "training_log")
    return ctx


def _snapshot(ctx: MeasureContext) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.detach().clone() for k, v in ctx.model.state_dict().items()}
    state["train_inputs"] = ctx.train_inputs.clone()
    state["train_labels"] = ctx.train_labels.clone()
    return state


def _value(label: str, outcome: Any) -> float:
    if isinstance(outcome, Estimate):
        if not isinstance(outcome.details, dict):
            _fail(label, "Estimate.details must be a dict")
        outcome = outcome.value
    if isinstance(outcome, torch.Tensor):
        _fail(label, "compute returned a tensor; return a float (tensor.item()) or an Estimate")
    if isinstance(outcome, bool) or not isinstance(outcome, Real):
        _fail(label, f"compute must return a float or an Estimate, got {type(outcome).__name__}")
    return float(outcome)


def check_measure(measure: Any, options: Options | None = None, rtol: float = 1e-6) -> dict[str, float]:
    """Check ``measure`` (an instance, as registered, or its class) against the measure
    contract; returns its value on each check run, by architecture name. ``options`` default
    to the defaults; ``rtol`` is the tolerance of the same-value-twice check."""
    measure = measure() if isinstance(measure, type) else measure
    check_measure_metadata(measure)
    options = options if options is not None else measure.Options()
    engine, pairs = _check_runs()
    values: dict[str, float] = {}
    for run, result in pairs:
        label = f"measure {measure.name!r} on the {run.model.name} check run"
        ctx = _context(engine, run, result, measure)
        before, training = _snapshot(ctx), ctx.model.training
        try:
            value = _value(label, measure.compute(ctx, options))
        except ConformanceError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as the broken rule
            _fail(label, f"compute raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        if not math.isfinite(value):
            _fail(label, f"gave {value}; a measure's value must be finite")
        if measure.kind == "capability" and not 0.0 <= value <= 1.0:
            _fail(label, f"is a capability but gave {value}, outside [0, 1]")
        after = _snapshot(ctx)
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        if changed:
            _fail(label, f"changed {changed[0]} of the context; work on a copy (copy.deepcopy(ctx.model))")
        if ctx.model.training != training:
            _fail(label, "left the model in a different train/eval mode")
        again = _value(label, measure.compute(_context(engine, run, result, measure), options))
        if not math.isclose(value, again, rel_tol=rtol, abs_tol=1e-12):
            _fail(label, f"gave {value} and then {again} on a fresh context; draw randomness from ctx.generator")
        values[run.model.name] = value
    return values


# --------------------------------------------------------------------------- models
def check_model(model: Any, num_classes: int = 10, input_shapes: tuple[tuple[int, ...], ...] = INPUT_SHAPES) -> None:
    """Check a model factory (an instance, as registered, or its class) against the model contract."""
    model = model() if isinstance(model, type) else model
    name = getattr(model, "name", None)
    label = f"model {name!r}"
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        _fail(label, "name must be lower-case words joined by '-' (e.g. 'my-net')")
    if not isinstance(getattr(model, "description", None), str) or not model.description:
        _fail(label, "needs a one-line description")
    option_type = getattr(model, "Options", None)
    if not (isinstance(option_type, type) and issubclass(option_type, Options)):
        _fail(label, "Options must be a subclass of genbench.Options")
    if not isinstance(getattr(model, "vmappable", None), bool):
        _fail(label, "must say whether it is vmappable (a bool)")
    if getattr(model, "closed_form", False):
        return  # fitted in closed form: built from data by the engine, not by build()
    options = option_type()
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
            _fail(where, f"build raised {type(exc).__name__} ({exc}); raise genbench.errors.SpecError saying why")
        if not isinstance(module, nn.Module):
            _fail(where, f"build must return an nn.Module, got {type(module).__name__}")
        built += 1
        _check_logits(where, model, module, shape, num_classes)
    if not built:
        _fail(label, f"builds for none of the input shapes {list(input_shapes)}")


def _check_logits(where: str, model: Any, module: nn.Module, shape: tuple[int, ...], num_classes: int) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, *shape, generator=generator)
    module = module.eval()
    with torch.no_grad():
        logits = module(x)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (3, num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        _fail(where, f"logits for a batch of 3 must have shape (3, {num_classes}), got {got}")
    if not torch.isfinite(logits).all():
        _fail(where, "gives non-finite logits on standard-normal inputs")
    if not model.vmappable:
        return
    second = copy.deepcopy(module)
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    params, buffers = stack_module_state([module, second])
    base = copy.deepcopy(module).to("meta")
    try:
        with torch.no_grad():
            stacked = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)))(params, buffers, x.expand(2, *x.shape))
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        _fail(where, f"declares vmappable but vmap fails: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    with torch.no_grad():
        alone = torch.stack([module(x), second.eval()(x)])
    if not torch.allclose(stacked, alone, rtol=1e-4, atol=1e-5):
        _fail(where, "declares vmappable but a vmapped pair of copies differs from the copies one at a time")
