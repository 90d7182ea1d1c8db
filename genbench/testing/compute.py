"""One computation of a measure on a trained run, with every per-call rule checked: the
value's type and range, the context left as found, undeclared fields never read."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter

from genbench.measures.base import DECLARED_FIELDS, Estimate, MeasureContext, Undeclared
from genbench.schemas import Options, RunSpec
from genbench.testing._common import ConformanceError, fail, first_line

#: What the store accepts as an Estimate's details (``MeasureValue.details``).
_DETAILS = TypeAdapter(dict[str, float | int | str | None])


def measure_context(engine: Any, run: RunSpec, result: Any, measure: Any) -> tuple[MeasureContext, list[Undeclared]]:
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
    """The float a measure's outcome stands for: a real number, or an Estimate's value (its
    details must be what the store accepts)."""
    if isinstance(outcome, Estimate):
        try:
            _DETAILS.validate_python(outcome.details)
        except Exception as exc:  # noqa: BLE001 - reported as the broken rule
            fail(label, f"Estimate.details must map names to numbers, strings or None ({first_line(exc)})")
        outcome = outcome.value
    if isinstance(outcome, torch.Tensor):
        fail(label, "compute returned a tensor; return a float (tensor.item()) or an Estimate")
    if isinstance(outcome, (bool, np.bool_)) or not isinstance(outcome, Real):
        fail(label, f"compute must return a float or an Estimate, got {type(outcome).__name__}")
    return float(outcome)


def checked_compute(where: str, engine: Any, run: RunSpec, result: Any, measure: Any, options: Options) -> float:
    """One computation on a fresh context, with every per-call rule checked: undeclared fields
    are never read (also when the measure catches their error), the value is a finite float (in
    [0, 1] for a capability), the model's weights and modes and the training data are left
    as they were."""
    ctx, stand_ins = measure_context(engine, run, result, measure)
    before = _snapshot(ctx)
    try:
        outcome = measure.compute(ctx, options)
    except ConformanceError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        used = next((s for s in stand_ins if s.used), None)
        if used is not None:
            raise ConformanceError(used.message) from None
        fail(where, f"compute raised {first_line(exc)}")
    used = next((s for s in stand_ins if s.used), None)
    if used is not None:  # the measure caught the stand-in's error and went on
        raise ConformanceError(used.message)
    value = _value(where, outcome)
    if not math.isfinite(value):
        fail(where, f"gave {value}; on a fitted network a measure's value must be finite")
    if measure.kind == "capability" and not 0.0 <= value <= 1.0:
        fail(where, f"is a capability but gave {value}, outside [0, 1]")
    change = _changed(before, _snapshot(ctx))
    if change is not None:
        fail(where, change)
    return value
