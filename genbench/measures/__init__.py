"""Built-in generalization measures, registered through the ``register_measures`` hook."""

from __future__ import annotations

from genbench.hookspecs import hookimpl
from genbench.measures.base import BaseMeasure, Measure, MeasureContext, NoOptions, TrainingLog, options_hash
from genbench.measures.capability import CrossValidation
from genbench.measures.capacity import EmpiricalRademacher, Params
from genbench.measures.margins import InverseMargin
from genbench.measures.norms import DistanceFromInit, PathNorm

BUILTIN_MEASURES = (Params, DistanceFromInit, InverseMargin, PathNorm, EmpiricalRademacher, CrossValidation)

__all__ = ["BaseMeasure", "Measure", "MeasureContext", "NoOptions", "TrainingLog", "options_hash"]


@hookimpl
def register_measures(register) -> None:
    for measure in BUILTIN_MEASURES:
        register(measure())
