"""genbench: a benchmark for generalization measures of deep networks.

Importing genbench loads no plugins; the first registry access does.
"""

from __future__ import annotations

__version__ = "0.1.0"

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
]


def __getattr__(name: str):  # lazy: keep `import genbench` light
    if name in {"open_store", "run", "evaluate", "leaderboard"}:
        from genbench import api

        return getattr(api, name)
    if name in {"Measure", "MeasureContext"}:
        from genbench import measures

        return getattr(measures, name)
    raise AttributeError(name)
