"""Names and options to components: the grid expanded into normalized RunSpecs, measures resolved."""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import ValidationError

from genbench.errors import SpecError
from genbench.plugins import registry
from genbench.schemas import (
    ComponentRef,
    CorruptionSpec,
    ExperimentSpec,
    Options,
    RunSpec,
    format_validation_error,
)


def validated_options(kind: str, ref: ComponentRef | CorruptionSpec) -> Options:
    """The component's Options built from ``ref.options`` (unknown fields are errors)."""
    component = registry(kind).get(ref.name)
    try:
        return component.Options(**ref.options)
    except ValidationError as exc:
        noun = registry(kind).kind
        raise SpecError(f"invalid options for {noun} '{ref.name}': {format_validation_error(exc)}") from None


def normalized(kind: str, ref: ComponentRef) -> ComponentRef:
    """``ref`` with its options validated and every default filled in (stable run ids)."""
    options = validated_options(kind, ref)
    return ComponentRef(name=ref.name, options=options.model_dump(mode="json"))


def resolve_runs(spec: ExperimentSpec) -> list[RunSpec]:
    """Expand the grid, checking every name and option and normalizing options."""
    grids = spec.subgrids()
    datasets = {d.name + repr(d.options): normalized("datasets", d) for grid in grids for d in grid.datasets}
    models = {}
    for model in (model for grid in grids for model in grid.models):
        options = {k: v for k, v in model.options.items() if k != "train"}
        models[model.name + repr(options)] = normalized("models", ComponentRef(name=model.name, options=options))
    corruptions = {}
    for corruption in (corruption for grid in grids for corruption in grid.corruptions):
        options = {k: v for k, v in corruption.options.items() if k != "levels"}
        corruptions[corruption.name + repr(options)] = normalized(
            "corruptions", ComponentRef(name=corruption.name, options=options)
        )
    runs = []
    for run in spec.expand():
        runs.append(
            run.model_copy(
                update={
                    "dataset": datasets[run.dataset.name + repr(run.dataset.options)],
                    "model": models[run.model.name + repr(run.model.options)],
                    "corruption": run.corruption.model_copy(
                        update={"options": corruptions[run.corruption.name + repr(run.corruption.options)].options}
                    ),
                }
            )
        )
    seen: dict[str, RunSpec] = {}
    for run in runs:
        seen.setdefault(run.run_id, run)
    return list(seen.values())


def resolve_measures(refs: Iterable[ComponentRef] | None) -> list[tuple[Any, Options]]:
    """(measure, options) pairs; ``None`` = every registered measure with default options."""
    measures = registry("measures")
    if refs is None:
        return [(measure, measure.Options()) for _, measure in measures.items()]
    return [(measures.get(ref.name), validated_options("measures", ref)) for ref in refs]
