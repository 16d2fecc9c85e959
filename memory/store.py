"""The memory store contract and its chromadb implementation (persistent on disk or a server)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
COLLECTION = "memories"


@dataclass(frozen=True)
class MemoryRecord:
    """A memory to store for ``owner`` (a character id) at simulation time ``created``."""

    owner: str
    text: str
    kind: str
    importance: float
    created: float
    episode_id: str = ""

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("a memory needs text")
        if not 0.0 <= self.importance <= 1.0:
            raise ValueError("importance must be within [0, 1]")


@dataclass(frozen=True)
class Recalled:
    """A memory returned by a search, with the parts of its score."""

    id: str
    text: str
    kind: str
    score: float
    similarity: float
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


class MemoryStore(Protocol):
    def add(self, records: Sequence[MemoryRecord]) -> list[str]: ...

    def search(self, owner: str, query: str, k: int, now: float) -> list[Recalled]: ...

    def search_many(self, requests: Sequence[tuple[str, str]], k: int, now: float
                    ) -> list[list[Recalled]]: ...

    def forget(self, owner: str, now: float) -> int: ...

    def forget_episodes(self, episode_ids: Sequence[str]) -> None: ...

    def count(self, owner: str | None = None) -> int: ...
