"""A memory store that changes only what a search returns: the base of the stores that wrap
another (the trained selector's re-ranking, the interview's withheld answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.records import MemoryRecord, RecallCount, Recalled
from core.seams import MemoryStore


class FilteredRecall:
    """Searches fetch ``fetch_k(k)`` candidates from ``store`` without reinforcing them, keep
    what ``keep`` returns, and reinforce only those; everything else is the wrapped store's."""

    store: MemoryStore

    def fetch_k(self, k: int) -> int:
        return k

    def keep(self, requests: Sequence[tuple[str, str]], found: list[list[Recalled]], k: int
             ) -> list[list[Recalled]]:
        raise NotImplementedError

    def search_many(self, requests: Sequence[tuple[str, str]], k: int, now: float,
                    reinforce: bool = True) -> list[list[Recalled]]:
        kept = self.keep(requests, self.store.search_many(requests, self.fetch_k(k), now, reinforce=False), k)
        if reinforce:
            self.store.reinforce([m for memories in kept for m in memories], now)
        return kept

    def search(self, owner: str, query: str, k: int, now: float) -> list[Recalled]:
        return self.search_many([(owner, query)], k, now)[0]

    def add(self, records: Sequence[MemoryRecord]) -> list[str]:
        return self.store.add(records)

    def reinforce(self, recalled: Sequence[Recalled], now: float) -> None:
        self.store.reinforce(recalled, now)

    def set_recalls(self, recalls: Mapping[str, RecallCount]) -> None:
        self.store.set_recalls(recalls)

    def forget(self, owner: str, now: float) -> int:
        return self.store.forget(owner, now)

    def forget_episodes(self, episode_ids: Sequence[str]) -> None:
        self.store.forget_episodes(episode_ids)

    def count(self, owner: str | None = None) -> int:
        return self.store.count(owner)

    def memories(self, owner: str) -> list[dict[str, Any]]:
        return self.store.memories(owner)

    def get(self, ids: Sequence[str]) -> dict[str, str]:
        return self.store.get(ids)

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()
