"""Every record that crosses a boundary: specs in, results out (pydantic v2)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genbench.errors import SpecError

JSON_CONFIG = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


class Options(BaseModel):
    """Base class of every component's options: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every content hash."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)


def content_hash(data: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:length]


class ComponentRef(BaseModel):
    """A registered component by name, with its options.

    In TOML either a bare name (``"mlp"``) or a table whose keys other than
    ``name`` are options (``{ name = "mlp", hidden = [256, 256] }``).
    """

    model_config = JSON_CONFIG
    name: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_short_forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" in value and "options" not in value:
            rest = {k: v for k, v in value.items() if k != "name"}
            return {"name": value["name"], "options": rest}
        return value

    def label(self) -> str:
        if not self.options:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}({inner})"




#: A seed: an integer in [0, 2^63), what numpy's and torch's generators take.
Seed = Annotated[int, Field(ge=0, lt=2**63, description="an integer in [0, 2^63)")]


def _check_level(value: float) -> float:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"corruption level p_c must be in [0, 1], got {value}")
    return float(value)


class CorruptionSpec(BaseModel):
    """One corruption of the training data: kind, level p_c in [0, 1], seed."""

    model_config = JSON_CONFIG
    name: str = "labels"
    level: float = 0.0
    seed: Seed = 0
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("level")
    @classmethod
    def _level_in_unit_interval(cls, value: float) -> float:
        return _check_level(value)


class TrainConfig(BaseModel):
    """How a network is trained (Zhang et al. 2017's recipe by default).

    SGD with momentum; the learning rate is multiplied by ``lr_decay`` every
    epoch (``schedule = "exponential"``), every ``step_epochs`` epochs
    (``"step"``) or never (``"constant"``). Training stops when a member reaches
    ``target_accuracy`` on its training set (``stop = "accuracy"``) or a mean
    training cross-entropy at most ``loss_threshold`` (``stop = "loss"``), or
    when ``max_steps`` optimizer steps are spent. With ``early_stopping_patience``
    a held-out ``validation_fraction`` of the training examples is never trained
    on, and a member also stops after that many epochs without a better accuracy
    on it ("early-stopped"), keeping its best epoch's weights.
    """

    model_config = JSON_CONFIG
    optimizer: Literal["sgd"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(128, gt=0)
    schedule: Literal["constant", "exponential", "step"] = "exponential"
    lr_decay: float = Field(0.95, gt=0, le=1)
    step_epochs: int = Field(30, gt=0)
    stop: Literal["accuracy", "loss"] = "accuracy"
    target_accuracy: float = Field(1.0, gt=0, le=1)
    loss_threshold: float = Field(0.01, gt=0)
    max_steps: int = Field(20_000, gt=0)
    # Fields added after the first release are left out of the serialized form while
    # they hold their default, so the run ids of earlier specs do not change.
    augment: bool = Field(
        False,
        description="random crop (zero padding) and horizontal flip of image inputs",
        exclude_if=lambda value: value is False,
    )
    augment_padding: int = Field(
        4, ge=0, description="padding of the random crop, in pixels", exclude_if=lambda value: value == 4
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="stop a member after this many epochs without a better held-out accuracy, keeping the "
        "weights of its best epoch (None: no early stopping)",
        exclude_if=lambda value: value is None,
    )
    validation_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="with early stopping: the fraction of each member's training examples held out (never trained on)",
        exclude_if=lambda value: value == 0.1,
    )


#: The embedded default grid's recipe: Zhang et al.'s SGD with momentum 0.9 and batch
#: 128, but a constant learning rate of 0.05 — with only 11 steps per epoch on
#: digits, ×0.95 per epoch would freeze training before random labels are fitted.
DEFAULT_EXPERIMENT_TRAIN = TrainConfig(lr=0.05, schedule="constant", max_steps=5_000)


