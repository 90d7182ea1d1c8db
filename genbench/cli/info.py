"""Commands that describe the installation: plugins, list."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from genbench.cli.common import handle_errors, stdout
from genbench.errors import UnknownNameError, UsageError
from genbench.plugins import HOOKS, PluginRecord, get_plugins

KINDS = [key for key, _ in HOOKS.values()]
#: What the box and the padding of a rich table take: 3 per column and 1.
PER_COLUMN, PER_TABLE = 3, 1
#: A column whose cells wrap is never narrower than this (nor than its longest word).
MIN_WRAP_WIDTH = 8
#: A wrapping column whose widest cell is at most this wide is given its whole width first.
SHORT_CELLS = 20


# ------------------------------------------------------------------------------------ fitting
@dataclass(frozen=True)
class Column:
    """A column of a table that must fit the terminal: ``priority`` 0 is never left out, larger
    numbers are left out first; the cells of a ``wrap`` column break between words (never inside
    one), the others stay on one line."""

    header: str
    priority: int = 0
    wrap: bool = False
    min_width: int = 0  # a wrapping column narrower than this (or its widest cell) is not worth showing


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


def _natural(text: str) -> int:
    return max((cell_len(line) for line in text.splitlines()), default=0)


def column_widths(columns: list[Column], rows: list[list[str]], width: int) -> dict[int, int]:
    """The widths (without padding) of the columns kept to fit ``width`` characters, by position.

    A one-line column is as wide as its widest cell; a wrapping one at least as wide as its longest
    word (and ``MIN_WRAP_WIDTH``, and its ``min_width``) and at most as its widest cell. Columns are
    left out, largest ``priority`` first (the later of equals first), until the rest fit; then a
    column left out that fits after all comes back. The room left goes to the wrapping columns whose
    cells are short (at most ``SHORT_CELLS``: whole), then to the others, the most important first.
    Only where even the columns of priority 0 do not fit do the wrapping ones narrow (the widest
    first, down to ``MIN_WRAP_WIDTH``) and break inside words."""
    natural, least = [], []
    for i, column in enumerate(columns):
        cells = [column.header, *(row[i] for row in rows)]
        natural.append(max(_natural(cell) for cell in cells))
        floor = max(MIN_WRAP_WIDTH, column.min_width, *(_longest_word(cell) for cell in cells))
        least.append(min(natural[-1], floor) if column.wrap else natural[-1])

    def fits(kept: list[int]) -> bool:
        return sum(least[i] for i in kept) + PER_COLUMN * len(kept) + PER_TABLE <= width

    kept = list(range(len(columns)))
    droppable = sorted((i for i in kept if columns[i].priority > 0), key=lambda i: (-columns[i].priority, -i))
    dropped: list[int] = []
    while droppable and not fits(kept):
        dropped.append(droppable.pop(0))
        kept.remove(dropped[-1])
    for i in reversed(dropped):  # a narrower column may fit where a wider one went
        if fits(sorted([*kept, i])):
            kept = sorted([*kept, i])
    widths = {i: least[i] for i in kept}
    room = width - PER_TABLE - sum(least[i] + PER_COLUMN for i in kept)
    while room < 0:  # too narrow even for the columns that stay: the wrapping ones give way
        narrowable = [i for i in kept if columns[i].wrap and widths[i] > MIN_WRAP_WIDTH]
        if not narrowable:
            break
        widest = max(narrowable, key=lambda i: (widths[i], -i))
        widths[widest] -= 1
        room += 1
    growing = sorted((i for i in kept if columns[i].wrap), key=lambda i: (columns[i].priority, i))
    for i in growing:  # short cells whole, where they fit
        if natural[i] <= SHORT_CELLS and 0 <= natural[i] - widths[i] <= room:
            room -= natural[i] - widths[i]
            widths[i] = natural[i]
    for i in growing:
        extra = max(0, min(room, natural[i] - widths[i]))
        widths[i] += extra
        room -= extra
    return widths


def fitted_table(title: str, columns: list[Column], rows: list[list[str]], width: int) -> tuple[Table, list[str]]:
    """A rich table of ``rows`` (plain text) that fits ``width`` characters, and the headers of the
    columns left out to fit it (see ``column_widths``)."""
    widths = column_widths(columns, rows, width)
    table = Table(title=escape(title), title_justify="left")
    for i, column in enumerate(columns):
        if i in widths:
            table.add_column(escape(column.header), width=widths[i], no_wrap=not column.wrap,
                             overflow="fold" if column.wrap else "ellipsis")
    for row in rows:
        table.add_row(*[escape(cell) for i, cell in enumerate(row) if i in widths])
    return table, [column.header for i, column in enumerate(columns) if i not in widths]


def print_fitted(console: Console, table: Table, dropped: list[str]) -> None:
    """``table`` on ``console``, then a line naming the columns left out to fit it, if any."""
    console.print(table)
    if dropped:
        console.print(f"(left out to fit {console.width} columns: {', '.join(dropped)}; --json shows every column)",
                      style="dim", markup=False, highlight=False)


# ------------------------------------------------------------------------------------ plugins
def _canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(records: list[PluginRecord]) -> list[str]:
    """Pip requirement lines ``name==version`` of genbench and of every distribution that provides
    a loaded plugin, sorted by name, each distribution once; then, as ``#`` comment lines, the
    distributions whose plugins did not load (failed, skipped by ``GENBENCH_LOAD_PLUGINS``) and
    the plugins without distribution metadata (no version to pin), with the reason."""
    pinned: dict[str, str] = {}
    comments: dict[str, str] = {}
    for record in records:
        key = _canonical(record.distribution)
        if record.status == "loaded" and record.version != "unknown":
            pinned.setdefault(key, _pin(record.distribution, record.version))
        elif record.status == "loaded":
            comments.setdefault(key, f"# {record.distribution}: plugin {record.name} has no distribution metadata (no version to pin)")
        else:
            reason = record.error or ("not selected by GENBENCH_LOAD_PLUGINS" if record.status == "skipped" else record.status)
            comments.setdefault(key, f"# {record.distribution}=={record.version}: plugin {record.name} {record.status} ({reason})")
    lines = [pinned[key] for key in sorted(pinned)]
    return lines + [comments[key] for key in sorted(comments) if key not in pinned]


def _pin(distribution: str, version: str) -> str:
    """The requirement line that installs ``distribution`` as it is installed here: ``name==version``
    from an index, or, where its ``direct_url.json`` (PEP 610) says it was installed from elsewhere,
    ``-e PATH`` (an editable folder), ``name @ URL`` (a folder, an archive, a commit of a repository),
    each followed by the version as a comment."""
    from importlib import metadata

    try:
        text = metadata.distribution(distribution).read_text("direct_url.json")
        origin = json.loads(text) if text else None
    except (metadata.PackageNotFoundError, ValueError):
        origin = None
    if not isinstance(origin, dict) or not isinstance(origin.get("url"), str):
        return f"{distribution}=={version}"
    url, comment = origin["url"], f"  # {distribution}=={version}"
    if isinstance(origin.get("dir_info"), dict) and origin["dir_info"].get("editable"):
        return f"-e {url.removeprefix('file://')}{comment}"
    vcs = origin.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") and vcs.get("commit_id"):
        return f"{distribution} @ {vcs['vcs']}+{url}@{vcs['commit_id']}{comment}"
    return f"{distribution} @ {url}{comment}"


def plugin_payload(records: list[PluginRecord]) -> list[dict[str, Any]]:
    """``genbench plugins --json``: per plugin its name, distribution, version, status
    (loaded | failed | skipped), error (None when none) and what it registered, by kind."""
    return [
        {"name": r.name, "distribution": r.distribution, "version": r.version, "status": r.status,
         "error": r.error, "registered": {kind: list(names) for kind, names in r.registered.items()}}
        for r in records
    ]


PLUGIN_COLUMNS = [
    Column("plugin"),
    Column("version"),
    Column("status", wrap=True),
    Column("registered", priority=2, wrap=True),
    Column("distribution", priority=1),
]
#: Where ``registered`` is left out of the table, what each plugin registered follows it.
REGISTERED = 3


def plugin_rows(records: list[PluginRecord]) -> list[list[str]]:
    rows = []
    for record in records:
        registered = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in record.registered.items())
        status = record.status if record.error is None else f"{record.status}: {record.error}"
        rows.append([record.name, record.version, status, registered or "–", record.distribution])
    return rows


def plugin_table(records: list[PluginRecord], width: int) -> tuple[Table, list[str]]:
    """``genbench plugins``' table at ``width`` characters (see ``fitted_table``): plugin and
    version in full always, status and what it registered wrapped between words, the distribution
    left out first."""
    return fitted_table("genbench plugins", PLUGIN_COLUMNS, plugin_rows(records), width)


# ------------------------------------------------------------------------------------ list
def _options_text(options_model: Any) -> str:
    parts = []
    for name, field in options_model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        parts.append(f"{name}={json.dumps(default)}")
    return ", ".join(parts)


#: The columns of ``genbench list KIND``'s table, by key of a row, in their order.
LIST_COLUMNS = {
    "name": Column("name"),
    "kind": Column("kind", priority=2),
    "version": Column("version", priority=3),
    "description": Column("description", priority=1, wrap=True, min_width=24),
    "options": Column("options", wrap=True, min_width=24),  # asked for (--options): never left out
    "origin": Column("origin", priority=4, wrap=True),
    "requires": Column("requires", priority=5, wrap=True),
    "source": Column("source", priority=6, wrap=True),
}


def component_rows(kind: str, options: bool) -> list[dict[str, str]]:
    """``genbench list KIND``'s rows: name, origin and description; for measures also kind,
    version, requires and source; with ``options``, the options and their defaults."""
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
    return rows


def component_table(kind: str, rows: list[dict[str, str]], width: int) -> tuple[Table, list[str]]:
    """``genbench list KIND``'s table at ``width`` characters (see ``fitted_table``): the name in
    full always, then the columns of ``LIST_COLUMNS`` by priority."""
    keys = [key for key in LIST_COLUMNS if any(key in row for row in rows)] or ["name"]
    return fitted_table(
        f"genbench {kind}", [LIST_COLUMNS[key] for key in keys], [[str(row.get(key, "–")) for key in keys] for row in rows], width,
    )


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def plugins(
        as_json: bool = typer.Option(False, "--json", help="print JSON: per plugin its name, distribution, version, "
                                     "status, error and what it registered"),
        as_requirements: bool = typer.Option(
            False, "--requirements",
            help="print pip requirements of genbench and of every distribution with a loaded plugin, sorted, each "
                 "once, for `pip install -r`: name==version, or -e PATH / name @ URL for one installed from a folder, "
                 "an archive or a repository; plugins that failed or were skipped, and plugins without "
                 "distribution metadata, follow as # comment lines with the reason",
        ),
    ) -> None:
        """Installed plugins: name, version, load status, and what each registered."""
        if as_json and as_requirements:
            raise UsageError("--json and --requirements cannot be combined; choose one")
        records = get_plugins().records
        if as_requirements:
            for line in requirements(records):
                typer.echo(line)
            return
        if as_json:
            stdout.print_json(json.dumps(plugin_payload(records)))
            return
        console = Console()  # at the terminal's width ($COLUMNS when set)
        table, dropped = plugin_table(records, console.width)
        registered = PLUGIN_COLUMNS[REGISTERED].header
        print_fitted(console, table, [header for header in dropped if header != registered])
        if registered in dropped:  # too narrow for it beside the others: below the table, wrapped between words
            for record, row in zip(records, plugin_rows(records)):
                console.print(f"{record.name} registered {row[REGISTERED]}", markup=False, highlight=False)

    @app.command("list")
    @handle_errors
    def list_components(
        kind: str = typer.Argument(..., help="measures | models | datasets | corruptions | executors"),
        options: bool = typer.Option(False, "--options", help="show each component's options and defaults"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """List the registered components of one kind."""
        rows = component_rows(kind, options)
        if as_json:
            stdout.print_json(json.dumps(rows))
            return
        console = Console()  # at the terminal's width ($COLUMNS when set)
        print_fitted(console, *component_table(kind, rows, console.width))
