"""What a learning-loop generation is measured by, on characters that never train: the critic
(per dimension, 95% CIs) and, independent of it, degeneration measures, Persona-Chat perplexity
and F1, and the human-vs-Salon discriminator; and a real test of the difference (Welch's t)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.degeneration import run_degeneration
from core.records import Episode
from core.stats import mean_ci
from environment.store import SQLiteEpisodeStore


@dataclass
class Generation:
    """What one generation measured (mutable while it runs; loop.json holds it)."""

    index: int
    adapter: str
    held_out_scores: dict[str, list[float]] = field(default_factory=dict)
    degeneration: dict[str, Any] = field(default_factory=dict)
    episodes: int = 0
    perplexity: float = math.nan
    f1: float = math.nan
    discriminator_auc: float = math.nan
    dataset: dict[str, int] = field(default_factory=dict)
    train_loss: float | None = None
    eval_loss: float | None = None
    train_tokens_per_second: float | None = None
    trained_adapter: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    done: bool = False

    def summary(self) -> dict[str, list[float]]:
        """Dimension -> [mean, 95% half-width, n] on held-out characters."""
        return {d: list(mean_ci(v)) for d, v in self.held_out_scores.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Generation:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: (math.nan if v is None and k in ("perplexity", "f1", "discriminator_auc") else v)
                  for k, v in data.items() if k in known}
        return cls(**values)


def held_out_episodes(run: Path, held_out: Sequence[str]) -> list[Episode]:
    """The scored episodes of ``run`` in which a held-out character took part."""
    store = SQLiteEpisodeStore(run / "episodes.sqlite")
    try:
        return [e for e in store.episodes() if set(e.character_ids.values()) & set(held_out) and e.scores]
    finally:
        store.close()


def scores_by_dimension(episodes: Sequence[Episode]) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {}
    for episode in episodes:
        assert episode.scores is not None
        for dimension, value in {**episode.scores.values, "overall": episode.scores.overall}.items():
            if not np.isnan(value):
                scores.setdefault(dimension, []).append(float(value))
    return scores


def degeneration_of(episodes: Sequence[Episode]) -> dict[str, Any]:
    rows = [([t.speaker for t in e.turns if not t.failed], [t.text for t in e.turns if not t.failed],
             len(e.turns), e.stop_reason) for e in episodes]
    return dataclasses.asdict(run_degeneration(rows))


def jsonable(generation: Generation) -> dict[str, Any]:
    data = dataclasses.asdict(generation)
    for key in ("perplexity", "f1", "discriminator_auc"):
        if isinstance(data[key], float) and math.isnan(data[key]):
            data[key] = None
    return data | {"summary": generation.summary()}
