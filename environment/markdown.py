"""Markdown tables for the reports (run, comparison, model and dataset cards)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any


def markdown_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]],
                   cell: Callable[[Any], str] = markdown_cell) -> str:
    """A Markdown table; ``cell`` renders each value (escaping pipes and newlines by default)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
