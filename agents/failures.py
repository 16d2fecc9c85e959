"""Critic experts for what a small generator does wrong, each with a reason naming the line:
copying (the partner's line, one's own earlier line, a recalled memory), addressing oneself by
name, reciting a persona fact instead of using it, and contradicting one's own persona facts.
On the critic's 1-5 scale 5 means the failure never happens; each failing line costs ``cost``.
In `overall` they act as gates (conf/critic/default.yaml): one failure pulls the whole score
down, not only its own dimension."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from agents.degeneration import addresses, copies, recites
from core.records import Episode, Turn
from core.seams import Judgement

NAN = math.nan


def _spoken(episode: Episode) -> list[Turn]:
    return [t for t in episode.turns if not t.failed]


def _value(failures: list[str], cost: float, dimension: str, none: str) -> Judgement:
    value = max(1.0, 5.0 - cost * len(failures))
    return {dimension: (value, "; ".join(failures[:3]) + (" ..." if len(failures) > 3 else "") or none)}


@dataclass
class Copying:
    """A line that nearly repeats the partner's earlier line, the speaker's own earlier line or a
    memory recalled for it (agents.degeneration.copies: word-set Jaccard >= 0.6 or 6 shared
    consecutive words)."""

    cost: float = 2.0
    dimension: str = "copying"

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Any]) -> list[Judgement]:
        return [self._one(e) for e in episodes]

    def _one(self, episode: Episode) -> Judgement:
        turns = _spoken(episode)
        if len(turns) < 2:
            return {self.dimension: (NAN, "fewer than two lines")}
        found = [f for i, turn in enumerate(turns) if (f := _copy(turn, turns[:i], i))]
        return _value(found, self.cost, self.dimension, "no line copies another or a memory")


def _copy(turn: Turn, earlier: Sequence[Turn], index: int) -> str:
    for j in range(len(earlier) - 1, -1, -1):
        if copies(turn.text, earlier[j].text):
            whose = "its own" if earlier[j].speaker == turn.speaker else "the partner's"
            return f"line {index + 1} copies {whose} line {j + 1}"
    memory = next((m for m in turn.memories if copies(turn.text, m)), None)
    return f"line {index + 1} recites a recalled memory" if memory else ""


@dataclass
class SelfAddress:
    """A line that addresses its own speaker by name ("David, I'm so glad..." said by David)."""

    cost: float = 2.0
    dimension: str = "self_address"

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Any]) -> list[Judgement]:
        return [self._one(e) for e in episodes]

    def _one(self, episode: Episode) -> Judgement:
        turns = _spoken(episode)
        if not turns:
            return {self.dimension: (NAN, "no lines")}
        found = [f"line {i + 1}: {t.speaker} addresses themself" for i, t in enumerate(turns)
                 if addresses(t.text, t.speaker)]
        return _value(found, self.cost, self.dimension, "nobody addresses themself")


@dataclass
class Recitation:
    """A line that restates one of the speaker's persona facts nearly word for word instead of
    using it in conversation (agents.degeneration.recites)."""

    cost: float = 2.0
    dimension: str = "recitation"

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Any]) -> list[Judgement]:
        return [self._one(e) for e in episodes]

    def _one(self, episode: Episode) -> Judgement:
        turns = _spoken(episode)
        if not turns or not any(episode.personas.values()):
            return {self.dimension: (NAN, "no lines or no persona facts")}
        found = [f"line {i + 1} recites a persona fact" for i, t in enumerate(turns)
                 if any(recites(t.text, fact) for fact in episode.personas.get(t.speaker, ()))]
        return _value(found, self.cost, self.dimension, "no line recites a persona fact")


@dataclass
class Contradiction:
    """A line that contradicts one of its speaker's own persona facts: an NLI-style cross-encoder
    fine-tuned from the bundled MiniLM (`task=train training.target=contradiction`, registered
    as ``scorer``) reads (fact, line) pairs; a line counts when P(contradiction) >= ``threshold``
    for some fact. Without a registered scorer the dimension is not applicable (NaN, with the
    command that trains one)."""

    scorer: str | None = "contradiction"
    registry_root: str = "."
    threshold: float = 0.5
    cost: float = 2.0
    dimension: str = "contradiction"

    @cached_property
    def encoder(self) -> Any:
        from agents.models.registry import RegistryReader
        from core.errors import UsageError
        from memory.crossencoder import CrossEncoder

        if not self.scorer:
            return None
        try:
            found = RegistryReader(self.registry_root).verified(self.scorer)
        except UsageError:
            return None
        return CrossEncoder.load(found.path, dtype="auto")

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Any]) -> list[Judgement]:
        if self.encoder is None:
            missing = (NAN, f"no contradiction scorer {self.scorer!r} registered; train one with "
                            "python run.py task=train training.target=contradiction")
            return [{self.dimension: missing} for _ in episodes]
        pairs = [(e, i, fact, t.text) for e in episodes for i, t in enumerate(_spoken(e))
                 for fact in e.personas.get(t.speaker, ())]
        probabilities = self.encoder.predict([p[2] for p in pairs], [p[3] for p in pairs]) if pairs else []
        flagged: dict[int, set[int]] = {}
        for (episode, index, _, _), p in zip(pairs, probabilities, strict=True):
            if p >= self.threshold:
                flagged.setdefault(id(episode), set()).add(index)
        return [self._one(e, flagged.get(id(e), set())) for e in episodes]

    def _one(self, episode: Episode, lines: set[int]) -> Judgement:
        if not _spoken(episode) or not any(episode.personas.values()):
            return {self.dimension: (NAN, "no lines or no persona facts")}
        found = [f"line {i + 1} contradicts a persona fact of its speaker" for i in sorted(lines)]
        return _value(found, self.cost, self.dimension, "no line contradicts its speaker's facts")
