"""What every check of the conformance kit shares: the error, the name rule, the Options
rules, the name-against-the-registry rule."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from genbench.errors import first_line  # noqa: F401 - the checks' one-line reason, shared from here
from genbench.protocols import NAME_PATTERN, problems
from genbench.schemas import Options


class ConformanceError(AssertionError):
    """A component breaks its contract; the message names it and the rule."""

    __module__ = "genbench.testing"  # where users import it from (and where tracebacks say it is)


def fail(component: str, message: str) -> None:
    """Raise the one-line ConformanceError "<component>: <message>"."""
    raise ConformanceError(f"{component}: {message}")


def instance(component: Any) -> Any:
    """The component itself, or an instance of it when a class is given (as registered)."""
    return component() if isinstance(component, type) else component


def check_name(label: str, name: Any, example: str) -> None:
    """The name is lower-case letters and digits joined by '-' (or '.')."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        fail(label, f"name must be lower-case letters and digits joined by '-' (e.g. {example!r})")


def check_description(label: str, component: Any) -> None:
    """``description`` is a non-empty string of one line (it is shown in tables)."""
    description = getattr(component, "description", None)
    if not isinstance(description, str) or not description.strip():
        fail(label, "needs a one-line description")
    if "\n" in description.strip():
        fail(label, "its description must be one line (it is shown in `genbench list`)")


def default_options(label: str, option_type: type[Options]) -> Options:
    """``option_type()``: every option has a default."""
    try:
        return option_type()
    except Exception:  # noqa: BLE001 - reported as the broken rule
        missing = [name for name, field in option_type.model_fields.items() if field.is_required()]
        fail(label, f"every option needs a default; {', '.join(missing) or 'Options()'} has none")


def check_options_type(label: str, component: Any) -> Options:
    """``Options`` subclasses genbench.Options, every option has a default, and the defaults
    survive a JSON round trip (options are stored as JSON); returns the defaults."""
    option_type = getattr(component, "Options", None)
    if not (isinstance(option_type, type) and issubclass(option_type, Options)):
        fail(label, "Options must be a subclass of genbench.Options")
    defaults = default_options(label, option_type)
    try:
        round_trip = option_type.model_validate(defaults.model_dump(mode="json"))
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        round_trip = exc
    if round_trip != defaults:
        fail(label, "its options do not survive a JSON round trip (they are stored as JSON)")
    return defaults


def resolve_options(label: str, component: Any, options: Options | dict | None) -> Options:
    """The options to check with: the defaults when None, else ``options`` validated as the
    component's Options (an instance of them, or a dict)."""
    if options is None:
        return component.Options()
    if isinstance(options, component.Options):
        return options
    try:
        return component.Options.model_validate(options)
    except Exception as exc:  # noqa: BLE001 - reported as the broken rule
        fail(label, f"the options given are not valid: {first_line(exc)}")


def _top_package(cls: type) -> str:
    return (getattr(cls, "__module__", None) or "").split(".")[0]


def _distributions(cls: type) -> set[str]:
    """The installed distributions that ship the top-level package ``cls`` is defined in."""
    top = _top_package(cls)
    if not top:
        return set()
    return set(importlib.metadata.packages_distributions().get(top, ()))


def check_name_free(kind: str, label: str, component: Any) -> None:
    """A component of ``kind`` ("measures", "models", "corruptions", "datasets") may take a name
    already registered only when it is that very component's class, or comes from the same
    distribution (the same top-level package) as the one registered."""
    from genbench.plugins import get_plugins

    registry = get_plugins().registry(kind)
    name = component.name
    if name not in registry:
        return
    registered = registry.get(name)
    origin = registry.origin(name)
    if type(registered) is type(component) or _top_package(type(registered)) == _top_package(type(component)):
        return
    if origin.distribution in _distributions(type(component)):
        return
    fail(label, f"the name is already registered by {origin}; choose another name")


def check_protocol(key: str, label: str, component: Any) -> None:
    """What the registry checks when a plugin registers ``component`` in registry ``key``
    (``genbench.protocols.problems``): a component it would refuse fails the kit too, after the
    kit's own, more specific rules."""
    found = problems(key, component)
    if found:
        fail(label, f"the registry would refuse it: {found[0]}")
