"""Cards: a machine-readable ``card.json`` and a human ``README.md`` beside every dataset and
registered model, so a folder says where it came from without the code that made it."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.models.registry import CARD, README
from environment.markdown import markdown_cell, markdown_table


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp (seconds)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def write_card(folder: Path, card: Mapping[str, Any], readme: str) -> None:
    """Write ``card.json`` (sorted keys, NaN as null) and ``README.md`` into ``folder``."""
    text = json.dumps(_jsonable(card), indent=2, sort_keys=True, ensure_ascii=False)
    (folder / CARD).write_text(text + "\n", encoding="utf-8")
    (folder / README).write_text(readme.rstrip() + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [_jsonable(v) for v in items]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table, floats to 4 significant digits."""
    return markdown_table(header, rows, _cell)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else markdown_cell(value)


def listing(names: Sequence[str], limit: int = 20, empty: str = "(none)") -> str:
    """Up to ``limit`` names, then how many there are in all."""
    shown = ", ".join(names[:limit])
    return f"{shown}, … ({len(names)} in all)" if len(names) > limit else shown or empty


def render_dataset_readme(card: Mapping[str, Any]) -> str:
    """The human dataset card: sources, filters, splits, dropped examples, columns."""
    parts = [f"# Salon dataset: {card.get('kind', 'unknown')}", "",
             f"Built {card.get('created', '?')} from {len(card.get('runs', []))} run(s).", ""]
    if card.get("notes"):
        parts += [str(card["notes"]), ""]
    parts += ["## Source runs", "", table(["run", "path", "episodes"], [
        (r["name"], r["path"], r["episodes"]) for r in card.get("runs", [])]), ""]
    if card.get("filter"):
        parts += ["## Filters", "", table(["setting", "value"], card["filter"].items()), ""]
    characters = card.get("characters", {})
    parts += ["## Splits", "", table(["split", "examples", "characters"], [
        (name, count, len(characters.get(name, []))) for name, count in card.get("counts", {}).items()]), ""]
    parts += [f"- **{name}** characters: {listing(list(names))}" for name, names in characters.items()]
    dropped = card.get("dropped", {})
    parts += ["", "## Dropped", "", table(["reason", "count"], dropped.items()) if dropped else "None.", ""]
    warnings = card.get("warnings", {})
    if warnings:
        parts += ["## Warnings", "", table(["warning", "examples"], warnings.items()), ""]
    parts += ["## Columns", "", ", ".join(f"`{c}`" for c in card.get("columns", [])), "",
              "Load with `datasets.load_from_disk(<this folder>)`; `card.json` holds this card."]
    return "\n".join(parts)


def render_model_readme(card: Mapping[str, Any]) -> str:
    """The human model card: what, from which base and data, how well, which files."""
    ref = f"{card.get('name')}:{card.get('version')}"
    parts = [f"# {ref}", "", f"- kind: {card.get('kind')}", f"- base model: {card.get('base_model')}",
             f"- registered: {card.get('registered')}", ""]
    metrics = card.get("metrics") or {}
    shown = table(["metric", "value"], metrics.items()) if metrics else "None recorded."
    parts += ["## Metrics", "", shown, ""]
    dataset = card.get("dataset") or {}
    if dataset:
        counts = ", ".join(f"{k}: {v}" for k, v in dataset.get("counts", {}).items())
        runs = ", ".join(r.get("name", "?") for r in dataset.get("runs", []))
        parts += ["## Training data", "", f"- kind: {dataset.get('kind', '?')}", f"- examples: {counts}",
                  f"- source runs: {runs or '?'}", f"- built: {dataset.get('created', '?')}", ""]
    parts += ["## Files", "", table(["file", "bytes", "sha256"], [
        (f["path"], f["bytes"], f["sha256"][:16]) for f in card.get("files", [])]), "",
        f"Resolve with `ModelRegistry(root).resolve({ref!r})`; `card.json` holds this card."]
    return "\n".join(parts)
