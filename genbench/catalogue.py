"""The catalogue of built-in measures, as markdown: ``python -m genbench.catalogue > docs/measures.md``.

For every measure genbench itself registers (never an installed plugin's, so installing one does
not change the page) it gives the name, kind, version, ``requires``, source, the formula (the
paragraph of the measure's docstring after its summary, continued while a sentence runs on, up to
its "Source:"), every option with its type, default and description, and the cost per run: the
``s/run`` column of the leaderboard in the committed report ``examples/reports/default-run.md``
(seconds to compute one value with the default options, retraining included), or "not measured"
where that report has no row for the measure (or the report is absent, as in an installed wheel).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined, to_jsonable_python

from genbench import measures

#: The committed report whose ``s/run`` column gives each measure's cost (relative to the checkout).
COST_REPORT = Path("examples") / "reports" / "default-run.md"
#: The command that regenerates docs/measures.md.
COMMAND = "python -m genbench.catalogue > docs/measures.md"


def default_cost_report() -> Path:
    """``examples/reports/default-run.md`` of the checkout genbench is imported from."""
    return Path(__file__).resolve().parents[1] / COST_REPORT


def builtin_measures() -> list[tuple[str, Any]]:
    """(name, measure) of every measure genbench registers itself (its ``register_measures``
    hook registers one of each class ``genbench.measures.builtin_measures`` lists), by name."""
    return sorted(((cls.name, cls()) for cls in measures.builtin_measures()), key=lambda pair: pair[0])


def seconds_per_run(report: str) -> dict[str, str]:
    """measure name -> the ``s/run`` cell of the leaderboard table in ``report`` (markdown);
    reference rows (italic, such as the noisy oracles) are left out."""
    costs: dict[str, str] = {}
    columns: list[str] | None = None
    for line in report.splitlines():
        if not line.startswith("|"):
            columns = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if columns is None:
            columns = cells if "measure" in cells and "s/run" in cells else []
            continue
        if not columns or set(line.replace("|", "").strip()) <= set("-: "):
            continue
        if len(cells) != len(columns):
            continue
        name = cells[columns.index("measure")]
        if name.startswith("*"):
            continue
        costs[name] = cells[columns.index("s/run")]
    return costs


def docstring_parts(measure: Any) -> tuple[str, str]:
    """(summary, formula) of the measure's class docstring: the first paragraph, and the next
    one, continued while its sentence runs on (it does not end with "."), cut at "Source:"."""
    doc = inspect.cleandoc(type(measure).__doc__ or "")
    paragraphs = [part.strip("\n") for part in re.split(r"\n[ \t]*\n", doc) if part.strip()]
    if not paragraphs:
        return "", ""
    summary = " ".join(line.strip() for line in paragraphs[0].splitlines())
    taken: list[str] = []
    for paragraph in paragraphs[1:]:
        taken.append(paragraph)
        if paragraph.rstrip().endswith("."):
            break
    formula = "\n\n".join(taken)
    cut = re.search(r"\s*\bSources?:", formula)
    if cut is not None:
        formula = formula[: cut.start()]
    return summary, formula.rstrip()


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default_text(field: Any) -> str:
    default = field.get_default(call_default_factory=True)
    if default is PydanticUndefined:
        return "required"
    return json.dumps(to_jsonable_python(default), ensure_ascii=False)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def option_rows(options_model: Any) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) of every field of an Options model, in order."""
    return [
        (name, _type_name(field.annotation), _default_text(field), field.description or "")
        for name, field in options_model.model_fields.items()
    ]


def _requires_text(measure: Any) -> str:
    return ", ".join(f"`{item}`" for item in sorted(measure.requires)) or "–"


def catalogue_markdown(cost_report: Path | None = None) -> str:
    """The catalogue page of the built-in measures (what ``docs/measures.md`` holds)."""
    report_path = default_cost_report() if cost_report is None else Path(cost_report)
    costs = seconds_per_run(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    measures = builtin_measures()
    if costs:
        cost_note = (
            f"Cost per run: the `s/run` column of the leaderboard in `{COST_REPORT.as_posix()}`, the committed "
            "report of the default experiment (`genbench run`; the machine and date are stated there): seconds "
            "to compute one value with the default options, a retraining measure's share of its retraining "
            "included. \"not measured\": that report has no row for the measure."
        )
    else:
        cost_note = (
            f"Cost per run: not measured here (`{COST_REPORT.as_posix()}` was not found); `requires` says "
            "whether a measure retrains networks (`retrain`), which costs the most."
        )
    lines = [
        "# Built-in measures",
        "",
        f"Generated from genbench's measure registry by `{COMMAND}`: do not edit by hand. It lists the "
        f"{len(measures)} measures genbench registers itself (installed plugins are left out). Each "
        "measure's formula is quoted from its docstring; `genbench list measures --options` shows the same "
        "names and options for everything installed.",
        "",
        cost_note,
        "",
        "`requires`: `init_weights` (the context holds the network at initialization), `training_log` (how "
        "training ended), `retrain` (the measure trains networks of the run's architecture through the "
        "evaluate stage), `train_data` (informational: every measure sees the training data).",
        "",
        "| measure | kind | version | requires | s/run | what it is |",
        "|---|---|---|---|---|---|",
    ]
    for name, measure in measures:
        summary, _ = docstring_parts(measure)
        cost = costs.get(name, "not measured")
        lines.append(
            f"| [{name}](#{name.replace('.', '')}) | {measure.kind} | {measure.version} | {_requires_text(measure)} "
            f"| {_cell(cost)} | {_cell(summary)} |"
        )
    for name, measure in measures:
        summary, formula = docstring_parts(measure)
        lines += ["", f"## {name}", "", summary, ""]
        lines += [
            f"- kind: {measure.kind}",
            f"- version: {measure.version}",
            f"- requires: {_requires_text(measure)}",
            f"- source: {_cell(getattr(measure, 'source', '') or '–')}",
            f"- cost per run: {costs[name] + ' s' if name in costs else 'not measured'}",
            f"- defined in: `{type(measure).__module__}.{type(measure).__qualname__}`",
        ]
        if formula:
            lines += ["", "```text", formula, "```"]
        rows = option_rows(measure.Options)
        lines.append("")
        if rows:
            lines += ["| option | type | default | description |", "|---|---|---|---|"]
            lines += [f"| `{option}` | `{_cell(kind)}` | `{_cell(default)}` | {_cell(text)} |" for option, kind, default, text in rows]
        else:
            lines.append("No options.")
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(catalogue_markdown())


if __name__ == "__main__":
    main()
