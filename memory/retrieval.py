"""Ranking memories by relevance, recency and importance, with MemoryBank-style forgetting.

Time is the simulation clock (rounds), not wall time, so a run's memory behaves the same
however fast the machine is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import is_number, require


@dataclass(frozen=True)
class RetrievalWeights:
    """Weights of the three retrieval signals (Generative Agents), and recency's time scale."""

    relevance: float = 1.0
    recency: float = 0.5
    importance: float = 0.5
    recency_scale: float = 5.0

    def __post_init__(self) -> None:
        if min(self.relevance, self.recency, self.importance) < 0:
            raise ValueError("retrieval weights must be >= 0")
        if self.recency_scale <= 0:
            raise ValueError("recency_scale must be > 0")


@dataclass(frozen=True)
class Forgetting:
    """MemoryBank's curve: retention = exp(-elapsed / strength); each recall adds to strength."""

    enabled: bool = True
    initial_strength: float = 3.0
    reinforcement: float = 1.0
    threshold: float = 0.05

    def __post_init__(self) -> None:
        require(isinstance(self.enabled, bool), "enabled", "allowed is true or false", self.enabled)
        for name in ("initial_strength", "reinforcement"):
            require(is_number(getattr(self, name), 0), name, "allowed is a number >= 0", getattr(self, name))
        require(is_number(self.threshold, 0, 1), "threshold", "allowed is a number from 0 to 1",
                self.threshold)

    def retention(self, elapsed: float, strength: float) -> float:
        if not self.enabled:
            return 1.0
        return math.exp(-max(elapsed, 0.0) / max(strength, 1e-6))

    def is_forgotten(self, elapsed: float, strength: float) -> bool:
        return self.enabled and self.retention(elapsed, strength) < self.threshold


def memory_score(
    weights: RetrievalWeights, similarity: float, elapsed: float, importance: float
) -> float:
    """Weighted sum of relevance (cosine clipped to [0, 1]), recency and importance."""
    relevance = min(max(similarity, 0.0), 1.0)
    recency = math.exp(-max(elapsed, 0.0) / weights.recency_scale)
    return (weights.relevance * relevance + weights.recency * recency
            + weights.importance * importance)
