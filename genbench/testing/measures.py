"""``check_measure``: a measure's metadata, and its value on two small fitted runs."""

from __future__ import annotations

import math
from typing import Any

from genbench.protocols import MEASURE_KINDS, REQUIREMENTS
from genbench.schemas import Options
from genbench.testing._common import (
    ConformanceError,
    check_name,
    check_name_free,
    check_options_type,
    check_protocol,
    fail,
    instance,
    resolve_options,
)
from genbench.testing.compute import checked_compute
from genbench.testing.runs import CHECK_MODELS, check_runs

KINDS = MEASURE_KINDS


def _inherited_docstring_owner(cls: type) -> type | None:
    """The first base class (not ``object``) with a docstring of its own, when ``cls`` has none."""
    if cls.__dict__.get("__doc__"):
        return None
    return next((base for base in cls.__mro__[1:] if base is not object and base.__dict__.get("__doc__")), None)


def _check_measure_metadata_own_rules(measure: Any) -> None:
    """Check the metadata of ``measure`` (an instance or its class): a kebab-case name that no
    other distribution has registered, a kind in KINDS, a non-empty version string,
    ``requires`` within REQUIREMENTS, Options with defaults that survive JSON, a ``compute``
    method, and a docstring of the class's own (at least two lines: the formula and the source)."""
    measure = instance(measure)
    name = getattr(measure, "name", None)
    label = f"measure {name!r}"
    check_name(label, name, "my-measure")
    check_name_free("measures", label, measure)
    if getattr(measure, "kind", None) not in KINDS:
        fail(label, f"kind must be one of {KINDS}, got {getattr(measure, 'kind', None)!r}")
    version = getattr(measure, "version", None)
    if not isinstance(version, str) or not version:
        fail(label, f"version must be a non-empty string (bump it when values change), got {version!r}")
    requires = getattr(measure, "requires", None)
    if not isinstance(requires, (set, frozenset)) or not requires <= REQUIREMENTS:
        fail(label, f"requires must be a set within {sorted(REQUIREMENTS)}, got {requires!r}")
    check_options_type(label, measure)
    if not callable(getattr(measure, "compute", None)):
        fail(label, "has no compute(ctx, options) method")
    cls = type(measure)
    owner = _inherited_docstring_owner(cls)
    if owner is not None:
        fail(
            label,
            f"{cls.__name__} has no docstring of its own ({owner.__name__}'s is not inherited by genbench's "
            "catalogue); give its formula and source",
        )
    doc = cls.__doc__ or ""
    if len([line for line in doc.strip().splitlines() if line.strip()]) < 2:
        fail(label, "needs a docstring that gives its formula and its source")


def check_measure_metadata(measure: Any) -> None:
    """The kit's own rules for the metadata of ``measure`` (above), then the registry's protocol
    (``genbench.protocols``), so that what passes here also registers."""
    measure = instance(measure)
    _check_measure_metadata_own_rules(measure)
    check_protocol("measures", f"measure {getattr(measure, 'name', None)!r}", measure)


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
    measure = instance(measure)
    check_measure_metadata(measure)
    label = f"measure {measure.name!r}"
    options = resolve_options(label, measure, options)
    unknown = sorted(set(architectures) - {model for model, _ in CHECK_MODELS})
    if unknown or not architectures:
        fail(label, f"architectures must be among {[model for model, _ in CHECK_MODELS]}, got {list(architectures)}")
    engine, pairs = check_runs()
    values: dict[str, float] = {}
    for run, result in pairs:
        if run.model.name not in architectures:
            continue
        where = f"{label} on the {run.model.name} check run"
        value = checked_compute(where, engine, run, result, measure, options)
        again = checked_compute(where + " (computed again)", engine, run, result, measure, options)
        if not math.isclose(value, again, rel_tol=rtol, abs_tol=1e-12):
            fail(where, f"gave {value} and then {again} on a fresh context; draw randomness from ctx.generator")
        values[run.model.name] = value
    if set(values) != set(architectures):  # a check run that did not train must not pass unseen
        missing = sorted(set(architectures) - set(values))
        raise ConformanceError(f"{label}: the kit's {', '.join(missing)} check run is missing; its training failed")
    return values
