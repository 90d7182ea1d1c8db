"""docs/measures.md is the catalogue genbench.catalogue generates, and the catalogue says what
the registry and the committed cost report say."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import genbench.plugins
from genbench import catalogue
from genbench.catalogue import (
    COMMAND,
    builtin_measures,
    catalogue_markdown,
    default_cost_report,
    docstring_parts,
    option_rows,
    seconds_per_run,
)

ROOT = Path(__file__).resolve().parents[1]
MEASURES_PAGE = ROOT / "docs" / "measures.md"


def sections(markdown: str) -> dict[str, str]:
    """``## name`` heading -> the text up to the next such heading."""
    out: dict[str, str] = {}
    name = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out


@pytest.fixture(scope="module")
def generated() -> str:
    return catalogue_markdown()


def test_docs_measures_md_is_the_generated_catalogue(generated):
    committed = MEASURES_PAGE.read_text(encoding="utf-8") if MEASURES_PAGE.is_file() else ""
    assert committed == generated, f"docs/measures.md is out of date: run `{COMMAND}`"


def test_the_module_prints_the_catalogue(generated, tmp_path):
    environment = {"GENBENCH_LOAD_PLUGINS": "", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "genbench.catalogue"], capture_output=True, text=True, cwd=tmp_path,
        env=environment, check=True,
    )
    assert done.stdout == generated


def test_every_builtin_measure_has_a_section_with_its_metadata(generated):
    page = sections(generated)
    measures = builtin_measures()
    assert len(measures) >= 40
    assert list(page) == [name for name, _ in measures]
    for name, measure in measures:
        text = page[name]
        assert f"- kind: {measure.kind}\n" in text
        assert f"- version: {measure.version}\n" in text
        for requirement in measure.requires:
            assert f"`{requirement}`" in text.split("- requires:")[1].splitlines()[0]
        assert measure.source.split(",")[0] in text
        for option, kind, default, _ in option_rows(measure.Options):
            assert f"| `{option}` | " in text
        summary, formula = docstring_parts(measure)
        assert summary and summary.split()[0] in text
        assert formula, f"{name}: no formula found in its docstring"
        assert f"```text\n{formula}\n```" in text
        assert "Source:" not in formula


def test_options_show_their_defaults_and_descriptions(generated):
    page = sections(generated)
    sharpness = page["sharpness"]
    assert "| `max_examples` | `int \\| None` | `256` | run the search on a seeded random subset" in sharpness
    assert "| `lower` | `float` | `1e-06` |" in sharpness
    assert "No options." in page["cross-entropy"]


def test_formula_is_the_docstring_paragraph_after_the_summary():
    class Example:
        """One line of what it is.

        example = Σ_i w_i², over every
        weight,

            w the weights

        of the network. Source: Someone 2020. More prose that is not the formula.

        Another paragraph.
        """

    summary, formula = docstring_parts(Example())
    assert summary == "One line of what it is."
    assert formula == "example = Σ_i w_i², over every\nweight,\n\n    w the weights\n\nof the network."


def test_cost_is_the_s_per_run_column_of_the_committed_report(generated):
    report = default_cost_report()
    assert report.is_file()
    costs = seconds_per_run(report.read_text(encoding="utf-8"))
    names = [name for name, _ in builtin_measures()]
    assert set(names) <= set(costs)  # the committed report has a row for every built-in measure
    assert not any(name.startswith("*") or "oracle" in name for name in costs)
    page = sections(generated)
    for name in names:
        expected = f"- cost per run: {costs[name]} s" if name in costs else "- cost per run: not measured"
        assert expected in page[name]
    assert "examples/reports/default-run.md" in generated.split("\n## ")[0]


def test_seconds_per_run_reads_the_column_by_its_header():
    report = textwrap.dedent(
        """\
        | model | p_c = 0 |
        |---|---|
        | mlp | 1.0 |

        | measure | kind | s/run | runs |
        |---|---|---|---|
        | *oracle σ=0.02* | *reference* | *0.000* | *24* |
        | alpha | complexity | 0.125 | 24 |
        | beta | capability | 2.500 | 12 |
        """
    )
    assert seconds_per_run(report) == {"alpha": "0.125", "beta": "2.500"}


def test_without_the_report_the_cost_is_not_measured(tmp_path):
    text = catalogue_markdown(cost_report=tmp_path / "absent.md")
    assert "- cost per run: not measured" in text
    assert " s\n" not in "".join(line + "\n" for line in text.splitlines() if line.startswith("- cost per run"))
    assert "was not found" in text


def test_installed_plugins_never_reach_the_catalogue(tmp_path, monkeypatch, generated):
    """A plugin measure is in the full registry, never in the catalogue."""
    module = "gbcatalogue_extra_measure"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            '''
            import genbench

            class Extra:
                """An extra measure.

                extra = 1."""
                name = "extra-catalogue-measure"
                kind = "complexity"
                version = "1"
                requires = frozenset()

                class Options(genbench.Options):
                    pass

                def compute(self, ctx, options):
                    return 1.0

            @genbench.hookimpl
            def register_measures(register):
                register(Extra())
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("GENBENCH_LOAD_PLUGINS", raising=False)  # every installed plugin loads
    point = EntryPoint(name="extra", value=module, group="genbench")
    monkeypatch.setattr(genbench.plugins, "discover_entry_points", lambda: [point])
    genbench.plugins.reset_plugins()
    try:
        assert "extra-catalogue-measure" in genbench.plugins.registry("measures")
        assert catalogue.catalogue_markdown() == generated
        assert "extra-catalogue-measure" not in generated
    finally:
        genbench.plugins.reset_plugins()
        sys.modules.pop(module, None)
