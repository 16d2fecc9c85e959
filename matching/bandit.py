"""A bandit over pairs: predicted compatibility is the prior, each round's critic scores update it.

Each pair is an arm with a Gaussian belief about its episodes' overall score:

- prior mean = the pair's predicted compatibility (``CompatibilityPrior``) + a learned offset
  (the shrunk mean residual of all observed episodes: it moves the scorer onto the critic's
  scale, so one round's scores also inform pairs that have not met);
- prior sd ``prior_sd``, score noise sd ``noise_sd``; after n episodes with mean y the usual
  conjugate update gives the posterior mean and sd.

``algorithm=ucb`` pairs by mean + ``exploration`` x sd; ``algorithm=thompson`` by one draw from
each pair's posterior (the society's RNG). The round's pairs maximise the total (disjoint).
``observe`` is called by the Society after each round; a resumed run's first round rebuilds the
observations from the graph (its edges carry ``scored`` and ``mean_overall``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from core.errors import require
from core.records import Episode
from matching.assignment import EXACT_LIMIT
from matching.compatibility import CompatibilityPrior
from matching.features import Embedder, personas_of
from matching.policies import C
from matching.preference import ScorePairing

ALGORITHMS = ("ucb", "thompson")


@dataclass(frozen=True)
class Beliefs:
    """Posterior mean and sd of every pair's score (rows/columns: the characters given)."""

    mean: np.ndarray
    sd: np.ndarray
    offset: float


class BanditPairing(ScorePairing):
    name = "bandit"

    def __init__(self, algorithm: str = "ucb", scorer: str | None = None, registry_root: str = ".",
                 embedder: Embedder | None = None, shortlist: int = 32, exploration: float = 1.0,
                 prior_sd: float = 0.5, noise_sd: float = 0.75, offset_strength: float = 10.0,
                 exact_limit: int = EXACT_LIMIT) -> None:
        super().__init__(0.0, exact_limit)
        require(algorithm in ALGORITHMS, "algorithm", f"allowed is one of {', '.join(ALGORITHMS)}", algorithm)
        require(prior_sd > 0 and noise_sd > 0, "prior_sd/noise_sd", "allowed is numbers > 0",
                (prior_sd, noise_sd))
        require(exploration >= 0, "exploration", "allowed is a number >= 0", exploration)
        self.algorithm = algorithm
        self.exploration = float(exploration)
        self.prior_sd, self.noise_sd = float(prior_sd), float(noise_sd)
        self.offset_strength = float(offset_strength)
        self.prior = CompatibilityPrior(scorer, registry_root, embedder, shortlist)
        self.observations: dict[tuple[str, str], tuple[int, float]] = {}  # pair -> (count, sum)
        self._started = False

    def observe(self, episodes: Sequence[Episode], graph: nx.Graph | None = None) -> None:
        """Learn from a round's scored episodes (the Society calls this after every round)."""
        for episode in episodes:
            if episode.scores is not None and episode.scores.rated:
                self._add(episode.participants, 1, float(episode.scores.overall))
        self._started = True

    def _add(self, names: tuple[str, str], count: int, total: float) -> None:
        key = (min(names), max(names))
        seen, summed = self.observations.get(key, (0, 0.0))
        self.observations[key] = (seen + count, summed + total)

    def _resume_from(self, graph: nx.Graph) -> None:
        for a, b, data in graph.edges(data=True):
            if data.get("scored", 0) and "mean_overall" in data:
                self._add((a, b), int(data["scored"]), int(data["scored"]) * float(data["mean_overall"]))

    def beliefs(self, characters: Sequence[C], present: Sequence[C] | None = None) -> Beliefs:
        """The posterior over the pairs of ``present`` (default: everyone)."""
        present = characters if present is None else present
        prior = self.prior(personas_of(characters), personas_of(present))
        finite = np.isfinite(prior)
        floor = prior[finite].min() if finite.any() else 3.0
        prior = np.where(finite, prior, floor)  # a pair the scorer skipped: a pessimistic prior
        counts, sums = self._observed(present)
        offset = self._offset(prior, counts, sums)
        precision = 1 / self.prior_sd**2 + counts / self.noise_sd**2
        mean = ((prior + offset) / self.prior_sd**2 + sums / self.noise_sd**2) / precision
        return Beliefs(mean, 1 / np.sqrt(precision), offset)

    def _observed(self, present: Sequence[C]) -> tuple[np.ndarray, np.ndarray]:
        index = {c.name: i for i, c in enumerate(present)}
        counts, sums = np.zeros((len(present),) * 2), np.zeros((len(present),) * 2)
        for (a, b), (count, total) in self.observations.items():
            if a in index and b in index:
                i, j = index[a], index[b]
                counts[i, j] = counts[j, i] = count
                sums[i, j] = sums[j, i] = total
        return counts, sums

    def _offset(self, prior: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> float:
        upper = np.triu(counts, k=1) > 0
        residual = float((sums[upper] - counts[upper] * prior[upper]).sum())
        return residual / (float(counts[upper].sum()) + self.offset_strength)

    def weights(self, characters: Sequence[C], present: Sequence[C], graph: nx.Graph,
                rng: np.random.Generator) -> np.ndarray:
        if not self._started:
            self._resume_from(graph)
            self._started = True
        beliefs = self.beliefs(characters, present)
        if self.algorithm == "ucb":
            return beliefs.mean + self.exploration * beliefs.sd
        noise = np.triu(rng.standard_normal(beliefs.mean.shape), k=1)
        return beliefs.mean + beliefs.sd * (noise + noise.T)
