"""Which memories the stored episodes recalled, how often, and when last. Reinforcement
(MemoryBank) is a function of this history, so the store's state follows from the committed
episodes alone and can be set again after a crash (`MemoryStore.set_recalls`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from core.records import RecallCount

# one episode's recalls: per turn, the recalled memory ids and the turn's simulation time
TurnRecalls = Sequence[tuple[Sequence[str], float]]


class RecallHistory:
    def __init__(self) -> None:
        self._counts: dict[str, RecallCount] = {}

    def add(self, turns: TurnRecalls) -> dict[str, RecallCount]:
        """Count one committed episode's recalls (a memory once per turn); the updated entries."""
        touched: dict[str, RecallCount] = {}
        for ids, at in turns:
            for memory in dict.fromkeys(ids):
                old = self._counts.get(memory, RecallCount(0, -math.inf))
                self._counts[memory] = touched[memory] = RecallCount(old.count + 1, max(old.last, at))
        return touched

    def of(self, ids: Iterable[str]) -> dict[str, RecallCount]:
        """The counts of these memories that were recalled."""
        return {memory: self._counts[memory] for memory in ids if memory in self._counts}

    def at(self, ids: Iterable[str]) -> dict[str, RecallCount]:
        """The counts of these memories, never-recalled ones included (count 0)."""
        return {memory: self._counts.get(memory, RecallCount(0, -math.inf)) for memory in ids}
