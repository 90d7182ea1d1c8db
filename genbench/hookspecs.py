"""The genbench plugin hooks. Their docstrings are the plugin specification.

A plugin is a module (usually a distribution ``genbench-<thing>`` with module
``genbench_<thing>``) that declares an entry point in the group ``genbench``::

    [project.entry-points.genbench]
    thing = "genbench_thing"

and implements any of the hooks below with ``@genbench.hookimpl``. Each hook
receives a ``register`` callback; call it once per component. genbench stamps
every component with the plugin and distribution it came from, so that errors
name their origin. Hooks evolve by gaining keyword arguments (an implementation
may accept a subset), never by look-alike hooks.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "genbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[Any], None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: ``register(dataset)`` where ``dataset`` satisfies
    :class:`genbench.datasets.DatasetFactory` (``name``, ``description``,
    ``Options`` (a :class:`genbench.Options` subclass) and
    ``load(options, data_dir) -> genbench.datasets.Dataset``)."""


@hookspec
def register_corruptions(register: Register) -> None:
    """Register corruptions: ``register(corruption)`` where ``corruption``
    satisfies :class:`genbench.corruptions.Corruption` (``name``,
    ``description``, ``Options`` and ``apply(dataset, level, seed, options,
    test_labels="clean") -> genbench.datasets.Dataset``). ``level`` in [0, 1]
    is the fraction of examples touched; ``test_labels`` is "clean" (leave the
    test split alone) or "corrupted" (corrupt it the same way); the result must
    be a pure function of its arguments. Optional ``uninformative_at_full =
    True`` declares that at level 1 the training labels carry no information
    about the inputs (where a capability score must be 0)."""


@hookspec
def register_models(register: Register) -> None:
    """Register model architectures: ``register(model)`` where ``model``
    satisfies :class:`genbench.models.ModelFactory` (``name``, ``description``,
    ``Options``, ``vmappable`` and ``build(input_shape, num_classes, options)
    -> torch.nn.Module``). A model fitted in closed form sets ``closed_form =
    True`` and provides ``fit``, ``initial`` and ``from_state`` instead (see
    :mod:`genbench.models`); it trains through the same ``fit()`` as the rest
    (``genbench.training.trainer_for``)."""


@hookspec
def register_measures(register: Register) -> None:
    """Register generalization measures: ``register(measure)`` where
    ``measure`` satisfies :class:`genbench.measures.Measure` (``name``,
    ``kind`` in {"complexity", "capability"}, ``version``, ``requires``,
    ``Options`` and ``compute(ctx, options) -> float | genbench.Estimate``).
    A measure that retrains networks subclasses
    :class:`genbench.RetrainingMeasure` and provides ``jobs(ctx, options) ->
    [genbench.RetrainJob]`` and ``finish(ctx, options, networks) -> float |
    Estimate`` instead of ``compute``: the evaluate stage trains the jobs of a
    training group's runs together. The context holds only what ``requires``
    declares ("init_weights", "training_log", "retrain"; "train_data" is
    informational) and never test data."""


@hookspec
def register_executors(register: Register) -> None:
    """Register executors: ``register(executor)`` where ``executor`` satisfies
    :class:`genbench.executors.Executor` (``name``, ``description`` and
    ``map(function, groups)`` yielding results as groups finish)."""
