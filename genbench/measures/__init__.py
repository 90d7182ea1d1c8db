"""Built-in generalization measures, registered through the ``register_measures`` hook.

Each module of a measure family lists its measures in ``MEASURES``; this package
registers them all, in the order of ``FAMILIES``.
"""

from __future__ import annotations

import importlib

from genbench.hookspecs import hookimpl
from genbench.measures.base import (
    BaseMeasure,
    Estimate,
    Measure,
    MeasureContext,
    NoOptions,
    Retrained,
    RetrainingMeasure,
    RetrainJob,
    SizeNormalizedOptions,
    TrainingLog,
    options_hash,
)

FAMILIES = (
    "capacity",
    "norms",
    "margins",
    "outputs",
    "pacbayes",
    "sharpness",
    "curvature",
    "heavy_tail",
    "stability",
    "memorization",
    "optimization",
    "capability",
)

__all__ = [
    "BaseMeasure",
    "Estimate",
    "Measure",
    "MeasureContext",
    "NoOptions",
    "Retrained",
    "RetrainingMeasure",
    "RetrainJob",
    "SizeNormalizedOptions",
    "TrainingLog",
    "options_hash",
    "builtin_measures",
]


def builtin_measures() -> list[type]:
    """The measure classes of every family module, in order."""
    classes = []
    for family in FAMILIES:
        classes.extend(importlib.import_module(f"genbench.measures.{family}").MEASURES)
    return classes


@hookimpl
def register_measures(register) -> None:
    for measure in builtin_measures():
        register(measure())