class RunSpec(BaseModel):
    """One training run: frozen; ``run_id`` is the hash of its canonical JSON."""

    model_config = JSON_CONFIG
    dataset: ComponentRef
    model: ComponentRef
    corruption: CorruptionSpec
    train: TrainConfig = Field(default_factory=TrainConfig)
    seed: Seed = 0
    test_labels: Literal["clean", "corrupted"] = "clean"

    def canonical(self) -> str:
        return canonical_json(self.model_dump(mode="json"))

    @property
    def run_id(self) -> str:
        return content_hash(self.model_dump(mode="json"))

    def group_key(self) -> str:
        """Runs with equal keys share data shape, architecture and recipe: one ensemble."""
        return content_hash(
            {
                "dataset": self.dataset.model_dump(mode="json"),
                "model": self.model.model_dump(mode="json"),
                "train": self.train.model_dump(mode="json"),
                "corruption": self.corruption.name,
                "corruption_options": self.corruption.options,
                "test_labels": self.test_labels,
            }
        )


#: The fields a sub-grid (``ExperimentSpec.grids``) may set; the others belong to the experiment.
SUBGRID_FIELDS = ("datasets", "models", "corruptions", "levels", "seeds", "train", "test_labels")


class ExperimentSpec(BaseModel):
    """A grid of runs: the cartesian product of datasets × models × corruptions ×
    levels × seeds, all trained with one ``train`` recipe, then ``measures``
    evaluated on every run (``None`` = every registered measure).

    With ``grids``, the experiment is the union of several such products: each entry is a
    table of the fields in ``SUBGRID_FIELDS`` that replace the experiment's own (its ``train``
    table is applied over the experiment's), e.g. the randomization tests of every model
    beside regularized models at p_c = 0 and 1 only (a fractional design). A run that two
    sub-grids share is trained once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "experiment"
    datasets: list[ComponentRef] = Field(default_factory=lambda: [ComponentRef(name="digits")], min_length=1)
    models: list[ComponentRef] = Field(
        default_factory=lambda: [ComponentRef(name="mlp"), ComponentRef(name="cnn")], min_length=1
    )
    corruptions: list[ComponentRef] = Field(default_factory=lambda: [ComponentRef(name="labels")], min_length=1)
    levels: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], min_length=1)
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1], min_length=1)
    train: TrainConfig = Field(default_factory=lambda: DEFAULT_EXPERIMENT_TRAIN)
    measures: list[ComponentRef] | None = None
    test_labels: Literal["clean", "corrupted"] = "clean"
    grids: list[dict[str, Any]] | None = None

    @field_validator("grids")
    @classmethod
    def _grids_set_grid_fields(cls, grids: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if grids is None:
            return None
        if not grids:
            raise ValueError("grids must list at least one sub-grid (or be left out)")
        for index, grid in enumerate(grids):
            unknown = sorted(set(grid) - set(SUBGRID_FIELDS))
            if unknown:
                raise ValueError(
                    f"sub-grid {index}: unknown field {unknown[0]!r} (a sub-grid may set {', '.join(SUBGRID_FIELDS)})"
                )
        return grids

    def size(self) -> tuple[int, int]:
        """(runs, training groups) the grid spans, counted without expanding it: an upper bound
        on the runs (sub-grids that share runs count them twice) and the groups of the
        product's datasets × models × corruptions."""
        runs = groups = 0
        for grid in self.subgrids():
            levels = sum(len(grid.corruption_levels(corruption)) for corruption in grid.corruptions)
            runs += len(grid.datasets) * len(grid.models) * levels * len(grid.seeds)
            groups += len(grid.datasets) * len(grid.models) * len(grid.corruptions)
        return runs, groups

    def subgrids(self) -> list["ExperimentSpec"]:
        """The products whose union is the experiment: itself without ``grids``, else one spec per
        entry of ``grids`` (the entry's fields over the experiment's, ``train`` merged)."""
        if self.grids is None:
            return [self]
        base = self.model_dump(mode="json", exclude_none=True, exclude={"grids"})
        specs = []
        for index, grid in enumerate(self.grids):
            data = {**base, **grid}
            if "train" in grid:
                if not isinstance(grid["train"], dict):
                    raise SpecError(f"sub-grid {index} of '{self.name}': train must be a table, got {grid['train']!r}")
                data["train"] = {**base.get("train", {}), **grid["train"]}
            specs.append(parse_spec(ExperimentSpec, data, source=f"sub-grid {index} of experiment '{self.name}'"))
        return specs

    @field_validator("levels")
    @classmethod
    def _levels_in_unit_interval(cls, values: list[float]) -> list[float]:
        return [_check_level(v) for v in values]

    def corruption_levels(self, corruption: ComponentRef) -> list[float]:
        """The levels of one corruption entry: its own ``levels`` option, else ``levels``."""
        own = corruption.options.get("levels")
        if own is None:
            return list(self.levels)
        if not isinstance(own, list) or not own:
            raise SpecError(f"levels of corruption '{corruption.name}' must be a non-empty list, got {own!r}")
        try:
            return [_check_level(level) for level in own]
        except ValueError as exc:
            raise SpecError(f"corruption '{corruption.name}': {exc}") from None

    def model_train(self, model: ComponentRef) -> TrainConfig:
        """The recipe of one model entry: ``train`` with the entry's own ``train`` table applied."""
        own = model.options.get("train")
        if own is None:
            return self.train
        if not isinstance(own, dict):
            raise SpecError(f"train of model '{model.name}' must be a table, got {own!r}")
        return parse_spec(TrainConfig, {**self.train.model_dump(), **own}, source=f"train of model '{model.name}'")

    def expand(self) -> list[RunSpec]:
        """The grid, one RunSpec per cell; the corruption seed equals the run seed (with
        ``grids``: every sub-grid's runs in turn).

        A corruption entry may carry its own ``levels`` (e.g. the label-noise sweep
        beside pixel corruptions at p_c = 1), and a model entry its own ``train``
        table (e.g. Zhang et al.'s lr 0.1 for Inception); the others use the spec's."""
        if self.grids is not None:
            return [run for grid in self.subgrids() for run in grid.expand()]
        runs = []
        for dataset, model, corruption, seed in itertools.product(
            self.datasets, self.models, self.corruptions, self.seeds
        ):
            options = {k: v for k, v in corruption.options.items() if k != "levels"}
            model_ref = ComponentRef(name=model.name, options={k: v for k, v in model.options.items() if k != "train"})
            train = self.model_train(model)
            for level in self.corruption_levels(corruption):
                runs.append(
                    RunSpec(
                        dataset=dataset,
                        model=model_ref,
                        corruption=CorruptionSpec(name=corruption.name, level=level, seed=seed, options=options),
                        train=train,
                        seed=seed,
                        test_labels=self.test_labels,
                    )
                )
        return runs

    @classmethod
    def from_toml(cls, path: str | Path) -> "ExperimentSpec":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"experiment file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"malformed TOML in {path}: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read experiment file {path}: {exc}") from None
        return parse_spec(cls, data, source=str(path))


