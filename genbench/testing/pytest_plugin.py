"""genbench's pytest plugin (entry point ``pytest11``: ``genbench``): fixtures for testing
genbench components. Importing it trains nothing and loads no plugin; each fixture does its
work when a test first asks for it.

- ``genbench_check`` (session): the conformance checks, ``.measure`` / ``.model`` /
  ``.corruption`` / ``.dataset`` (``check_measure`` … ``check_dataset``) and
  ``.ConformanceError``.
- ``genbench_trained_run`` (session): a factory, ``genbench_trained_run(family, level=0.5,
  seed=0, model_options=None, dataset=None, train=None)``, giving the ``TrainedRun`` of a tiny
  run of model ``family`` (any registered model; the built-in families train in seconds on
  100 digits with labels corrupted at ``level``), trained once per session: ``.spec``
  (RunSpec), ``.result`` (RunResult), ``.context(measure)`` (a fresh MeasureContext, as the
  evaluate stage builds it) and ``.compute(measure, options=None)`` (the value, with the
  per-computation rules of ``check_measure`` checked).
- ``genbench_data_dir`` (session): a data folder with tiny ``cifar10``, ``mnist`` and
  ``fashion-mnist`` files in their standard formats, for ``check_dataset(..., data_dir=)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest


@pytest.fixture(scope="session")
def genbench_check() -> SimpleNamespace:
    """The conformance checks of ``genbench.testing``: ``.measure``, ``.model``,
    ``.corruption``, ``.dataset`` and ``.ConformanceError``."""
    from genbench.testing import (
        ConformanceError,
        check_corruption,
        check_dataset,
        check_measure,
        check_model,
    )

    return SimpleNamespace(
        measure=check_measure,
        model=check_model,
        corruption=check_corruption,
        dataset=check_dataset,
        ConformanceError=ConformanceError,
    )


@pytest.fixture(scope="session")
def genbench_trained_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``genbench_trained_run(family, level=0.5, seed=0, **changes)``: the TrainedRun of a tiny
    run of model ``family``, trained on first request into a store of the session's temporary
    folder and kept for the session."""
    from genbench.testing.runs import TrainedRuns

    runs = TrainedRuns(tmp_path_factory.mktemp("genbench-trained-runs"))
    yield runs
    runs.close()


@pytest.fixture(scope="session")
def genbench_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A data folder holding tiny ``cifar10``, ``mnist`` and ``fashion-mnist`` files."""
    from genbench.testing.datasets import write_tiny_data_dir

    return write_tiny_data_dir(tmp_path_factory.mktemp("genbench-data"))
