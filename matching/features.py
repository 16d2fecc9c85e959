"""What score-based policies read from characters: personas, their embeddings (computed once per
run and cached on the policy), MBTI overlap, and how often two characters have met."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import networkx as nx
import numpy as np

from agents.persona import Persona
from core.seams import Embedder
from matching.scorers import persona_texts


class HasPersona(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def persona(self) -> Persona: ...


def default_embedder() -> Embedder:
    """The bundled MiniLM (loaded on its first call)."""
    from memory.embedder import SentenceEmbedder

    return SentenceEmbedder()


class PersonaVectors:
    """Persona embeddings by persona id: each persona is embedded once, the first time it is seen."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    def __call__(self, personas: Sequence[Persona]) -> np.ndarray:
        """L2-normalised rows, one per persona."""
        missing = list({p.id: p for p in personas if p.id not in self._vectors}.values())
        if missing:
            for persona, vector in zip(missing, self.embedder(persona_texts(missing)), strict=True):
                self._vectors[persona.id] = np.asarray(vector, dtype=np.float32)
        if not personas:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[p.id] for p in personas])


def personas_of(characters: Sequence[HasPersona]) -> list[Persona]:
    try:
        return [c.persona for c in characters]
    except AttributeError:
        raise TypeError("this pairing policy reads personas: pass characters with a .persona") from None


def mbti_overlap(personas: Sequence[Persona]) -> np.ndarray:
    """Shared MBTI letters / 4 for every pair (0 when either type is unknown)."""
    letters = np.array([list(p.mbti) if len(p.mbti) == 4 else ["?"] * 4 for p in personas]).reshape(-1, 4)
    known = np.array([len(p.mbti) == 4 for p in personas])
    shared = (letters[:, None, :] == letters[None, :, :]).sum(axis=2) / 4.0
    return np.where(known[:, None] & known[None, :], shared, 0.0)


def times_met(characters: Sequence[HasPersona], graph: nx.Graph) -> np.ndarray:
    """Episodes each pair has had so far (the graph's edge counts)."""
    index = {c.name: i for i, c in enumerate(characters)}
    counts = np.zeros((len(characters), len(characters)))
    for a, b, episodes in graph.edges(data="episodes", default=0):
        if a in index and b in index:
            counts[index[a], index[b]] = counts[index[b], index[a]] = episodes
    return counts


def standardise(matrix: np.ndarray) -> np.ndarray:
    """Z-scores over the finite off-diagonal cells, so penalties and bonuses share one unit."""
    mask = ~np.eye(len(matrix), dtype=bool) & np.isfinite(matrix)
    if not mask.any():
        return np.zeros_like(matrix, dtype=np.float64)
    values = matrix[mask]
    spread = values.std()
    centred = (matrix - values.mean()) / (spread if spread > 1e-12 else 1.0)
    return np.where(np.isfinite(matrix), centred, -np.inf)
