"""The leaderboard's own table on a report page, in markdown and in HTML, as
``genbench.report.leaderboard.render`` formats it (its HTML where it has one, else its markdown
converted)."""

from __future__ import annotations

import re
from typing import get_args

import pandas as pd

from genbench.report.leaderboard import Format, render
from genbench.report.page_html import markdown_tables_to_html


def leaderboard_html(board: pd.DataFrame, markdown: str) -> str:
    """The board as an HTML fragment: the leaderboard's own HTML format where it has one (the
    inside of its ``<body>`` when it writes a whole document), else ``markdown`` converted."""
    if "html" not in get_args(Format):
        return markdown_tables_to_html(markdown)
    text = render(board, "html")  # type: ignore[arg-type]
    body = re.search(r"<body[^>]*>(.*)</body>", text, flags=re.DOTALL | re.IGNORECASE)
    return body.group(1) if body else text


def leaderboard_tables(board: pd.DataFrame) -> tuple[str, str]:
    """The board's table as (markdown, HTML)."""
    markdown = render(board, "markdown")
    return markdown, leaderboard_html(board, markdown)
