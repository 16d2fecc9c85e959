"""Metric scorers that need no language model. Each maps episodes to {dimension: (value, reason)}
with values on the critic's 1-5 scale, NaN where a dimension does not apply."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from agents.degeneration import recites
from agents.persona import Persona
from agents.replies import is_repetition
from core.records import Episode
from core.seams import Embedder, Judgement

NAN = math.nan


def to_scale(value: float, low: float, high: float) -> float:
    """Map ``value`` linearly from [low, high] onto [1, 5], clipped."""
    return 1.0 + 4.0 * min(max((value - low) / (high - low), 0.0), 1.0)


def focus_speakers(episode: Episode) -> list[str]:
    """Whose experience a dimension is about: the seeker if there is one, else everyone."""
    seeker = episode.role_of("seeker")
    return [seeker] if seeker else list(episode.participants)


@dataclass
class PersonaConsistency:
    """Mean over a speaker's utterances of the best cosine similarity to one of their persona
    facts (MiniLM), averaged over speakers; a line that recites a fact nearly word for word counts
    at most ``recite_cap`` (reciting is not keeping a persona). Measured on Persona-Chat: AUC 0.92
    (README, The critic)."""

    embedder: Embedder
    low: float = 0.15  # on Persona-Chat dev: swapped personas ~0.24, real ones ~0.43 (median)
    high: float = 0.55
    recite_cap: float = 0.35  # a line that recites a fact shows no more than a middling fit
    dimension: str = "persona_consistency"

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Persona]) -> list[Judgement]:
        return [self._one(e) for e in episodes]

    def _one(self, episode: Episode) -> Judgement:
        means = []
        for name in episode.participants:
            facts, lines = episode.personas.get(name, ()), episode.utterances(name)
            if facts and lines:
                best = (self.embedder(lines) @ self.embedder(list(facts)).T).max(axis=1)
                recited = np.array([any(recites(line, f) for f in facts) for line in lines])
                means.append(float(np.where(recited, np.minimum(best, self.recite_cap), best).mean()))
        if not means:
            return {self.dimension: (NAN, "no persona facts or no utterances")}
        mean = float(np.mean(means))
        return {self.dimension: (to_scale(mean, self.low, self.high),
                                 f"utterance-to-fact similarity {mean:.2f}")}


@dataclass
class Naturalness:
    """Does it read like a conversation: each line takes up the one before (cosine of
    consecutive lines), lines are not repeated, and no turn failed."""

    embedder: Embedder
    repetition_threshold: float = 0.6
    low: float = 0.0
    high: float = 0.35
    dimension: str = "naturalness"

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Persona]) -> list[Judgement]:
        return [self._one(e) for e in episodes]

    def _one(self, episode: Episode) -> Judgement:
        texts = [t.text for t in episode.turns if not t.failed]
        if len(texts) < 2:
            return {self.dimension: (NAN, "fewer than two lines")}
        vectors = self.embedder(texts)
        coherence = float(np.mean(np.sum(vectors[1:] * vectors[:-1], axis=1)))
        repeats = sum(is_repetition(t, texts[:i], self.repetition_threshold)
                      for i, t in enumerate(texts))
        bad = (repeats + len(episode.turns) - len(texts)) / len(episode.turns)
        value = max(to_scale(coherence, self.low, self.high) * (1.0 - bad), 1.0)
        return {self.dimension: (value, f"coherence {coherence:.2f}, repeated/failed {bad:.0%}")}


@dataclass
class Engagement:
    """Is the seeker (everyone, among peers) engaged: replies that take up what the partner
    just said (cosine to the previous line) and have substance (>= ``min_words`` words).
    Parroting is not engagement: a reply closer than ``echo`` to the line it answers counts
    as disengaged (a small model often paraphrases its partner; people's uptake is ~0.2)."""

    embedder: Embedder
    min_words: int = 5
    low: float = 0.05
    high: float = 0.45
    echo: float = 0.75
    dimension: str = "seeker_engaged"

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Persona]) -> list[Judgement]:
        return [self._one(e) for e in episodes]

    def _one(self, episode: Episode) -> Judgement:
        pairs = [(prev.text, turn.text) for prev, turn in zip(episode.turns, episode.turns[1:], strict=False)
                 if turn.speaker in focus_speakers(episode) and not (turn.failed or prev.failed)]
        if not pairs:
            return {self.dimension: (NAN, "no replies to judge")}
        uptake = np.sum(self.embedder([p for p, _ in pairs]) * self.embedder([a for _, a in pairs]), axis=1)
        echoes = uptake >= self.echo
        substantive = np.array([len(a.split()) >= self.min_words for _, a in pairs])
        engaged = substantive & ~echoes
        taken_up = float(uptake[~echoes].mean()) if (~echoes).any() else 0.0
        value = to_scale(taken_up, self.low, self.high) * float(engaged.mean())
        return {self.dimension: (max(value, 1.0), f"uptake {taken_up:.2f}, substantive replies "
                                 f"{substantive.mean():.0%}, parroted {echoes.mean():.0%}")}


