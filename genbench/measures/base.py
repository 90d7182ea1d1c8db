"""The measure contract and the context a measure is computed in."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from pydantic import Field
from torch import nn

from genbench.errors import MeasureError
from genbench.schemas import Options, RunSpec, TrainConfig, TrainingRecord, content_hash

MeasureKind = Literal["complexity", "capability"]


class NoOptions(Options):
    """A measure without options."""


class SizeNormalizedOptions(Options):
    """Options of a complexity measure that can be normalized by the training-set size m."""

    normalize_by_m: bool = Field(
        False,
        description="normalize by the training-set size m as Dziugaite et al. 2020 do: "
        "sqrt(v/m), or 0.5·(v − log m) for a measure on a log scale",
        exclude_if=lambda value: value is False,
    )


def normalize_by_m(value: float, m: int, log_scale: bool) -> float:
    """Dziugaite et al. 2020's normalization of a complexity value v by m training examples:
    0.5·(v − log m) for a measure on a log scale, sqrt(v/m) otherwise (v ≥ 0; NaN for v < 0,
    ±∞ passes through)."""
    if math.isnan(value):
        return value
    if log_scale:
        return 0.5 * (value - math.log(m))
    if value < 0:
        return math.nan
    return math.sqrt(value / m)


@dataclass(frozen=True)
class Estimate:
    """A measure's value with what it reports beside it (e.g. ``{"stderr": 0.01, "sigma": 0.2}``).

    ``compute`` may return a plain float or an ``Estimate``; the details are stored with the value."""

    value: float
    details: dict[str, float | int | str | None] = field(default_factory=dict)


#: What a measure reads of how its run trained (``MeasureContext.training_log``, ``Retrained.log``).
TrainingLog = TrainingRecord


@dataclass(frozen=True)
class RetrainJob:
    """One network a measure needs trained: the run's architecture, trained with the run's recipe
    (or ``train``) on other labels, a subset of the examples or other inputs.

    - ``labels``: [n] int64, a label for every training example (ctx.train_labels reproduces the run);
    - ``seed``: the network's seed — initialization, data order and augmentation are drawn from it
      exactly as in training (ctx.spec.seed with the run's labels and recipe repeats the run);
    - ``train_indices``: [m] indices of the examples it trains on (default all n, in order; repeats
      allowed, e.g. one example replaced by a copy of another);
    - ``inputs``: [n, …] inputs instead of ctx.train_inputs (same n);
    - ``num_classes``: outputs of the network (default the dataset's), e.g. 2 for ±1 labelings;
    - ``train``: a recipe (``TrainConfig``) instead of the run's, e.g. another stopping rule.

    The evaluate stage gathers the jobs of the runs of a training group (up to ``RUNS_PER_BATCH`` at a time), trains identical jobs once
    (the same labels, seed, subset, inputs, classes and recipe give the same network), and trains the
    rest together as stacked ensembles."""

    labels: torch.Tensor
    seed: int
    train_indices: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    num_classes: int | None = None
    train: TrainConfig | None = None


@dataclass(frozen=True)
class Retrained:
    """A network trained for ``job``: ``model`` in eval mode on the context's device, and ``log``,
    how its training ended (None for a model fitted in closed form, which takes no steps)."""

    job: RetrainJob
    model: nn.Module
    log: TrainingRecord | None


class Retrainer(Protocol):
    """``ctx.retrainer`` of a measure that declares ``retrain``: trains jobs now, for this run alone
    (``RetrainingMeasure.compute`` uses it; the evaluate stage batches through ``jobs``/``finish``)."""

    def train(self, jobs: list[RetrainJob]) -> list[Retrained]: ...

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor: ...


@dataclass
class MeasureContext:
    """Everything a measure may look at for one run. Never the test set.

    ``model`` is the final network in eval mode on ``device``; ``train_inputs`` and
    ``train_labels`` the training set exactly as the model was trained on it (corrupted
    labels included); ``generator`` is seeded by the run and the measure's name. Only
    when declared in ``requires``: ``initial_model`` (init_weights), the same
    architecture at its initialization; ``training_log`` (training_log), how training
    ended; ``retrainer`` (retrain), training of the same architecture on other labels.
    Undeclared ones are stand-ins that fail on use.

    ``cache`` is shared by every measure of the run (the engine builds one context per
    run and measure around one cache per run): quantities several measures need —
    training margins, folded weights, σ searches, spectra — are computed once per run
    through ``cached``. Its keys name what is stored and every option it depends on.
    """

    spec: RunSpec
    model: nn.Module
    initial_model: nn.Module
    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    num_classes: int
    training_log: TrainingLog
    device: torch.device
    generator: torch.Generator
    retrainer: Any = None
    cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``cache[key]``, computed by ``compute()`` the first time any measure of the run asks."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_inputs.shape[1:])

    @property
    def num_train(self) -> int:
        return int(self.train_inputs.shape[0])


@runtime_checkable
class Measure(Protocol):
    """A generalization measure (see DESIGN: the measure contract).

    kind "complexity": larger predicts a larger generalization gap.
    kind "capability": an estimate in [0, 1] of how much better than chance the
    model does on clean test data (0 = chance); must be ≈ 0 at p_c = 1.
    """

    name: str
    kind: MeasureKind
    version: str
    requires: frozenset[str]
    Options: type[Options]

    def compute(self, ctx: MeasureContext, options: Any) -> float | Estimate: ...


class BaseMeasure:
    """Convenience base: no options, no requirements. Subclasses set the rest.

    ``source`` names the paper (and, where it differs, the code) the formula follows;
    ``log_scale`` says whether the value is on a log scale (for ``normalize_by_m``)."""

    name: ClassVar[str]
    kind: ClassVar[MeasureKind] = "complexity"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type[Options]] = NoOptions
    source: ClassVar[str] = ""
    log_scale: ClassVar[bool] = False

    def normalized(
        self, value: float, ctx: MeasureContext, options: Options, log_scale: bool | None = None
    ) -> float:
        """``value`` normalized by m when the options ask for it (see ``SizeNormalizedOptions``);
        ``log_scale`` overrides the class's for a measure whose scale is an option."""
        if getattr(options, "normalize_by_m", False):
            return normalize_by_m(value, ctx.num_train, self.log_scale if log_scale is None else log_scale)
        return value

    @property
    def description(self) -> str:
        doc = (type(self).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class RetrainingMeasure(BaseMeasure):
    """Base of a measure that trains networks: it describes them, the evaluate stage trains them.

    ``jobs(ctx, options)`` returns the ``RetrainJob`` list the measure needs for this run (possibly
    empty); ``finish(ctx, options, networks)`` gets one ``Retrained`` per job, in order, and returns
    the value. The evaluate stage calls ``jobs`` for the runs of a training group, trains all their
    jobs together (identical jobs once), then calls ``finish``. ``compute`` does both for one run
    through ``ctx.retrainer`` (for a measure used alone, and for the conformance kit); a subclass
    overrides ``jobs`` and ``finish``, never ``compute``. ``requires`` must contain "retrain"."""

    requires: ClassVar[frozenset[str]] = frozenset({"train_data", "retrain"})

    def jobs(self, ctx: MeasureContext, options: Any) -> list[RetrainJob]:
        raise NotImplementedError

    def finish(self, ctx: MeasureContext, options: Any, networks: list[Retrained]) -> float | Estimate:
        raise NotImplementedError

    def compute(self, ctx: MeasureContext, options: Any) -> float | Estimate:
        jobs = self.jobs(ctx, options)
        return self.finish(ctx, options, ctx.retrainer.train(jobs) if jobs else [])


def retrains(measure: Any) -> bool:
    """Whether ``measure`` hands its retraining to the evaluate stage (``jobs`` and ``finish``)."""
    return callable(getattr(measure, "jobs", None)) and callable(getattr(measure, "finish", None))


class Undeclared:
    """Stands in for a context field the measure did not declare in ``requires``: any use raises
    ``error`` (a MeasureError by default) naming the missing requirement, and is remembered in
    ``used`` in case the measure catches the error."""

    def __init__(self, measure: str, field: str, requirement: str, error: type[Exception] = MeasureError) -> None:
        object.__setattr__(self, "_message", f"measure {measure!r}: reads ctx.{field} without declaring {requirement!r} in requires")
        object.__setattr__(self, "_error", error)
        object.__setattr__(self, "used", False)

    @property
    def message(self) -> str:
        return self._message

    def _use(self) -> Exception:
        object.__setattr__(self, "used", True)
        return self._error(self._message)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # protocols probed by copy, pickle, …: not a use
            raise AttributeError(attribute)
        raise self._use()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self._use()

    def __iter__(self):
        raise self._use()

    def __len__(self) -> int:
        raise self._use()

    def __bool__(self) -> bool:
        raise self._use()

    def __deepcopy__(self, memo: dict) -> "Undeclared":  # copying the context is not a use
        return self


#: Context fields that only a declared requirement provides: (field, requirement).
DECLARED_FIELDS = (("retrainer", "retrain"), ("initial_model", "init_weights"), ("training_log", "training_log"))


def with_stand_ins(ctx: MeasureContext, measure: Any, error: type[Exception] = MeasureError) -> list[Undeclared]:
    """Replace the fields of ``ctx`` that ``measure`` did not declare with stand-ins; returns them."""
    stand_ins = []
    for field_name, requirement in DECLARED_FIELDS:
        if requirement not in measure.requires:
            stand_in = Undeclared(measure.name, field_name, requirement, error)
            setattr(ctx, field_name, stand_in)
            stand_ins.append(stand_in)
    return stand_ins


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (restored afterwards, also on error).

    For small computations (matrices of at most a few thousand columns), which gain nothing
    from a second thread; on a busy shared CPU two OpenMP threads waiting on each other made
    them 10–25× slower (a 512×64 Gram matrix: 2 ms on one thread, 55 ms on two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def on_cpu_one_thread(ctx: MeasureContext):
    """``one_intra_op_thread`` when the context's device is the CPU; nothing on other devices."""
    return one_intra_op_thread() if ctx.device.type == "cpu" else nullcontext()


def standard_error(values: torch.Tensor) -> float:
    """Sample standard deviation (ddof 1) / √n of ``values``; NaN for fewer than two values."""
    n = values.numel()
    return (values.double().std(unbiased=True) / math.sqrt(n)).item() if n > 1 else math.nan


def options_hash(options: Options) -> str:
    return content_hash(options.model_dump(mode="json"))
