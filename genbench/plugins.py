"""Plugin discovery: built-ins and entry points of group ``genbench``, loaded one at a time.

A plugin that fails to import, or fails inside one of its hooks, costs one warning
line on stderr; everything else keeps working. ``GENBENCH_STRICT_PLUGINS=1``
re-raises instead (for plugin authors). ``GENBENCH_LOAD_PLUGINS`` selects the
entry points to load: unset = all, empty = none, ``a,b`` = only those names.
Built-in components always load: they register through the same hooks.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from genbench import hookspecs
from genbench.errors import DuplicateNameError, GenbenchError, PluginError, first_line
from genbench.protocols import problems
from genbench.registry import Origin, Registry

ENTRY_POINT_GROUP = "genbench"

def _hooks() -> dict[str, tuple[str, str]]:
    """hook name -> (registry key, singular noun used in messages), for every hookspec of
    ``genbench.hookspecs`` (``register_measures`` -> ("measures", "measure"))."""
    hooks = {}
    for name, function in vars(hookspecs).items():  # in the order the hooks are defined
        if name.startswith("register_") and hasattr(function, f"{hookspecs.PROJECT}_spec"):
            key = name.removeprefix("register_")
            hooks[name] = (key, key.removesuffix("s"))
    return hooks


#: hook name -> (registry key, singular noun used in messages), derived from the hookspecs.
HOOKS: dict[str, tuple[str, str]] = _hooks()

BUILTIN_MODULES = (
    "genbench.datasets",
    "genbench.corruptions",
    "genbench.models",
    "genbench.measures",
    "genbench.executors",
)


@dataclass
class PluginRecord:
    """What one plugin is and what it did at load time."""

    name: str
    distribution: str
    version: str
    status: str = "loaded"  # loaded | failed | skipped
    error: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)
    #: components refused at registration (a broken protocol, a name already taken)
    refused: int = 0

    @property
    def origin(self) -> Origin:
        return Origin(self.name, self.distribution, self.version)


@dataclass
class Plugins:
    """The loaded plugin set: one registry per component kind, and a record per plugin."""

    registries: dict[str, Registry[Any]]
    records: list[PluginRecord]

    def registry(self, kind: str) -> Registry[Any]:
        return self.registries[kind]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _strict() -> bool:
    return os.environ.get("GENBENCH_STRICT_PLUGINS", "") not in ("", "0")


def _selected(names: Iterable[str]) -> set[str] | None:
    """Entry-point names to load according to GENBENCH_LOAD_PLUGINS (None = all)."""
    raw = os.environ.get("GENBENCH_LOAD_PLUGINS")
    if raw is None:
        return None
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = sorted(wanted - set(names))
    if unknown:
        message = f"GENBENCH_LOAD_PLUGINS names no installed plugin: {', '.join(unknown)}"
        if _strict():
            raise PluginError(message + " (GENBENCH_STRICT_PLUGINS=1 makes that an error)")
        _warn(message)
    return wanted


def _genbench_version() -> str:
    from genbench.version import __version__

    return __version__


def discover_entry_points() -> list[metadata.EntryPoint]:
    """Entry points of group ``genbench`` of every installed distribution."""
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_plugins(entry_points: list[metadata.EntryPoint] | None = None) -> Plugins:
    """Build a fresh plugin set: the built-ins, then each selected entry point."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    builtin = PluginRecord("genbench", "genbench", _genbench_version())
    records: list[PluginRecord] = [builtin]
    by_name: dict[str, PluginRecord] = {builtin.name: builtin}  # plugin name -> the record that owns it
    for module_name in BUILTIN_MODULES:
        manager.register(importlib.import_module(module_name), name=module_name)

    points = discover_entry_points() if entry_points is None else entry_points
    wanted = _selected(point.name for point in points)
    for point in points:
        distribution = getattr(point, "dist", None)
        record = PluginRecord(
            name=point.name,
            distribution=distribution.name if distribution is not None else point.name,
            version=distribution.version if distribution is not None else "unknown",
        )
        records.append(record)
        if wanted is not None and point.name not in wanted:
            record.status = "skipped"
            continue
        if point.name in by_name:  # two distributions (or one and genbench) claim one plugin name
            record.status = "failed"
            record.error = f"not loaded: the plugin name '{point.name}' is already taken by {by_name[point.name].origin}"
            if _strict():
                raise PluginError(f"plugin {point.name} ({record.distribution} {record.version}) {record.error}")
            _warn(f"plugin {point.name} ({record.distribution} {record.version}) {record.error}")
            continue
        by_name[point.name] = record
        try:
            module = point.load()
            manager.register(module, name=f"entry-point:{point.name}")
        except Exception as exc:  # a broken plugin must not break genbench
            record.status, record.error = "failed", f"failed to load: {first_line(exc)}"
            if _strict():
                raise PluginError(f"plugin {point.name}: {record.error}") from exc
            _warn(f"plugin {point.name} ({record.distribution} {record.version}) {record.error}")
            continue
        for hook_name in _unknown_hooks(manager, module):
            message = f"implements {hook_name}, which is not a genbench hook{_hook_hint(hook_name)}"
            if _strict():
                raise PluginError(f"plugin {point.name} ({record.distribution} {record.version}) {message}")
            message += "; it is ignored"
            record.error = message if record.error is None else f"{record.error}; {message}"
            _warn(f"plugin {point.name} ({record.distribution} {record.version}) {message}")

    registries = {key: Registry[Any](noun) for key, noun in HOOKS.values()}
    for hook_name, (key, noun) in HOOKS.items():
        implementations = getattr(manager.hook, hook_name).get_hookimpls()
        # Built-ins first, whatever tryfirst/trylast a plugin asks for: on a name clash the
        # plugin is the one that fails, never genbench itself.
        implementations.sort(key=lambda impl: manager.get_name(impl.plugin) not in BUILTIN_MODULES)
        for implementation in implementations:
            plugin_name = manager.get_name(implementation.plugin)
            record = builtin if plugin_name in BUILTIN_MODULES else by_name[plugin_name.split(":", 1)[1]]
            _call_hook(implementation.function, hook_name, registries[key], key, record)
    for record in records:
        if record.status == "loaded" and record.refused and not record.registered:
            record.status = "failed"
    return Plugins(registries=registries, records=records)


