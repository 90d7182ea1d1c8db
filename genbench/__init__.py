"""genbench: a benchmark for generalization measures of deep networks.

Importing genbench loads no plugins; the first registry access does.
"""

from __future__ import annotations

from genbench.version import __version__

from genbench.errors import DataError, GenbenchError, MeasureError, NotApplicable, SpecError
from genbench.hookspecs import hookimpl
from genbench.schemas import ExperimentSpec, Options, RunSpec, TrainConfig

__all__ = [
    "__version__",
    "hookimpl",
    "Options",
    "ExperimentSpec",
    "RunSpec",
    "TrainConfig",
    "open_store",
    "run",
    "evaluate",
    "leaderboard",
    "BaseMeasure",
    "Estimate",
    "Measure",
    "MeasureContext",
    "RetrainingMeasure",
    "RetrainJob",
    "Retrained",
    "GenbenchError",
    "SpecError",
    "DataError",
    "MeasureError",
    "NotApplicable",
    "ProgressEvent",
]

_MEASURE_CONTRACT = {"BaseMeasure", "Estimate", "Measure", "MeasureContext", "RetrainingMeasure", "RetrainJob", "Retrained"}


def __getattr__(name: str):  # lazy: keep `import genbench` light
    if name in {"open_store", "run", "evaluate", "leaderboard"}:
        from genbench import api

        return getattr(api, name)
    if name == "ProgressEvent":
        from genbench.report.progress import ProgressEvent

        return ProgressEvent
    if name in _MEASURE_CONTRACT:
        from genbench import measures

        return getattr(measures, name)
    raise AttributeError(name)
