"""Best of n at the turn level (Synthetic-Persona-Chat's generator-critic, per reply): a turn
scorer that ranks a speaker's candidate replies by what a critic rewards in a line. It reads
embeddings only (one batched call for every candidate of a turn) and the degeneration checks;
it needs no language model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.degeneration import addresses, copies, recites, words
from core.seams import Embedder

ECHO = 0.75  # cosine to the partner's line above which a reply parrots it (as the critic's Engagement)


@dataclass(frozen=True)
class TurnContext:
    """What a candidate reply answers: the speaker, the partner's last line ('' when opening),
    the episode's earlier lines, the recalled memories and the speaker's persona facts."""

    speaker: str
    partner_line: str
    earlier: tuple[str, ...]
    memories: tuple[str, ...]
    facts: tuple[str, ...]


class TurnRanker:
    """score = novelty x (1 - max cosine to earlier lines) + uptake x cosine to the partner's
    line (0 when it echoes it) + persona x max cosine to a persona fact, minus ``same_opening``
    if its first two words open an earlier line, minus ``penalty`` for each hard failure: a
    near copy of an earlier line or memory, a line that addresses its own speaker by name, a
    recited persona fact, fewer than ``min_words`` words."""

    def __init__(self, embedder: Embedder | None = None, novelty: float = 1.0, uptake: float = 1.0,
                 persona: float = 0.5, penalty: float = 2.0, min_words: int = 4, same_opening: float = 0.5
                 ) -> None:
        self._embedder = embedder
        self.novelty, self.uptake, self.persona = novelty, uptake, persona
        self.penalty, self.min_words, self.same_opening = penalty, min_words, same_opening

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from memory.embedder import SentenceEmbedder

            self._embedder = SentenceEmbedder()
        return self._embedder

    def scores(self, contexts: Sequence[TurnContext], candidates: Sequence[Sequence[str]]
               ) -> list[list[float]]:
        """One score per candidate of each context (higher is better), in one embedder call."""
        texts = [t for c, options in zip(contexts, candidates, strict=True)
                 for t in (*options, *c.earlier, c.partner_line or ".", *c.facts)]
        self.embedder(texts)  # one batch; the embedder's cache answers the calls below
        return [[self._score(c, option) for option in options]
                for c, options in zip(contexts, candidates, strict=True)]

    def _score(self, context: TurnContext, text: str) -> float:
        vector = self.embedder([text])[0]
        score = self.novelty * (1.0 - _max_cosine(vector, context.earlier, self.embedder))
        if context.partner_line:
            uptake = float(self.embedder([context.partner_line])[0] @ vector)
            score += self.uptake * (0.0 if uptake >= ECHO else uptake)
        score += self.persona * _max_cosine(vector, context.facts, self.embedder)
        if any(words(text)[:2] == words(line)[:2] for line in context.earlier):
            score -= self.same_opening  # "I'm so ..." again: a formula, not a reply
        return score - self.penalty * len(self.failures(context, text))

    def failures(self, context: TurnContext, text: str) -> list[str]:
        """The hard failures of a candidate, by name."""
        found = []
        if any(copies(text, line) for line in (*context.earlier, *context.memories)):
            found.append("copies an earlier line or a memory")
        if addresses(text, context.speaker):
            found.append("addresses its own speaker by name")
        if any(recites(text, fact) for fact in context.facts):
            found.append("recites a persona fact")
        if len(words(text)) < self.min_words:
            found.append("too short")
        return found


def _max_cosine(vector: np.ndarray, texts: Sequence[str], embedder: Embedder) -> float:
    if not texts:
        return 0.0
    return float(np.max(embedder(list(texts)) @ vector))
