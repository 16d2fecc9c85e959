"""Predicted compatibility as a pairing policy: a trained compatibility scorer from the registry
(``matching.scorer=<name[:version]>``), or persona-embedding similarity when none is given.

A registry ref is checked when the policy is built (kind, base model, regression task: one
line and exit code 2 if wrong); the cross-encoder itself loads on the first round."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import numpy as np

from agents.models.registry import RegisteredModel, RegistryReader, resolve_model
from agents.persona import Persona
from core.errors import UsageError
from matching.assignment import EXACT_LIMIT
from matching.features import Embedder, default_embedder, personas_of, standardise
from matching.policies import C
from matching.preference import ScorePairing
from matching.scorers import (
    CompatibilityScorer,
    EmbeddingCompatibility,
    TrainedCompatibility,
    persona_texts,
)
from memory.crossencoder import MINILM_NAME, read_scorer_info

SCORER_KEY = "matching.scorer"


def resolve_scorer(ref: str, registry_root: str | Path, key: str = SCORER_KEY) -> RegisteredModel:
    """A registered compatibility scorer trained from MiniLM, or a one-line UsageError."""
    found = resolve_model(RegistryReader(Path(registry_root)), ref, "scorer", MINILM_NAME, key)
    task = read_scorer_info(found.path).task
    if task != "regression":
        raise UsageError(f"{key}={ref}: {found.ref} is a {task} scorer; a compatibility scorer is "
                         "trained with task=train training.target=compatibility")
    return found


def build_scorer(ref: str | None, registry_root: str | Path = ".", embedder: Embedder | None = None,
                 shortlist: int = 32, key: str = SCORER_KEY) -> CompatibilityScorer:
    """The trained scorer ``ref`` (its cross-encoder loads now), or embedding similarity."""
    embedder = embedder or default_embedder()
    if not ref:
        return EmbeddingCompatibility(embedder)
    found = resolve_scorer(ref, registry_root, key)
    return TrainedCompatibility(str(found.path), embedder=embedder, shortlist=shortlist)


class CompatibilityPrior:
    """Expected compatibility of every pair of a society (1-5, symmetric, diagonal ``-inf``).

    Roles are drawn after pairing, so a pair's value is the mean of both seeker/supporter
    directions (the one the scorer evaluated if it skipped the other). The matrix is computed
    once over all characters and cached; rounds index into it."""

    def __init__(self, scorer: str | None = None, registry_root: str = ".",
                 embedder: Embedder | None = None, shortlist: int = 32) -> None:
        self.ref = scorer or None
        self.registry_root = registry_root
        self.shortlist = shortlist
        self._embedder = embedder
        if self.ref:
            resolve_scorer(self.ref, registry_root)  # fail before any model loads
        self._scorer: CompatibilityScorer | None = None
        self._index: dict[str, int] = {}
        self._matrix = np.zeros((0, 0))

    @property
    def scorer(self) -> CompatibilityScorer:
        if self._scorer is None:
            self._scorer = build_scorer(self.ref, self.registry_root, self._embedder, self.shortlist)
        return self._scorer

    def __call__(self, everyone: Sequence[Persona], subset: Sequence[Persona]) -> np.ndarray:
        if any(p.id not in self._index for p in [*everyone, *subset]):
            union = list({p.id: p for p in [*everyone, *subset]}.values())
            self._matrix = symmetric_expectation(self.scorer.score_matrix(*[persona_texts(union)] * 2))
            self._index = {p.id: i for i, p in enumerate(union)}
        rows = [self._index[p.id] for p in subset]
        return self._matrix[np.ix_(rows, rows)]


def symmetric_expectation(matrix: np.ndarray) -> np.ndarray:
    """Mean of ``m[i, j]`` and ``m[j, i]`` where both are finite, else the finite one, else -inf."""
    both = np.stack([matrix, matrix.T]).astype(np.float64)
    finite = np.isfinite(both)
    counts = finite.sum(axis=0)
    total = np.where(finite, both, 0.0).sum(axis=0)
    expected = np.where(counts > 0, total / np.maximum(counts, 1), -np.inf)
    np.fill_diagonal(expected, -np.inf)
    return expected


class CompatibilityPairing(ScorePairing):
    """Pairs of highest predicted compatibility (standardised), each round."""

    name = "compatibility"

    def __init__(self, scorer: str | None = None, registry_root: str = ".", embedder: Embedder | None = None,
                 shortlist: int = 32, repeat_penalty: float = 0.5, exact_limit: int = EXACT_LIMIT) -> None:
        super().__init__(repeat_penalty, exact_limit)
        self.prior = CompatibilityPrior(scorer, registry_root, embedder, shortlist)

    def weights(self, characters: Sequence[C], present: Sequence[C], graph: nx.Graph,
                rng: np.random.Generator) -> np.ndarray:
        return standardise(self.prior(personas_of(characters), personas_of(present)))
