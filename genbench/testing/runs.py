"""Small trained runs to check measures on: the two check runs of ``check_measure`` and a tiny
run of each built-in model family (``TrainedRuns``, the pytest plugin's
``genbench_trained_run``)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from genbench.measures.base import MeasureContext
from genbench.schemas import (
    ComponentRef,
    CorruptionSpec,
    Options,
    RunResult,
    RunSpec,
    TrainConfig,
)
from genbench.testing._common import ConformanceError, instance, resolve_options
from genbench.testing.compute import checked_compute, measure_context

#: The runs every measure is checked on (architectures and their options).
CHECK_MODELS = (("mlp", {"hidden": [32]}), ("cnn", {"channels": [4, 8]}))
CHECK_TRAIN = TrainConfig(lr=0.05, schedule="constant", max_steps=2000)

#: The data of a family's tiny run: 100 of the digits (8×8, 10 classes), which every built-in
#: architecture takes.
FAMILY_DATASET = ComponentRef(name="digits", options={"subset": 100})
_QUICK = TrainConfig(lr=0.05, schedule="constant", batch_size=50, max_steps=200)
_SHORT = TrainConfig(lr=0.01, schedule="constant", batch_size=50, max_steps=40)
#: model name -> (its options, its recipe) for the tiny run of each built-in family (read-only;
#: seconds each on a CPU). The large convolutional nets get a few dozen steps (they need not fit); a
#: model not listed here gets its default options and the first recipe.
FAMILY_RUNS: Mapping[str, tuple[dict[str, Any], TrainConfig]] = MappingProxyType({
    "mlp": ({"hidden": [32]}, _QUICK),
    "cnn": ({"channels": [4, 8]}, _QUICK),
    "mlp-1x512": ({}, _QUICK),
    "mlp-3x512": ({}, _QUICK),
    "small-alexnet": ({}, _SHORT),
    "small-inception": ({}, _SHORT),
    "small-inception-nobn": ({}, _SHORT),
    "interpolation": ({}, _QUICK),
    "kernel": ({}, _QUICK),
})


@lru_cache(maxsize=1)
def check_runs() -> tuple[Any, list[tuple[RunSpec, Any]]]:
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


@dataclass(frozen=True)
class TrainedRun:
    """A trained run kept for checks: its ``spec`` (RunSpec), its ``result`` (RunResult) and the
    ``engine`` whose store holds its checkpoints."""

    spec: RunSpec
    result: RunResult
    engine: Any

    def context(self, measure: Any) -> MeasureContext:
        """A fresh MeasureContext of this run for ``measure``, built as the evaluate stage builds
        it (only what ``measure.requires`` declares; undeclared fields are stand-ins that raise
        ConformanceError on use), with the training data copied."""
        return measure_context(self.engine, self.spec, self.result, instance(measure))[0]

    def compute(self, measure: Any, options: Options | dict | None = None) -> float:
        """``measure``'s value on this run (default options unless given), with the rules
        ``check_measure`` checks on each computation: a finite float (in [0, 1] for a
        capability), the context left as found, undeclared fields never read."""
        measure = instance(measure)
        label = f"measure {getattr(measure, 'name', type(measure).__name__)!r}"
        options = resolve_options(label, measure, options)
        where = f"{label} on the {self.spec.model.name} run"
        return checked_compute(where, self.engine, self.spec, self.result, measure, options)


class TrainedRuns:
    """Trains tiny runs on demand, each once, into a store under ``root``:
    ``runs(family, level=0.5, seed=0)`` is the TrainedRun of model ``family`` on 100 digits
    with labels corrupted at ``level``. ``model_options`` replace the family's options (see
    ``FAMILY_RUNS``), ``dataset`` (a ComponentRef or a dict) the 100 digits, ``train`` its recipe."""

    def __init__(self, root: str | Path, device: str = "cpu") -> None:
        self.root = Path(root)
        self.device = device
        self._engine: Any = None
        self._runs: dict[str, TrainedRun] = {}

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from genbench.engine import Engine
            from genbench.store import Store

            self._engine = Engine(Store(self.root / "store"), device=self.device)
        return self._engine

    def spec(
        self,
        family: str,
        level: float = 0.5,
        seed: int = 0,
        model_options: dict[str, Any] | None = None,
        dataset: ComponentRef | dict | None = None,
        train: TrainConfig | None = None,
    ) -> RunSpec:
        """The RunSpec of the tiny run of ``family`` (a registered model name)."""
        from genbench.plugins import registry

        registry("models").get(family)  # an unknown name: one line with the names available
        options, recipe = FAMILY_RUNS.get(family, ({}, _QUICK))
        data = FAMILY_DATASET if dataset is None else ComponentRef.model_validate(dataset)
        return RunSpec(
            dataset=data,
            model=ComponentRef(name=family, options=options if model_options is None else model_options),
            corruption=CorruptionSpec(name="labels", level=level),
            train=train or recipe,
            seed=seed,
        )

    def __call__(self, family: str, level: float = 0.5, seed: int = 0, **changes: Any) -> TrainedRun:
        spec = self.spec(family, level, seed, **changes)
        if spec.run_id not in self._runs:
            engine = self.engine
            engine.train([spec])
            pairs = list(engine.store.iter_runs([spec.run_id]))
            if not pairs:
                raise ConformanceError(f"model {family!r}: its tiny run did not train (run {spec.run_id})")
            self._runs[spec.run_id] = TrainedRun(spec=pairs[0][0], result=pairs[0][1], engine=engine)
        return self._runs[spec.run_id]

    def close(self) -> None:
        """Close the engine (its executor)."""
        if self._engine is not None:
            self._engine.close()
