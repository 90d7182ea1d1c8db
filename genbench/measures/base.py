"""The measure contract and the context a measure is computed in."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from pydantic import Field
from torch import nn

from genbench.schemas import Options, RunSpec, content_hash

MeasureKind = Literal["complexity", "capability"]
REQUIREMENTS = frozenset({"init_weights", "train_data", "training_log", "retrain"})


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


@dataclass(frozen=True)
class TrainingLog:
    """What training recorded, without anything computed on test data."""

    status: str
    steps: int
    epochs: float
    steps_to_fit: int | None
    train_accuracy: float
    train_loss: float
    loss_curve: list[tuple[int, float]]

    @classmethod
    def of(cls, record: Any) -> TrainingLog:
        """The log of a stored ``RunResult`` or a trainer's ``MemberOutcome`` (same field names)."""
        return cls(
            status=record.status,
            steps=record.steps,
            epochs=record.epochs,
            steps_to_fit=record.steps_to_fit,
            train_accuracy=record.train_accuracy,
            train_loss=record.train_loss,
            loss_curve=list(record.loss_curve),
        )


@dataclass
class MeasureContext:
    """Everything a measure may look at for one run. Never the test set.

    ``model`` is the final network in eval mode on ``device``; ``initial_model``
    the same architecture at its initialization; ``train_inputs`` and
    ``train_labels`` the training set exactly as the model was trained on it
    (corrupted labels included); ``retrainer`` trains the same architecture with
    the same recipe on other labels (for measures that declare ``retrain``).
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


def tensor_digest(named: Iterable[tuple[str, torch.Tensor]], salt: str = "") -> str:
    """sha256 of named tensors (names, shapes, dtypes and values; bfloat16 hashed as float32),
    after ``salt``: the key of the caches that measures keep across contexts."""
    digest = hashlib.sha256(salt.encode())
    for name, tensor in named:
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update((value.float() if value.dtype == torch.bfloat16 else value).numpy().tobytes())
    return digest.hexdigest()


def on_cpu_one_thread(ctx: MeasureContext):
    """``one_intra_op_thread`` when the context's device is the CPU; nothing on other devices."""
    return one_intra_op_thread() if ctx.device.type == "cpu" else nullcontext()


def standard_error(values: torch.Tensor) -> float:
    """Sample standard deviation (ddof 1) / √n of ``values``; NaN for fewer than two values."""
    n = values.numel()
    return (values.double().std(unbiased=True) / math.sqrt(n)).item() if n > 1 else math.nan


def options_hash(options: Options) -> str:
    return content_hash(options.model_dump(mode="json"))
