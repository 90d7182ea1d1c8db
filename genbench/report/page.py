"""A report page as data (sections of paragraphs, lists, tables and figures) and its markdown
rendering; ``page_html`` renders the same page as one self-contained HTML file.

Text may carry `code` spans in backticks; nothing else is markup."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table of text cells; ``caption`` is a line under it."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class FigureBlock:
    """A written figure: ``file`` is its name in the report folder; ``svg`` its text when it is an
    SVG to inline."""

    title: str
    caption: str
    file: str
    svg: str | None = None


@dataclass(frozen=True)
class Prerendered:
    """The same content already rendered in both formats (e.g. the leaderboard's own tables)."""

    markdown: str
    html: str


Block = Union[Paragraph, Bullets, Table, FigureBlock, Prerendered]


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]
    anchor: str = ""


@dataclass(frozen=True)
class Page:
    title: str
    intro: tuple[Block, ...]
    sections: tuple[Section, ...] = field(default_factory=tuple)


def markdown_cell(text: str) -> str:
    """A table cell: pipes escaped, line breaks as spaces."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(markdown_cell(h) for h in table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(markdown_cell(cell) for cell in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", table.caption]
    return "\n".join(lines)


def markdown_block(block: Block) -> str:
    """One block as markdown."""
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        return markdown_table(block)
    if isinstance(block, FigureBlock):
        return f"![{block.title}]({block.file})\n\n*{block.title}.* {block.caption}"
    return block.markdown.rstrip("\n")


def render_markdown(page: Page) -> str:
    """The page as markdown; figures link their files by name (same folder)."""
    parts = [f"# {page.title}", *[markdown_block(block) for block in page.intro]]
    for section in page.sections:
        parts.append(f"## {section.title}")
        parts += [markdown_block(block) for block in section.blocks]
    return "\n\n".join(parts) + "\n"
