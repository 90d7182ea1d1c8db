"""The ``report`` command: figures and one page drawn from a store (nothing trained or measured)."""

from __future__ import annotations

import difflib
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterable, Mapping, Optional

import typer
from rich.markup import escape

from genbench.choices import REPORTS
from genbench.cli.common import check_choice, handle_errors, stderr, stdout
from genbench.errors import GenbenchError, StoreError, UnknownNameError
from genbench.plugins import registry

if TYPE_CHECKING:  # imported by the command itself: `genbench --help` stays light
    import pandas as pd

    from genbench.report import zhang2017

#: The formats a report is written in (the reports there are: ``genbench.choices.REPORTS``).
FORMATS = ("html", "markdown")


def check_report(name: str) -> str:
    """``name`` when it is a known report, else an unknown-name error with the closest names."""
    if name in REPORTS:
        return name
    close = difflib.get_close_matches(name, REPORTS, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UnknownNameError(f"unknown report '{name}'; {hint}available: {', '.join(REPORTS)}")


def installed_versions(names: Mapping[str, Iterable[str]]) -> Mapping[str, Mapping[str, str]]:
    """For each kind, the installed version of each named component (its distribution and, for a
    measure, its own version), leaving out those not installed; empty when the plugins cannot be
    loaded. Only read to say "installed now" beside what the store recorded."""
    found: dict[str, dict[str, str]] = {}
    try:
        for kind, wanted in names.items():
            components = registry(kind)
            found[kind] = {}
            for name in wanted:
                if name in components:
                    version = getattr(components.get(name), "version", None)
                    origin = str(components.origin(name))
                    found[kind][name] = f"{version} ({origin})" if version and kind == "measures" else origin
    except GenbenchError:
        return MappingProxyType({})
    return MappingProxyType({kind: MappingProxyType(versions) for kind, versions in found.items()})


def store_names(trained: list[zhang2017.TrainedRun], values: pd.DataFrame) -> dict[str, set[str]]:
    """The component names the store's runs and values use, by kind."""
    return {
        "datasets": {spec.dataset.name for spec, _ in trained},
        "models": {spec.model.name for spec, _ in trained},
        "corruptions": {spec.corruption.name for spec, _ in trained},
        "measures": set(values["measure"]) if len(values) else set(),
    }


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def report(
        name: str = typer.Argument(REPORTS[0], help=f"which report: {', '.join(REPORTS)}"),
        out: Optional[Path] = typer.Option(None, "--out", help="folder to write [default: ./genbench-report/NAME]"),
        fmt: str = typer.Option("html", "--format", "-f", help="html (SVG figures inlined) | markdown (PNG figures)"),
        store: Optional[Path] = typer.Option(None, "--store", envvar="GENBENCH_STORE",
                                             help="store folder [default: ./genbench-results]"),
    ) -> None:
        """Write a report from the store alone: Table 1 and Figure 1 analogues, per-measure panels, the leaderboard."""
        check_report(name)
        check_choice(fmt, FORMATS, "--format")
        from genbench import api
        from genbench.report import zhang2017

        target = api.open_store(store, create=False)
        runs = target.runs()
        if runs.empty:
            raise StoreError(f"store {target.root} has no runs; train some with `genbench run`")
        values = target.measure_values()
        trained = list(target.iter_runs())
        inputs = zhang2017.ReportInputs(
            runs=runs, values=values, board=api.leaderboard(target), trained=trained,
            installed=installed_versions(store_names(trained, values)), source=str(target.root),
        )
        written = zhang2017.write_report(inputs, out or Path("genbench-report") / name, fmt)  # type: ignore[arg-type]
        for line in written.skipped:
            stderr.print(f"[yellow]{escape(line)}[/]", highlight=False)
        stderr.print(f"wrote {len(written.files)} files into {written.page.parent}", highlight=False)
        stdout.print(str(written.page), markup=False, highlight=False)