def parse_spec(model: type[BaseModel], data: Any, source: str) -> Any:
    """Validate ``data`` as ``model``; a failure becomes one SpecError line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid {source}: {format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{location}: {message}")
    return "; ".join(parts)


RunStatus = Literal["converged", "budget", "diverged", "early-stopped"]


class TrainingRecord(BaseModel):
    """How training one network ended: the record the trainer returns (``MemberOutcome``), the store
    keeps (``RunResult``) and a measure reads (``MeasureContext.training_log``) — never test data.

    ``status``: "converged" (reached the stopping criterion), "budget" (spent ``max_steps``),
    "diverged" (a non-finite loss) or "early-stopped"; ``loss_curve``: (step, epoch-mean
    minibatch cross-entropy) per epoch; ``steps_to_fit``: the step it converged at (else None)."""

    model_config = JSON_CONFIG
    status: RunStatus
    steps: int
    epochs: float
    steps_to_fit: int | None
    train_accuracy: float
    train_loss: float
    loss_curve: list[tuple[int, float]] = Field(default_factory=list)

    @classmethod
    def of(cls, record: "TrainingRecord") -> "TrainingRecord":
        """The training record alone, out of a ``RunResult`` or a ``MemberOutcome``."""
        return cls(**{name: getattr(record, name) for name in cls.model_fields})


class ComponentOrigin(BaseModel):
    """Where a registered component came from: the plugin that registered it, and that plugin's
    distribution and version ("genbench", "genbench", "0.1.0" for the built-ins). Built from
    anything with those three attributes (``genbench.registry.Origin``)."""

    model_config = JSON_CONFIG
    plugin: str
    distribution: str
    version: str

    @classmethod
    def of(cls, origin: Any) -> "ComponentOrigin":
        return cls(plugin=origin.plugin, distribution=origin.distribution, version=origin.version)

    def __str__(self) -> str:
        return f"{self.distribution} {self.version}"


#: The components of a run whose origins ``RunResult.components`` records.
RUN_COMPONENTS = ("dataset", "model", "corruption")


class RunResult(TrainingRecord):
    """What training one RunSpec produced: its training record, then what was measured on the
    test set and the run's facts. ``gap`` = train accuracy − clean test accuracy."""

    model_config = JSON_CONFIG
    run_id: str
    test_accuracy: float
    test_loss: float
    gap: float
    wall_time: float
    device: str
    num_train: int
    num_test: int
    num_classes: int
    num_parameters: int
    labels_changed: float = Field(description="fraction of training labels that differ from the true ones")
    diagnostics: dict[str, float] = Field(
        default_factory=dict, description="model-specific numbers, e.g. a closed-form fit's residual or RKHS norm"
    )
    genbench_version: str
    labels_uninformative: bool | None = Field(
        None,
        description="whether the training labels carry no information about the inputs (a corruption that is "
        "uninformative at p_c = 1, at p_c = 1): where a capability score must be 0; None in stores written "
        "before it was recorded",
    )
    components: dict[str, ComponentOrigin] = Field(
        default_factory=dict,
        description="the origin (plugin, distribution, version) of the run's dataset, model and corruption, "
        "by component (keys of RUN_COMPONENTS); empty in stores written before it was recorded",
    )