def _unknown_hooks(manager: pluggy.PluginManager, plugin: Any) -> list[str]:
    """The names of the functions ``plugin`` marks with ``@hookimpl`` that no genbench hookspec
    declares (a misspelled hook, which pluggy would otherwise keep silently pending)."""
    unknown = []
    for name, caller in vars(manager.hook).items():
        if isinstance(caller, pluggy.HookCaller) and not caller.has_spec():
            if any(implementation.plugin is plugin for implementation in caller.get_hookimpls()):
                unknown.append(name)
    return sorted(unknown)


def _hook_hint(name: str) -> str:
    close = difflib.get_close_matches(name, list(HOOKS), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _call_hook(
    function: Callable[..., Any],
    hook_name: str,
    registry: Registry[Any],
    key: str,
    record: PluginRecord,
) -> None:
    def register(component: Any) -> None:
        name = getattr(component, "name", None)
        found = problems(key, component)
        if found:
            _refuse(record, registry.kind, name, found)
            return
        try:
            registry.add(name, component, record.origin)
        except DuplicateNameError as exc:  # this component is refused; the plugin's others register
            if record.name == "genbench" or _strict():
                raise
            _refuse(record, registry.kind, name, [str(exc)], clash=True)
            return
        if isinstance(getattr(component, "origin", None), (Origin, type(None))):  # never a component's own attribute
            try:
                component.origin = record.origin
            except (AttributeError, TypeError):  # a frozen or slotted component: origin_of finds it by name
                pass
        record.registered.setdefault(key, []).append(name)

    try:
        function(register=register)
    except Exception as exc:
        if record.name == "genbench" or _strict():
            if isinstance(exc, GenbenchError):
                raise
            raise PluginError(f"{record.origin} failed in {hook_name}: {first_line(exc)}") from exc
        message = str(exc) if isinstance(exc, GenbenchError) else first_line(exc)
        record.status, record.error = "failed", f"failed in {hook_name}: {message}"
        _warn(f"{record.origin} {record.error}")


def _refuse(record: PluginRecord, noun: str, name: Any, found: list[str], clash: bool = False) -> None:
    """Refuse one component: one warning line naming the plugin, its distribution, the component
    and the first broken rule of its kind's protocol (an error for a built-in, and under
    GENBENCH_STRICT_PLUGINS=1), or the name clash (``clash``: ``found`` holds the registry's
    message, which names both origins). The plugin's other components are kept; a plugin none of
    whose components is kept has failed."""
    label = f"{noun} {name!r}" if isinstance(name, str) and name else f"a {noun} without a name"
    more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
    message = f"{found[0]}; it is refused" if clash else f"{label} is refused: {found[0]}{more}"
    if record.name == "genbench" or _strict():
        raise PluginError(f"{record.origin} registered {message}")
    record.error = message if record.error is None else f"{record.error}; {message}"
    record.refused += 1
    _warn(f"{record.origin} registered {message}" if not clash else f"{record.origin}: {message}")


_current: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin set, loaded on first use."""
    global _current
    if _current is None:
        _current = load_plugins()
    return _current


def reset_plugins() -> None:
    """Forget the loaded plugin set (the next access loads again)."""
    global _current
    _current = None


def origin_of(kind: str, component: Any) -> Origin | None:
    """Where ``component`` of registry ``kind`` came from: the origin stamped on it at registration,
    else the registry's origin for its name when the component registered under that name is this
    one (a frozen or slotted component cannot be stamped); None for a component of no plugin."""
    origin = getattr(component, "origin", None)
    if isinstance(origin, Origin):
        return origin
    name = getattr(component, "name", None)
    components = registry(kind)
    if isinstance(name, str) and name in components and components.get(name) is component:
        return components.origin(name)
    return None


def registry(kind: str) -> Registry[Any]:
    """The registry of ``kind``: datasets, corruptions, models, measures or executors."""
    return get_plugins().registry(kind)