@dataclass
class MoodShift:
    """Seeker's mood change: zero-shot sentiment (similarity to positive minus negative anchor
    sentences) of their later lines against their earlier lines; 3 means no change."""

    embedder: Embedder
    positive: tuple[str, ...] = ("I feel much better now, thank you.", "That makes me happy.",
                                 "I'm hopeful about this.", "Thanks, that really helps!")
    negative: tuple[str, ...] = ("I feel awful about this.", "I'm so worried and stressed.",
                                 "That makes me sad.", "I don't know what to do, it's hopeless.")
    sensitivity: float = 8.0
    dimension: str = "mood_improved"

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Persona]) -> list[Judgement]:
        anchors = (self.embedder(list(self.positive)), self.embedder(list(self.negative)))
        return [self._one(e, anchors) for e in episodes]

    def _one(self, episode: Episode, anchors: tuple[np.ndarray, np.ndarray]) -> Judgement:
        seeker = episode.role_of("seeker")
        lines = episode.utterances(seeker) if seeker else []
        if len(lines) < 2:
            return {self.dimension: (NAN, "needs a seeker with two or more lines")}
        vectors = self.embedder(lines)
        mood = (vectors @ anchors[0].T).max(axis=1) - (vectors @ anchors[1].T).max(axis=1)
        half = len(lines) // 2
        shift = float(mood[half:].mean() - mood[:half].mean())
        value = min(max(3.0 + self.sensitivity * shift, 1.0), 5.0)
        return {self.dimension: (value, f"sentiment shift {shift:+.2f}")}


@dataclass
class ProblemAddressed:
    """Did the supporter work on the seeker's problem: similarity of the supporter's lines to
    the seeker's worry (from the persona, else the seeker's first line)."""

    embedder: Embedder
    low: float = 0.1
    high: float = 0.5
    dimension: str = "problem_solved"

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Persona]) -> list[Judgement]:
        return [self._one(e, personas) for e in episodes]

    def _one(self, episode: Episode, personas: Mapping[str, Persona]) -> Judgement:
        seeker, supporter = episode.role_of("seeker"), episode.role_of("supporter")
        if not (seeker and supporter):
            return {self.dimension: (NAN, "not a support conversation")}
        persona = personas.get(seeker)
        worry = (persona.recent_worry if persona else "") or next(iter(episode.utterances(seeker)), "")
        lines = episode.utterances(supporter)
        if not (worry and lines):
            return {self.dimension: (NAN, "no worry or no supporter lines")}
        similarity = self.embedder(lines) @ self.embedder([worry])[0]
        best = float(np.max(similarity))
        return {self.dimension: (to_scale(best, self.low, self.high),
                                 f"supporter's closest line to the worry {best:.2f}")}
