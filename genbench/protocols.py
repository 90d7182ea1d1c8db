"""What each kind of component must look like, checked when a plugin registers one.

The typing protocols (``genbench.datasets.DatasetFactory``, ``genbench.corruptions.Corruption``,
``genbench.models.ModelFactory``, ``genbench.measures.Measure``, ``genbench.executors.Executor``)
say it to a type checker; this module says it to the registry, as data: the attributes a
component of each kind has, and the methods the engine calls with the arguments it passes. A
component that lacks one, or whose method cannot take the engine's arguments, is refused at
registration with one line naming the rule (``problems``), instead of failing later inside a run.
The hookspecs' docstrings and ``docs/hooks.md`` give the same protocols in words; tests keep the
three in agreement.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, get_args

from genbench.schemas import MeasureKind, Options

#: What a measure may declare in ``requires``: "init_weights" (``ctx.initial_model``),
#: "training_log" (``ctx.training_log``), "retrain" (``ctx.retrainer``), "train_data"
#: (informational: the training data is always in the context).
REQUIREMENTS = frozenset({"init_weights", "train_data", "training_log", "retrain"})
#: A measure's kinds: "complexity" (larger predicts a larger gap) or "capability" (in [0, 1]).
MEASURE_KINDS: tuple[str, ...] = get_args(MeasureKind)


@dataclass(frozen=True)
class Method:
    """A method the engine calls: its name and the parameters it passes (positionally, in this
    order); what it returns is in the hookspecs' docstrings."""

    name: str
    parameters: tuple[str, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(self.parameters)})"


@dataclass(frozen=True)
class Attribute:
    """An attribute a component has: its name, what it must be (in words), and a test of a value
    (``None``: any value will do). An optional attribute may be absent."""

    name: str
    must_be: str
    test: Callable[[Any], bool] | None = None
    optional: bool = False


@dataclass(frozen=True)
class Protocol:
    """The attributes and methods of one kind of component. ``variant`` chooses the methods of
    a component that declares an alternative way of working (a closed-form model, a measure that
    retrains through the evaluate stage), by the attribute that declares it."""

    attributes: tuple[Attribute, ...]
    methods: tuple[Method, ...]
    variants: tuple[tuple[str, tuple[Method, ...]], ...] = ()

    def methods_of(self, component: Any) -> tuple[Method, ...]:
        """The methods ``component`` must have: a variant's when it declares that variant."""
        for flag, methods in self.variants:
            if _declares(component, flag):
                return methods
        return self.methods


def _declares(component: Any, flag: str) -> bool:
    if flag == "jobs":  # a measure that retrains through the evaluate stage has jobs and finish
        return callable(getattr(component, "jobs", None)) or callable(getattr(component, "finish", None))
    return getattr(component, flag, False) is True


#: A component's name: lower-case letters and digits, in words joined by "-" or "." ("my-measure").
NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")


def _name(value: Any) -> bool:
    return isinstance(value, str) and NAME_PATTERN.match(value) is not None


def _non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _options_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, Options)


def _requirements(value: Any) -> bool:
    return isinstance(value, (set, frozenset)) and all(isinstance(item, str) for item in value) and value <= REQUIREMENTS


NAME = Attribute("name", "lower-case letters and digits in words joined by '-' (e.g. 'my-thing')", _name)
DESCRIPTION = Attribute("description", "a one-line string", _non_empty_string)
OPTIONS = Attribute("Options", "a subclass of genbench.Options", _options_class)

PROTOCOLS: dict[str, Protocol] = {
    "datasets": Protocol(
        (NAME, DESCRIPTION, OPTIONS),
        (Method("load", ("options", "data_dir")),),
    ),
    "corruptions": Protocol(
        (
            NAME,
            DESCRIPTION,
            OPTIONS,
            Attribute("uninformative_at_full", "a bool", lambda value: isinstance(value, bool), optional=True),
        ),
        (Method("apply", ("dataset", "level", "seed", "options", "test_labels")),),
    ),
    "models": Protocol(
        (
            NAME,
            DESCRIPTION,
            OPTIONS,
            Attribute("vmappable", "a bool", lambda value: isinstance(value, bool)),
            Attribute("closed_form", "a bool", lambda value: isinstance(value, bool), optional=True),
        ),
        (Method("build", ("input_shape", "num_classes", "options")),),
        variants=(
            (
                "closed_form",
                (
                    Method("fit", ("x_train", "y_train", "num_classes", "options", "seed")),
                    Method("initial", ("fitted",)),
                    Method("from_state", ("state", "input_shape", "num_classes", "options")),
                ),
            ),
        ),
    ),
    "measures": Protocol(
        (
            NAME,
            Attribute("kind", f"one of {', '.join(repr(kind) for kind in MEASURE_KINDS)}", lambda value: value in MEASURE_KINDS),
            Attribute("version", "a non-empty string", _non_empty_string),
            Attribute("requires", f"a set within {{{', '.join(sorted(REQUIREMENTS))}}}", _requirements),
            OPTIONS,
        ),
        (Method("compute", ("ctx", "options")),),
        variants=(
            (
                "jobs",
                (
                    Method("compute", ("ctx", "options")),
                    Method("jobs", ("ctx", "options")),
                    Method("finish", ("ctx", "options", "networks")),
                ),
            ),
        ),
    ),
    "executors": Protocol(
        (NAME, DESCRIPTION),
        (Method("open", ("options",)),),
    ),
}


def problems(key: str, component: Any) -> list[str]:
    """What makes ``component`` break the protocol of the registry ``key`` ("measures", …), each
    in words (empty: it keeps it). A method must take the engine's arguments positionally;
    extra parameters need defaults."""
    protocol = PROTOCOLS[key]
    if isinstance(component, type):
        return [f"it is the class {component.__name__}; register an instance, {component.__name__}()"]
    found = []
    for attribute in protocol.attributes:
        if not hasattr(component, attribute.name):
            if not attribute.optional:
                found.append(f"it has no {attribute.name} (it must be {attribute.must_be})")
            continue
        value = getattr(component, attribute.name)
        if attribute.test is not None and not attribute.test(value):
            found.append(f"its {attribute.name} must be {attribute.must_be}, not {_shown(value)}")
    for method in protocol.methods_of(component):
        function = getattr(component, method.name, None)
        if not callable(function):
            found.append(f"it has no method {method.signature}")
            continue
        reason = _cannot_take(function, method.parameters)
        if reason is not None:
            found.append(f"its {method.name} cannot be called as {method.signature}: {reason}")
    if key == "measures" and _declares(component, "jobs") and "retrain" not in (getattr(component, "requires", None) or ()):
        found.append("it retrains (jobs and finish) but its requires lacks 'retrain'")
    return found


def _cannot_take(function: Callable[..., Any], parameters: tuple[str, ...]) -> str | None:
    """Why ``function`` cannot be called with ``parameters`` positionally (None: it can)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a callable without a signature to read: trust it
        return None
    try:
        signature.bind(*parameters)
    except TypeError as exc:
        return str(exc)
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
