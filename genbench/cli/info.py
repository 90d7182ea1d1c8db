"""Commands that describe the installation: plugins, list."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from genbench.cli.common import handle_errors, stdout
from genbench.errors import UnknownNameError
from genbench.plugins import HOOKS, get_plugins

KINDS = [key for key, _ in HOOKS.values()]


def _options_text(options_model: Any) -> str:
    parts = []
    for name, field in options_model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        parts.append(f"{name}={json.dumps(default)}")
    return ", ".join(parts)


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def plugins(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
        """Installed plugins: name, version, load status, and what each registered."""
        records = get_plugins().records
        if as_json:
            payload = [
                {"name": r.name, "distribution": r.distribution, "version": r.version, "status": r.status,
                 "error": r.error, "registered": r.registered}
                for r in records
            ]
            stdout.print_json(json.dumps(payload))
            return
        table = Table(title="genbench plugins")
        for header in ("plugin", "distribution", "version", "status", "registered"):
            table.add_column(header)
        for record in records:
            registered = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in record.registered.items())
            status = record.status if record.error is None else f"{record.status}: {record.error}"
            table.add_row(*[escape(v) for v in (record.name, record.distribution, record.version, status, registered or "–")])
        stdout.print(table)

    @app.command("list")
    @handle_errors
    def list_components(
        kind: str = typer.Argument(..., help="measures | models | datasets | corruptions | executors"),
        options: bool = typer.Option(False, "--options", help="show each component's options and defaults"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """List the registered components of one kind."""
        plugins_ = get_plugins()
        if kind not in plugins_.registries:
            raise UnknownNameError(f"unknown kind '{kind}'; choose one of {', '.join(KINDS)}")
        registry = plugins_.registry(kind)
        rows = []
        for name, component in registry.items():
            doc = getattr(component, "description", "") or (type(component).__doc__ or "").strip().split("\n")[0]
            row = {"name": name, "origin": str(registry.origin(name)), "description": doc}
            if kind == "measures":
                row["kind"] = component.kind
                row["version"] = component.version
                row["requires"] = ", ".join(sorted(component.requires)) or "–"
                row["source"] = getattr(component, "source", "") or "–"
            if options and hasattr(component, "Options"):
                row["options"] = _options_text(component.Options) or "–"
            rows.append(row)
        if as_json:
            stdout.print_json(json.dumps(rows))
            return
        table = Table(title=f"genbench {kind}")
        for header in rows[0].keys() if rows else ("name",):
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*[escape(str(v)) for v in row.values()])
        stdout.print(table)
