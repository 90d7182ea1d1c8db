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
    """Register datasets: ``register(dataset)`` for each, where ``dataset`` satisfies
    :class:`genbench.datasets.DatasetFactory`:

    - ``name``: a non-empty string (lower-case words joined by "-");
    - ``description``: a one-line string;
    - ``Options``: a subclass of :class:`genbench.Options`, every field with a default;
    - ``load(options, data_dir)`` -> :class:`genbench.datasets.Dataset`, where ``options`` is an
      ``Options`` instance and ``data_dir`` the data folder (a ``str`` or ``Path``, or None when
      none is set); the same arguments must give the same dataset. A file that is missing is a
      :class:`genbench.errors.DataError` saying which."""


@hookspec
def register_corruptions(register: Register) -> None:
    """Register corruptions: ``register(corruption)`` for each, where ``corruption`` satisfies
    :class:`genbench.corruptions.Corruption`:

    - ``name``, ``description``, ``Options`` as for datasets;
    - ``apply(dataset, level, seed, options, test_labels)`` -> :class:`genbench.datasets.Dataset`,
      called positionally: ``level`` in [0, 1] is the fraction of examples touched (level 0
      returns the data unchanged; the examples touched at a level are among those touched at
      every higher level, for one seed); ``seed`` an int; ``test_labels`` is "clean" (leave the
      test split alone) or "corrupted" (corrupt it the same way); the clean training labels
      stay in the result; the result is a pure function of the arguments and the input is not
      changed;
    - optional ``uninformative_at_full``: a bool, True when at level 1 the training labels carry
      no information about the inputs (where a capability score must be 0)."""


@hookspec
def register_models(register: Register) -> None:
    """Register model architectures: ``register(model)`` for each, where ``model`` satisfies
    :class:`genbench.models.ModelFactory`:

    - ``name``, ``description``, ``Options`` as for datasets;
    - ``vmappable``: a bool, whether members of an ensemble can be trained together with
      ``torch.func.vmap`` (False for batch norm with running statistics);
    - ``build(input_shape, num_classes, options)`` -> ``torch.nn.Module`` giving logits
      [batch, num_classes]; ``input_shape`` is a tuple without the batch axis. A model that
      cannot take the input raises :class:`genbench.errors.SpecError` saying why.

    A model fitted in closed form sets ``closed_form`` to True and provides, instead of
    ``build``, ``fit(x_train, y_train, num_classes, options, seed)`` -> ``(module, diagnostics)``,
    ``initial(fitted)`` -> the module saved as the initial checkpoint, and
    ``from_state(state, input_shape, num_classes, options)`` -> the module a checkpoint holds
    (see :mod:`genbench.models`); it trains through the same ``fit()`` as the rest."""


@hookspec
def register_measures(register: Register) -> None:
    """Register generalization measures: ``register(measure)`` for each, where ``measure``
    satisfies :class:`genbench.measures.Measure`:

    - ``name``: a non-empty string, unique among measures;
    - ``kind``: "complexity" (larger predicts a larger generalization gap) or "capability" (an
      estimate in [0, 1] of the skill on clean test data, ≈ 0 where labels carry no information);
    - ``version``: a non-empty string, bumped when the values change (stored with every value);
    - ``requires``: a set within {"init_weights", "retrain", "train_data", "training_log"}
      (``ctx.initial_model``, ``ctx.retrainer``, informational, ``ctx.training_log``);
    - ``Options``: a subclass of :class:`genbench.Options`, every field with a default;
    - ``compute(ctx, options)`` -> a float or :class:`genbench.Estimate`, from the
      :class:`genbench.MeasureContext` of one run (never test data); NaN, a non-number or an
      exception stores the value as failed with the reason.

    A measure that retrains networks subclasses :class:`genbench.RetrainingMeasure` and provides
    ``jobs(ctx, options)`` -> a list of :class:`genbench.RetrainJob` and
    ``finish(ctx, options, networks)`` -> a float or Estimate (``networks``: one
    :class:`genbench.Retrained` per job, in order) instead of ``compute``: the evaluate stage
    trains the jobs of a training group's runs together."""


@hookspec
def register_executors(register: Register) -> None:
    """Register executors: ``register(executor)`` for each, where ``executor`` satisfies
    :class:`genbench.executors.Executor`:

    - ``name``, ``description`` as for datasets;
    - ``open(options)`` -> a context manager of a :class:`genbench.executors.Pool`, where
      ``options`` is a :class:`genbench.executors.ExecutorOptions`; the pool's
      ``run(task, units, on_record, on_progress)`` runs every unit and returns the failures."""
