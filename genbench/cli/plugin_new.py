"""``genbench plugin new NAME [--kind measure|model|corruption|dataset] [--directory DIR]``: a
ready, installable plugin package ``DIR/genbench-NAME/`` (see :mod:`genbench.scaffold`)."""

from __future__ import annotations

from pathlib import Path

import typer

from genbench.cli.common import handle_errors, stdout
from genbench.errors import UsageError
from genbench.scaffold import KINDS, plugin_names, write_plugin

KIND_HELP = " | ".join(KINDS)
HERE = Path(".")


def taken(name: str, kind: str) -> str | None:
    """Why ``name`` cannot be a new plugin of ``kind`` here: an installed plugin already has that
    name, or a component of that kind does (a second one would be refused when both load); None
    when it is free. Loads the plugins (torch and all), so it is imported only when needed."""
    from genbench.plugins import get_plugins

    plugins = get_plugins()
    registry = plugins.registry(f"{kind}s")
    if name in registry:
        return f"a {kind} named '{name}' is already registered (by {registry.origin(name)})"
    for record in plugins.records:
        if record.name == name:
            return f"a plugin named '{name}' is already installed ({record.distribution} {record.version})"
    return None


def register(app: typer.Typer) -> None:
    plugin_app = typer.Typer(help="Write a new plugin package.", no_args_is_help=True)
    app.add_typer(plugin_app, name="plugin")

    @plugin_app.command("new")
    @handle_errors
    def new(
        name: str = typer.Argument(
            ..., help="the plugin's and its component's name: lower-case letters and digits joined by '-'"
        ),
        kind: str = typer.Option("measure", "--kind", "-k", help=KIND_HELP),
        directory: Path = typer.Option(
            HERE, "--directory", "-d", help="folder to write genbench-NAME/ into (created when missing)"
        ),
    ) -> None:
        """Write DIR/genbench-NAME/: pyproject.toml (entry point NAME in group genbench), README.md,
        genbench_NAME/__init__.py with one documented, working example component called NAME,
        registered through its hook, and tests/test_NAME_conformance.py running genbench's
        conformance kit on it. Exit 2 for a bad name or kind, a name already taken by an installed
        plugin or component, or an existing target folder."""
        names = plugin_names(name, kind)
        target = directory.expanduser() / names.distribution
        if target.exists():
            raise UsageError(f"{target} already exists; choose another name or --directory (nothing was written)")
        reason = taken(names.name, names.kind)
        if reason is not None:
            raise UsageError(f"plugin name '{names.name}': {reason}; choose another name")
        folder = write_plugin(names.name, names.kind, directory)
        stdout.print(f"wrote {names.kind} plugin {names.distribution} to {folder}/", markup=False, highlight=False)
        for path in sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()):
            stdout.print(f"  {path}", markup=False, highlight=False)
        stdout.print(
            f"next: cd {folder} && pip install -e \".[test]\" && pytest"
            f"   (then `genbench plugins` lists it and `genbench list {names.kind}s` shows '{names.name}')",
            markup=False,
            highlight=False,
        )