ValueStatus = Literal["ok", "failed", "skipped"]
MeasureKind = Literal["complexity", "capability"]


class MeasureValue(BaseModel):
    """One measure evaluated on one run.

    ``status``: "ok"; "failed" (NaN value, ``error`` says why; computed again next time); or
    "skipped" (the measure does not apply to the run, e.g. it diverged; ``error`` says why; not
    computed again). ``kind`` and ``default_options`` (whether ``options`` are the measure's
    defaults) are recorded so that scoring needs nothing but the store."""

    model_config = JSON_CONFIG
    run_id: str
    measure: str
    version: str
    options_hash: str
    options: dict[str, Any]
    value: float
    seconds: float
    error: str | None = None
    details: dict[str, float | int | str | None] = Field(
        default_factory=dict, description="what the measure reports beside its value (standard error, σ found, …)"
    )
    status: ValueStatus = "ok"
    kind: MeasureKind | None = None
    default_options: bool | None = None
    genbench_version: str | None = Field(None, description="the genbench that computed the value (None: stored before it was recorded)")
    plugin: str | None = Field(
        None,
        description="the distribution that registered the measure (\"genbench\" for the built-ins; None: stored "
        "before it was recorded, or a measure of no plugin)",
    )
    plugin_version: str | None = Field(None, description="the version of ``plugin``'s distribution")

    @model_validator(mode="before")
    @classmethod
    def _status_from_error(cls, data: Any) -> Any:
        """Without a status, a value with an error has failed; an "ok" value has no error."""
        if isinstance(data, dict) and data.get("status") is None:
            data = {**data, "status": "failed" if data.get("error") else "ok"}
        if isinstance(data, dict) and data.get("status") == "ok" and data.get("error"):
            raise ValueError("a value with an error cannot have status 'ok'")
        return data


