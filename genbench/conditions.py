"""Conditions on the rows of a frame (``--where COLUMN=V1,V2``, ``level<=0.5``) and the
comma-separated values of command-line flags: what ``genbench runs`` and the leaderboard filter by."""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genbench.errors import SpecError, UnknownNameError

if TYPE_CHECKING:  # pandas is imported where a frame is filtered: parsing flags stays light
    import pandas as pd


def split_values(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes: ``"1,[2,3]"`` → ``["1", "[2,3]"]``.
    Empty parts are dropped."""
    parts, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, null, lists), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_values(text: str, flag: str) -> list[Any]:
    """The comma-separated values of one flag (see ``split_values`` and ``parse_value``)."""
    values = [parse_value(part) for part in split_values(text)]
    if not values:
        raise SpecError(f"{flag} expects one or more comma-separated values, got '{text}'")
    return values


#: ``COLUMN OPERATOR VALUES``; two-character operators first, so that ``<=`` is not read as ``<``.
WHERE_PATTERN = re.compile(r"^\s*([^=!<>]+?)\s*(!=|<=|>=|=|<|>)\s*(.*)$")


@dataclass(frozen=True)
class Condition:
    """One ``--where`` filter: ``column`` compared with ``values`` by ``operator``."""

    column: str
    operator: str
    values: tuple[Any, ...]

    @classmethod
    def parse(cls, text: str) -> "Condition":
        """``COLUMN=V1,V2`` (any of), ``COLUMN!=V1,V2`` (none of), or ``COLUMN<V`` (also ``<=``, ``>``, ``>=``)."""
        match = WHERE_PATTERN.match(text)
        if match is None:
            raise SpecError(f"--where expects COLUMN=VALUE (or !=, <, <=, >, >=), got '{text}'")
        column, operator, rest = match.groups()
        values = tuple(parse_values(rest, f"--where {column}"))
        if operator not in ("=", "!=") and (len(values) != 1 or not _is_number(values[0])):
            raise SpecError(f"--where {column}{operator} expects one number, got '{rest}'")
        return cls(column, operator, values)

    def matches(self, cell: Any) -> bool:
        """Whether one cell of the column passes."""
        if self.operator == "=":
            return any(_equal(cell, value) for value in self.values)
        if self.operator == "!=":
            return not any(_equal(cell, value) for value in self.values)
        if not _is_number(cell) or (isinstance(cell, float) and math.isnan(cell)):
            return False
        bound = float(self.values[0])
        return {"<": cell < bound, "<=": cell <= bound, ">": cell > bound, ">=": cell >= bound}[self.operator]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(cell: Any, value: Any) -> bool:
    """A cell equals a ``--where`` value: as numbers, as text (case-insensitive), or as a component's
    name (``mlp`` matches the label ``mlp(hidden=[512])``)."""
    if _is_number(cell) and _is_number(value):
        return float(cell) == float(value)
    text, wanted = _text(cell), _text(value)
    return text == wanted or text.startswith(wanted + "(")


def _text(value: Any) -> str:
    """A cell or a value as text: None and NaN read "null", booleans "true" / "false"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, bool):
        return json.dumps(value)
    return str(value).lower()


def apply_where(frame: pd.DataFrame, conditions: list[Condition]) -> pd.DataFrame:
    """The rows of ``frame`` that pass every condition; an unknown column is one UnknownNameError."""
    import pandas as pd

    for condition in conditions:
        if condition.column not in frame.columns:
            close = difflib.get_close_matches(condition.column, list(frame.columns), n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise UnknownNameError(
                f"unknown --where column '{condition.column}'; {hint}columns: {', '.join(frame.columns)}"
            )
        keep = [condition.matches(cell) for cell in frame[condition.column].tolist()]
        frame = frame.loc[pd.Series(keep, index=frame.index, dtype=bool)]
    return frame
