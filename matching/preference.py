"""Score-based pairing: a policy scores every pair of present characters, and the round's pairs
are the disjoint pairs of maximum total score (``matching.assignment``).

- ``HomophilyPairing``: similar personas meet (shared MBTI letters and persona embeddings).
- ``HeterophilyPairing``: dissimilar personas meet.
- ``GraphPairing``: partners with good past episodes meet again; an exploring character
  meets a stranger instead.

``repeat_penalty`` (in standard deviations of the policy's scores, per earlier episode of the
pair) spreads a stable preference over several partners; 0 pairs the top pairs every round.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np

from core.errors import is_number, is_whole, require
from core.records import Episode
from matching.assignment import EXACT_LIMIT, max_weight_pairs
from matching.features import (
    Embedder,
    HasPersona,
    PersonaVectors,
    mbti_overlap,
    personas_of,
    standardise,
    times_met,
)
from matching.policies import C, require_pairs, sit_out

TIE_BREAK = 1e-6  # random jitter so equal scores are broken by the society's RNG, not by order


class ScorePairing:
    """Base class: subclasses give ``weights`` over the present characters (higher = meet)."""

    name = "score"

    def __init__(self, repeat_penalty: float = 0.0, exact_limit: int = EXACT_LIMIT) -> None:
        require(is_number(repeat_penalty, 0), "repeat_penalty", "allowed is a number >= 0", repeat_penalty)
        require(is_whole(exact_limit, 0), "exact_limit", "allowed is a whole number >= 0", exact_limit)
        self.repeat_penalty = float(repeat_penalty)
        self.exact_limit = int(exact_limit)

    def observe(self, episodes: Sequence[Episode], graph: nx.Graph) -> None:
        """Learning policies (the bandit) update here; the others read the graph each round."""

    def __call__(self, characters: Sequence[C], graph: nx.Graph, rng: np.random.Generator,
                 round_index: int) -> list[tuple[C, C]]:
        require_pairs(characters)
        present = sit_out(characters, graph, rng)
        weights = self.weights(characters, present, graph, rng).astype(np.float64)
        if self.repeat_penalty:
            weights = weights - self.repeat_penalty * times_met(present, graph)
        jitter = rng.random((len(present), len(present))) * TIE_BREAK
        pairs = max_weight_pairs(weights + jitter + jitter.T, self.exact_limit)
        return [(present[i], present[j]) for i, j in pairs]

    def weights(self, characters: Sequence[C], present: Sequence[C], graph: nx.Graph,
                rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class HomophilyPairing(ScorePairing):
    """Similar personas meet: ``mbti_weight`` x shared MBTI letters / 4 + ``embedding_weight`` x
    cosine of persona embeddings, standardised."""

    name = "homophily"
    sign = 1.0

    def __init__(self, embedder: Embedder | None = None, mbti_weight: float = 0.5,
                 embedding_weight: float = 0.5, repeat_penalty: float = 0.5,
                 exact_limit: int = EXACT_LIMIT) -> None:
        super().__init__(repeat_penalty, exact_limit)
        require(mbti_weight >= 0 and embedding_weight >= 0 and mbti_weight + embedding_weight > 0,
                "mbti_weight/embedding_weight", "allowed is numbers >= 0, not both 0",
                (mbti_weight, embedding_weight))
        self.mbti_weight = float(mbti_weight)
        self.embedding_weight = float(embedding_weight)
        self.vectors = PersonaVectors(embedder)

    def similarity(self, characters: Sequence[HasPersona]) -> np.ndarray:
        personas = personas_of(characters)
        similarity = self.mbti_weight * mbti_overlap(personas)
        if self.embedding_weight:
            vectors = self.vectors(personas)
            similarity = similarity + self.embedding_weight * (vectors @ vectors.T)
        return similarity

    def weights(self, characters: Sequence[C], present: Sequence[C], graph: nx.Graph,
                rng: np.random.Generator) -> np.ndarray:
        self.vectors(personas_of(characters))  # embed everyone once, not only who is present
        return self.sign * standardise(self.similarity(present))


class HeterophilyPairing(HomophilyPairing):
    """Dissimilar personas meet (the negated homophily score)."""

    name = "heterophily"
    sign = -1.0


class GraphPairing(ScorePairing):
    """Characters meet partners whose past episodes scored well (the edge's ``mean_overall``;
    strangers and unscored partners count as ``stranger_score``). Each round each character
    explores with probability ``explore``: then any stranger outranks every known partner."""

    name = "graph"

    def __init__(self, explore: float = 0.2, stranger_score: float = 3.0, explore_bonus: float = 10.0,
                 exact_limit: int = EXACT_LIMIT) -> None:
        super().__init__(0.0, exact_limit)
        require(is_number(explore, 0, 1), "explore", "allowed is a number from 0 to 1", explore)
        self.explore = float(explore)
        self.stranger_score = float(stranger_score)
        self.explore_bonus = float(explore_bonus)

    def weights(self, characters: Sequence[C], present: Sequence[C], graph: nx.Graph,
                rng: np.random.Generator) -> np.ndarray:
        n = len(present)
        index = {c.name: i for i, c in enumerate(present)}
        scores = np.full((n, n), self.stranger_score)
        met = np.zeros((n, n), dtype=bool)
        for a, b, data in graph.edges(data=True):
            if a in index and b in index:
                i, j = index[a], index[b]
                scores[i, j] = scores[j, i] = data.get("mean_overall", self.stranger_score)
                met[i, j] = met[j, i] = True
        exploring = rng.random(n) < self.explore
        bonus = (exploring[:, None] | exploring[None, :]) & ~met
        return scores + self.explore_bonus * bonus