#: A capability score passes the corruption axiom when its mean over the runs whose labels carry
#: no information is within this of 0 (``MeasureScore.axiom``).
AXIOM_TOLERANCE = 0.05


class MeasureScore(BaseModel):
    """How well one measure, at one set of options, predicts the generalization gap over a set of
    runs: one row of the leaderboard (see ``genbench.scoring.score_measures``).

    Scores are oriented so that larger is better: a capability score enters negated (the
    conditional mutual information is symmetric and the sign-error is lower-is-better). Any score
    may be NaN (undefined, e.g. for a constant measure) and a value ±inf; JSON carries both.
    Intervals are 95 % percentile-bootstrap intervals over the grid's cells (seeds together)."""

    model_config = JSON_CONFIG
    measure: str = Field(description="the row's label: the measure's name, with [k=v,...] when not at its default options")
    kind: Literal["complexity", "capability", "reference"]
    reference: bool = Field(False, description="a reference row (a noisy oracle), not a measure")
    runs: int = Field(description="how many values were scored")
    runs_total: int = Field(0, description="how many runs the board has (runs < runs_total: partly evaluated)")
    partial: bool = Field(False, description="the measure has values on fewer of the board's runs than the best-covered measure")
    tau_gap: float = Field(description="Kendall tau-b with the gap over all runs")
    tau_gap_low: float = Field(float("nan"), description="tau_gap's 95 % bootstrap interval, lower end")
    tau_gap_high: float = Field(float("nan"), description="tau_gap's 95 % bootstrap interval, upper end")
    psi: float = Field(description="granulated Kendall: the mean of psi_axes' defined values")
    psi_low: float = Field(float("nan"), description="psi's 95 % bootstrap interval, lower end")
    psi_high: float = Field(float("nan"), description="psi's 95 % bootstrap interval, upper end")
    psi_axes: dict[str, float] = Field(
        default_factory=dict, description="granulated Kendall's psi per grid axis that varies over the runs"
    )
    cmi: float = Field(float("nan"), description="PGDL conditional mutual information with the gap, x100, min over conditioning sets")
    sign_error_mean: float = Field(float("nan"), description="Dziugaite et al.'s sign-error: mean over environments (lower is better)")
    sign_error_p90: float = Field(float("nan"), description="sign-error: 90th percentile over environments")
    sign_error_max: float = Field(float("nan"), description="sign-error: max over environments (the robust view)")
    sign_error_environments: int = Field(0, description="environments that passed the effective-size filter")
    tau_level: float = Field(description="tau-b with the corruption level p_c within each corruption, averaged")
    axiom: Literal["pass", "fail", "n/a"] = Field(
        description="capability scores: the corruption axiom, whole (axiom_zero and axiom_monotone both pass)"
    )
    axiom_value: float | None = Field(None, description="the mean score where training labels carry no information (None where n/a)")
    axiom_zero: Literal["pass", "fail", "n/a"] = Field(
        "n/a", description="capability scores: whether the score is ≈ 0 where training labels carry no information"
    )
    axiom_monotone: Literal["pass", "fail", "n/a"] = Field(
        "n/a", description="capability scores: whether the mean score per level does not rise with p_c (within the tolerance)"
    )
    axiom_rise: float | None = Field(None, description="the largest rise of the mean score from one level to a higher one")
    value_clean: float = Field(description="mean value at the lowest corruption level")
    value_noise: float = Field(description="mean value at the highest corruption level")
    seconds_per_run: float = Field(description="mean seconds its values took")
    name: str = Field(description="the measure's name (\"oracle\" for the reference rows)")
    plugin: str | None = Field(
        None,
        description="the distribution that registered the measure, as its scored values recorded (several "
        "comma-separated, oldest first; None where none did, and for the reference rows)",
    )
    plugin_version: str | None = Field(None, description="the version(s) of plugin's distribution the scored values recorded")
    genbench_version: str | None = Field(None, description="the genbench version(s) that computed the scored values")
