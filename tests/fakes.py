"""One small fake per seam (core/seams.py), for control-flow tests that must not load a model:
a scripted chat model that reports usage, a constant embedder, an in-memory memory store and
a flat critic. Tests of what the real parts do use the real parts (see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_core.messages import BaseMessage

from core.records import Episode, MemoryRecord, RecallCount, Recalled, Reply, Scores
from core.seams import OnText

Script = Callable[[Sequence[BaseMessage], int], str]


@dataclass
class ScriptedChatModel:
    """Answers each conversation with ``script(messages, call number)``; every reply reports
    its prompt tokens (one per word of the prompt) and completion tokens (one per word)."""

    script: Script
    name: str = "scripted"
    calls: list[dict[str, Any]] = field(default_factory=list)

    def complete(self, conversations: Sequence[Sequence[BaseMessage]], *, seed: int | None = None,
                 adapters: Sequence[str] | None = None, temperature: float | None = None,
                 max_new_tokens: int | None = None, on_text: OnText | None = None, candidates: int = 1,
                 avoid: Sequence[Any] | None = None, block_ngrams: int = 4) -> list[Reply]:
        """``candidates`` replies per conversation, conversation-major, as the real backends."""
        number = len(self.calls)
        self.calls.append({"size": len(conversations), "seed": seed, "adapters": adapters,
                           "temperature": temperature, "max_new_tokens": max_new_tokens,
                           "candidates": candidates, "avoid": avoid})
        replies = []
        for row, messages in enumerate(conversations):
            for _ in range(candidates):
                text = self.script(messages, number)
                if on_text is not None:
                    on_text(row, text)
                prompt = sum(len(str(m.content).split()) for m in messages)
                replies.append(Reply(text=text, prompt_tokens=prompt, completion_tokens=len(text.split())))
        return replies

    def choice_probabilities(self, conversations: Sequence[Sequence[BaseMessage]],
                             choices: Sequence[str]) -> np.ndarray:
        return np.full((len(conversations), len(choices)), 1.0 / len(choices))

    def reply_losses(self, conversations: Sequence[Sequence[BaseMessage]], replies: Sequence[str],
                     adapter: str | None = None) -> list[tuple[float, int]]:
        return [(float(len(r.split())), len(r.split())) for r in replies]

    def label(self, adapter: str | None = None) -> str:
        return f"{self.name}+{adapter}" if adapter else self.name


def says(*lines: str) -> Script:
    """A script that says ``lines`` in turn, one per reply asked for, then repeats the last."""
    said: list[str] = []

    def script(messages: Sequence[BaseMessage], number: int) -> str:
        said.append(lines[min(len(said), len(lines) - 1)])
        return said[-1]

    return script


@dataclass
class ConstantEmbedder:
    """Every text is the same unit vector: similarity 1 everywhere."""

    dimension: int = 8
    path: str = "constant"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        rows[:, 0] = 1.0
        return rows


@dataclass
class InMemoryMemoryStore:
    """Memories in a list; a search returns the owner's latest ``k`` (no embeddings). Counts
    its `search_many` calls, so tests can see one call per store per turn."""

    records: list[tuple[str, MemoryRecord]] = field(default_factory=list)
    searches: int = 0
    reinforced: list[str] = field(default_factory=list)
    recall_counts: dict[str, RecallCount] = field(default_factory=dict)

    def add(self, records: Sequence[MemoryRecord]) -> list[str]:
        ids = []
        for record in records:
            mid = f"{record.owner}:{len(self.records)}"
            self.records.append((mid, record))
            ids.append(mid)
        return ids

    def search(self, owner: str, query: str, k: int, now: float) -> list[Recalled]:
        return self.search_many([(owner, query)], k, now)[0]

    def search_many(self, requests: Sequence[tuple[str, str]], k: int, now: float,
                    reinforce: bool = True) -> list[list[Recalled]]:
        self.searches += 1
        found = [[Recalled(mid, r.text, r.kind, 1.0, 1.0, {"episode_id": r.episode_id})
                  for mid, r in reversed(self.records) if r.owner == owner][:k] for owner, _ in requests]
        if reinforce:
            self.reinforce([m for memories in found for m in memories], now)
        return found

    def reinforce(self, recalled: Sequence[Recalled], now: float) -> None:
        self.reinforced.extend(m.id for m in recalled)

    def set_recalls(self, recalls: Mapping[str, RecallCount]) -> None:
        self.recall_counts.update(recalls)

    def forget(self, owner: str, now: float) -> int:
        return 0

    def forget_episodes(self, episode_ids: Sequence[str]) -> None:
        self.records = [(mid, r) for mid, r in self.records if r.episode_id not in set(episode_ids)]

    def count(self, owner: str | None = None) -> int:
        return sum(owner is None or r.owner == owner for _, r in self.records)

    def memories(self, owner: str) -> list[dict[str, Any]]:
        return [{"id": mid, "text": r.text, "kind": r.kind, "episode_id": r.episode_id}
                for mid, r in self.records if r.owner == owner]

    def get(self, ids: Sequence[str]) -> dict[str, str]:
        return {mid: r.text for mid, r in self.records if mid in set(ids)}


@dataclass
class FlatCritic:
    """Scores every episode 3 on one dimension."""

    dimensions: dict[str, Any] = field(default_factory=dict)

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Any] | None = None) -> list[Scores]:
        return [Scores({"flat": 3.0}, {"flat": "flat critic"}, 3.0) for _ in episodes]
