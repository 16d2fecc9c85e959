"""Persona compatibility at run time: how well a supporter suits a help-seeker, on a 1-5 scale.

CharacterChat dispatches the best supporter to each help-seeker with a BERT compatibility
scorer. Texts are ``Persona.describe()`` (see ``persona_texts``); the seeker comes first.

- ``EmbeddingCompatibility``: cosine of MiniLM persona embeddings mapped onto 1-5; a matrix
  is one embedding per persona and one matrix product (1,024 x 1,024: 0.03 s once the
  personas are embedded; embedding 1,024 cold descriptions of ~230 tokens is the real cost,
  ~100 s on 2 busy CPU cores, then the embedder's cache holds them).
- ``TrainedCompatibility``: a cross-encoder trained with ``training.scorers`` (task
  regression). One pair is one BERT pass over both descriptions (~10 pairs/s float32, ~24
  pairs/s bfloat16 on 2 busy cores), so a full 1,024 x 1,024 matrix (a million passes) is out
  of reach. ``score_matrix`` cross-scores only each seeker's ``shortlist`` supporters nearest
  by embedding (all of them when there are no more than ``shortlist``); every other cell is
  ``-inf``, which ``argmax`` and ``scipy.optimize.linear_sum_assignment(..., maximize=True)``
  treat as "not a candidate". Cost: seekers x shortlist pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from agents.persona import Persona
from core.errors import UsageError, require
from core.seams import Embedder
from memory.crossencoder import CrossEncoder, read_scorer_info, scale_similarity

SCORE_MIN, SCORE_MAX = 1.0, 5.0


class CompatibilityScorer(Protocol):
    def score_pairs(self, a_texts: Sequence[str], b_texts: Sequence[str]) -> np.ndarray:
        """One score per (seeker, supporter) pair, shape ``(n,)``, on 1-5."""
        ...

    def score_matrix(self, seekers: Sequence[str], supporters: Sequence[str]) -> np.ndarray:
        """Scores of every seeker (rows) with every supporter (columns); cells a scorer did not
        evaluate are ``-inf``."""
        ...


def persona_texts(personas: Sequence[Persona]) -> list[str]:
    """The text a compatibility scorer reads for each persona."""
    return [persona.describe() for persona in personas]


def _check_pairs(a_texts: Sequence[str], b_texts: Sequence[str]) -> None:
    if len(a_texts) != len(b_texts):
        raise ValueError(f"{len(a_texts)} seeker texts but {len(b_texts)} supporter texts")


class EmbeddingCompatibility:
    """Cosine similarity of persona embeddings (L2-normalised rows), mapped from [0, 1] to 1-5."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def _embed(self, a_texts: Sequence[str], b_texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """One embedder call for both sides (a cached embedder embeds a shared persona once)."""
        vectors = self.embedder([*a_texts, *b_texts])
        return vectors[:len(a_texts)], vectors[len(a_texts):]

    def score_pairs(self, a_texts: Sequence[str], b_texts: Sequence[str]) -> np.ndarray:
        _check_pairs(a_texts, b_texts)
        if not a_texts:
            return np.zeros(0, dtype=np.float32)
        a, b = self._embed(a_texts, b_texts)
        return scale_similarity(np.sum(a * b, axis=1), SCORE_MIN, SCORE_MAX)

    def cosine_matrix(self, seekers: Sequence[str], supporters: Sequence[str]) -> np.ndarray:
        """Raw cosine similarities (unclipped, so they also rank dissimilar pairs)."""
        if not seekers or not supporters:
            return np.zeros((len(seekers), len(supporters)), dtype=np.float32)
        a, b = self._embed(seekers, supporters)
        return a @ b.T

    def score_matrix(self, seekers: Sequence[str], supporters: Sequence[str]) -> np.ndarray:
        return scale_similarity(self.cosine_matrix(seekers, supporters), SCORE_MIN, SCORE_MAX)


class TrainedCompatibility:
    """A trained compatibility cross-encoder (a registry path). ``score_matrix`` cross-scores
    each seeker's ``shortlist`` supporters nearest by embedding; the rest are ``-inf``."""

    def __init__(self, path: str, embedder: Embedder | None = None, shortlist: int = 32,
                 device: str = "auto", batch_size: int = 64, dtype: str = "auto") -> None:
        require(shortlist >= 1, "shortlist", "allowed is a whole number >= 1", shortlist)
        info = read_scorer_info(path)
        if info.task != "regression":
            raise UsageError(f"compatibility scorer {path!r} is a {info.task} scorer; it needs one "
                             "trained with task=regression on 1-5 scores")
        self.path = Path(path).expanduser()
        self.shortlist = shortlist
        self._embedder = embedder
        self.encoder = CrossEncoder.load(self.path, device=device, batch_size=batch_size, dtype=dtype)

    @cached_property
    def embedder(self) -> Embedder:
        if self._embedder is not None:
            return self._embedder
        from memory.embedder import SentenceEmbedder

        return SentenceEmbedder()

    def score_pairs(self, a_texts: Sequence[str], b_texts: Sequence[str]) -> np.ndarray:
        _check_pairs(a_texts, b_texts)
        if not a_texts:
            return np.zeros(0, dtype=np.float32)
        return self.encoder.predict(list(a_texts), list(b_texts))

    def score_matrix(self, seekers: Sequence[str], supporters: Sequence[str]) -> np.ndarray:
        rows, columns = self.candidates(seekers, supporters)
        matrix = np.full((len(seekers), len(supporters)), -np.inf, dtype=np.float32)
        if len(rows):
            matrix[rows, columns] = self.score_pairs([seekers[i] for i in rows],
                                                     [supporters[j] for j in columns])
        return matrix

    def candidates(self, seekers: Sequence[str], supporters: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of the cells to cross-score."""
        n, m = len(seekers), len(supporters)
        if self.shortlist >= m:
            rows, columns = np.indices((n, m))
            return rows.ravel(), columns.ravel()
        similarity = EmbeddingCompatibility(self.embedder).cosine_matrix(seekers, supporters)
        best = np.argpartition(-similarity, self.shortlist - 1, axis=1)[:, :self.shortlist]
        return np.repeat(np.arange(n), self.shortlist), best.ravel()
