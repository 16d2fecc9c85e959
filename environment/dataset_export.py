"""A run's episodes as a Hugging Face `datasets` folder (`<run>/dataset/`, Arrow files that
`datasets.load_from_disk` reads) with a dataset card (README.md: the config, model, critic and
counts). One row per episode; maps whose keys are the run's own names (personas, roles, scores,
reasons) are JSON strings, since Arrow columns need one schema for every row."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.files import publish_folder, staging_folder
from core.records import Episode

FOLDER = "dataset"


def episode_row(episode: Episode) -> dict[str, Any]:
    data = episode.to_dict()
    turns = [{"speaker": t["speaker"], "text": t["text"], "model": t.get("model", ""),
              "goal": t.get("goal", ""), "error": t.get("error", ""), "memories": list(t.get("memories", []))}
             for t in data["turns"]]
    return {"id": episode.id, "round": episode.round, "participants": list(episode.participants),
            "model": episode.model, "stop_reason": episode.stop_reason, "turns": turns,
            "overall": (data["scores"] or {}).get("overall"),
            "scores": json.dumps(data["scores"]), "score_reasons": json.dumps(data["score_reasons"]),
            "personas": json.dumps(data["personas"]), "roles": json.dumps(data["roles"]),
            "scene": json.dumps(data["scene"]), "character_ids": json.dumps(data["character_ids"])}


def write_dataset(folder: Path, episodes: Sequence[Episode], summary: Mapping[str, str],
                  config_text: str = "") -> Path:
    """``folder``/dataset, written whole or not at all (a staging folder, then a rename)."""
    from datasets import Dataset

    target = Path(folder) / FOLDER
    rows = [episode_row(e) for e in episodes]
    with staging_folder(target) as staging:
        Dataset.from_list(rows).save_to_disk(str(staging / "data"))
        for item in (staging / "data").iterdir():
            item.rename(staging / item.name)
        (staging / "data").rmdir()
        (staging / "README.md").write_text(card(rows, summary, config_text), encoding="utf-8")
        old = target.with_name(f".{FOLDER}.replaced")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():  # an earlier export of this run (before a resume) is replaced
            target.rename(old)
        publish_folder(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    return target


def card(rows: Sequence[dict[str, Any]], summary: Mapping[str, str], config_text: str) -> str:
    rated = [r["overall"] for r in rows if r["overall"] is not None]
    stops: dict[str, int] = {}
    for row in rows:
        stops[row["stop_reason"]] = stops.get(row["stop_reason"], 0) + 1
    lines = ["---", "tags: [salon, dialogue, persona, simulation]", "---", "",
             "# Salon episodes", "",
             "Episodes of one Salon run, one row per episode. Load with "
             "`datasets.load_from_disk(\"<run>/dataset\")`.", "",
             f"- episodes: {len(rows)}; turns: {sum(len(r['turns']) for r in rows)}; rated: {len(rated)}",
             f"- mean overall score: {sum(rated) / len(rated):.3f}" if rated else "- mean overall score: n/a",
             f"- stop reasons: {', '.join(f'{k} {v}' for k, v in sorted(stops.items()))}", ""]
    lines += [f"- {key}: {value}" for key, value in summary.items()]
    if config_text:
        lines += ["", "## Config", "", "```yaml", config_text.strip(), "```"]
    return "\n".join(lines) + "\n"
