"""A report page as one self-contained HTML file: inline CSS, SVG figures inlined (each with its
ids prefixed, so that figures do not resolve each other's glyphs and clip paths), no script, no
external file and no network address."""

from __future__ import annotations

import html
import re

from genbench.report.page import Block, Bullets, FigureBlock, Page, Paragraph, Prerendered, Section, Table

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #111;
       margin: 0; background: #fff; line-height: 1.45; }
main { max-width: 1280px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.4rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; }
nav ol { columns: 2; font-size: 0.95rem; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.9em; background: #f3f3f3;
       padding: 0 0.2em; border-radius: 3px; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.88rem; }
th, td { border: 1px solid #bbb; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #eee; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.reference td { font-style: italic; color: #555; background: #f7f7f7; }
.caption { font-size: 0.88rem; color: #333; max-width: 70rem; }
figure { margin: 1.2rem 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.88rem; color: #333; max-width: 70rem; }
"""

NUMBER = re.compile(r"^[+\-−]?[\d,.]+(e[+\-]?\d+)?( %)?$|^–$")


def inline(text: str) -> str:
    """Text as HTML: escaped, with `code` spans."""
    escaped = html.escape(text, quote=False)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG document as an element to place in HTML: no XML declaration, doctype, metadata or
    namespace addresses; every id (and every reference to it) prefixed with ``prefix``."""
    text = re.sub(r"<\?xml[^>]*\?>", "", svg)
    text = re.sub(r"<!DOCTYPE[^>]*>", "", text, flags=re.DOTALL)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r'(xlink:href|href)="#([^"]+)"', rf'\1="#{prefix}-\2"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    return text.strip()


def html_table(table: Table) -> str:
    head = "".join(f"<th>{inline(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        cells = "".join(
            f'<td class="number">{inline(c)}</td>' if NUMBER.match(c.strip()) else f"<td>{inline(c)}</td>" for c in row
        )
        body.append(f"<tr>{cells}</tr>")
    caption = f'<p class="caption">{inline(table.caption)}</p>' if table.caption else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{caption}"


def html_block(block: Block, anchor: str) -> str:
    """One block as HTML (``anchor`` prefixes the ids of an inlined figure)."""
    if isinstance(block, Paragraph):
        return f"<p>{inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        return html_table(block)
    if isinstance(block, FigureBlock):
        body = inline_svg(block.svg, anchor) if block.svg else f"<p>{inline(block.file)}</p>"
        caption = f"<figcaption><strong>{inline(block.title)}.</strong> {inline(block.caption)}</figcaption>"
        return f'<figure id="{anchor}">{body}{caption}</figure>'
    assert isinstance(block, Prerendered)
    return block.html


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def html_section(section: Section, index: int) -> str:
    anchor = section.anchor or slug(section.title)
    blocks = [html_block(block, f"{anchor}-{number}") for number, block in enumerate(section.blocks)]
    return f'<section><h2 id="{anchor}">{index}. {inline(section.title)}</h2>{"".join(blocks)}</section>'


def render_html(page: Page) -> str:
    """The page as one HTML document."""
    contents = "".join(
        f'<li><a href="#{section.anchor or slug(section.title)}">{inline(section.title)}</a></li>'
        for section in page.sections
    )
    intro = "".join(html_block(block, f"intro-{number}") for number, block in enumerate(page.intro))
    sections = "".join(html_section(section, index) for index, section in enumerate(page.sections, start=1))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{inline(page.title)}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{inline(page.title)}</h1>{intro}<nav><ol>{contents}</ol></nav>{sections}</main></body></html>\n"
    )


def markdown_tables_to_html(markdown: str) -> str:
    """A markdown text of tables and paragraphs (as ``leaderboard.render(board, "markdown")``
    writes it) as HTML: ``*cell*`` rows (reference rows) in italics, other lines as paragraphs."""
    out, rows = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            rows.append(line)
            continue
        if rows:
            out.append(_table_lines(rows))
            rows = []
        if line.strip():
            out.append(f'<p class="caption">{inline(line)}</p>')
    return "".join(out)


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [part.strip().replace("\\|", "|") for part in parts]


def _table_lines(lines: list[str]) -> str:
    header, *body = lines
    body = [line for line in body if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip())]
    head = "".join(f"<th>{inline(cell)}</th>" for cell in _cells(header))
    rows = []
    for line in body:
        cells = _cells(line)
        reference = bool(cells) and all(c.startswith("*") and c.endswith("*") and len(c) > 1 for c in cells)
        cells = [c[1:-1] if reference else c for c in cells]
        tds = "".join(
            f'<td class="number">{inline(c)}</td>' if NUMBER.match(c) else f"<td>{inline(c)}</td>" for c in cells
        )
        rows.append(f'<tr class="reference">{tds}</tr>' if reference else f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
