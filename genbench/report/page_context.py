"""The sections of a report page that say what was run: the grid (datasets, models with their
options, corruptions, levels, seeds, the recipe's constant and varying fields, the test-label
mode) and every component's version — as the store recorded it and, where given, as installed
now."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Sequence

import pandas as pd

from genbench.report.figures_data import TrainedRun, in_order, recipe_variation
from genbench.report.page import Bullets, Paragraph, Section, Table
from genbench.version import __version__

TEST_LABELS = MappingProxyType({
    "clean": "clean (the test set's true labels)",
    "corrupted": "corrupted (the training corruption applied to the test labels too)",
})


def count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def joined(values: Sequence[object]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def dataset_lines(axes: pd.DataFrame) -> list[str]:
    lines = []
    for dataset, runs in axes.groupby("dataset", sort=False):
        sizes = in_order(zip(runs["num_train"], runs["num_test"], runs["num_classes"]))
        told = "; ".join(f"{int(n):,} train / {int(t):,} test examples, {int(k)} classes" for n, t, k in sizes)
        lines.append(f"`{dataset}`: {told}")
    return lines


def model_lines(axes: pd.DataFrame) -> list[str]:
    lines = []
    for model, runs in axes.groupby("model", sort=False):
        params = joined([f"{int(p):,}" for p in in_order(runs["num_parameters"])])
        lines.append(f"`{model}` ({params} parameters)")
    return lines


def corruption_lines(axes: pd.DataFrame) -> list[str]:
    lines = []
    for corruption, runs in axes.groupby("corruption", sort=False):
        lines.append(f"`{corruption}` at p_c = {joined(sorted(set(runs['level'].astype(float))))}")
    return lines


def recipe_lines(trained: Sequence[TrainedRun]) -> list[str]:
    constant, varying = recipe_variation(spec.train for spec, _ in trained)
    lines = ["constant: " + (", ".join(f"{k}={v}" for k, v in constant.items()) or "none")]
    lines.append("varying: " + ("; ".join(f"{k} ∈ {{{joined(v)}}}" for k, v in varying.items()) or "none"))
    return lines


def grid_section(axes: pd.DataFrame, trained: Sequence[TrainedRun]) -> Section:
    """The grid and the data, as the store's runs describe them."""
    statuses = axes["status"].value_counts()
    modes = [TEST_LABELS.get(mode, mode) for mode in in_order(axes["test_labels"])]
    items = [
        f"runs: {len(axes):,} ({', '.join(f'{status} {n}' for status, n in statuses.items())})",
        *[f"dataset {line}" for line in dataset_lines(axes)],
        *[f"model {line}" for line in model_lines(axes)],
        *[f"corruption {line}" for line in corruption_lines(axes)],
        f"seeds: {joined(sorted(set(axes['seed'])))} (initialization, data order and the corruption draw)",
        f"test labels: {'; '.join(modes)}",
        *[f"recipe, {line}" for line in recipe_lines(trained)],
        f"settings (the panels of every figure): {', '.join(in_order(axes['setting']))}",
        f"devices: {', '.join(in_order(axes['device'].astype(str)))}",
    ]
    return Section("The grid", (Bullets(tuple(items)),), "grid")


def versions_section(axes: pd.DataFrame, values: pd.DataFrame, installed: Mapping[str, Mapping[str, str]]) -> Section:
    """genbench and every component and measure the store names: the versions it recorded and,
    where ``installed`` says, the versions installed now."""
    rows = [("genbench", "package", _recorded_genbench(axes), __version__)]
    for kind, column in (("datasets", "dataset_name"), ("models", "model_name"), ("corruptions", "corruption_name")):
        for name, runs in axes.groupby(column, sort=False):
            rows.append((name, kind.removesuffix("s"), f"trained with genbench {joined(in_order(runs['genbench_version']))}",
                         _installed(installed, kind, str(name))))
    if len(values):
        for name, group in values.groupby("measure", sort=False):
            stored = "; ".join(f"{v} ({count(int(n), 'value')})" for v, n in group["version"].value_counts(sort=False).items())
            now = _installed(installed, "measures", str(name))
            if installed and now != "not installed" and now.split(" ")[0] not in set(group["version"].astype(str)):
                now += " — differs from the store's"
            rows.append((str(name), "measure", stored, now))
    table = Table(("component", "kind", "in the store", "installed now"), tuple(rows))
    note = Paragraph(
        "The store records genbench's version with every run and each measure's version with every value; datasets, "
        "models and corruptions are versioned with the genbench (or plugin) distribution that provides them."
        + ("" if installed else " Installed versions were not checked.")
    )
    return Section("Versions", (table, note), "versions")


def _recorded_genbench(axes: pd.DataFrame) -> str:
    versions = axes["genbench_version"].value_counts(sort=False)
    return "; ".join(f"{v} ({count(int(n), 'run')})" for v, n in versions.items())


def _installed(installed: Mapping[str, Mapping[str, str]], kind: str, name: str) -> str:
    if not installed:
        return "not checked"
    return installed.get(kind, {}).get(name, "not installed")
