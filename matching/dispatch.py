"""Interpersonal matching (CharacterChat): dispatch the most compatible supporters to a help-seeker.

A seeker is a bank id or a free persona text. Scoring is one row of the compatibility matrix:
the seeker against every supporter (embedding similarity: one embedding per persona and one
matrix product; a trained scorer: the ``shortlist`` nearest by embedding, cross-scored)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.persona import MAX_FACTS, MAX_TEXT, Persona
from core.errors import UsageError
from core.text import split_sentences
from matching.scorers import CompatibilityScorer, persona_texts

SEEKER_ID = "seeker"


@dataclass(frozen=True)
class Seeker:
    """Who asks for support: ``text`` is what the scorer reads, ``persona`` what the character plays."""

    persona: Persona
    text: str
    from_bank: bool


@dataclass(frozen=True)
class Match:
    rank: int
    persona: Persona
    score: float


def check_seeker(value: object) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise UsageError('seeker is empty: give a persona text or a bank id, e.g. '
                         'seeker="I lost my job and feel alone" or seeker=infj-001')
    return text


def seeker_from(value: object, bank: Sequence[Persona]) -> Seeker:
    """A bank persona when ``value`` is one of the bank's ids (or names), else a persona built
    from the text."""
    text = check_seeker(value)
    known = {p.name: p for p in bank} | {p.id: p for p in bank}
    if text in known:
        return Seeker(known[text], known[text].describe(), True)
    return Seeker(persona_from_text(text, {p.name for p in bank}, {p.id for p in bank}), text, False)


def persona_from_text(text: str, taken_names: set[str], taken_ids: set[str]) -> Persona:
    """The seeker's persona: each sentence a fact (up to 10), the whole text their worry."""
    sentences = [s[:MAX_TEXT] for s in split_sentences(text)]
    name = next(n for n in (f"Seeker {i}" if i else "Seeker" for i in range(len(taken_names) + 1))
                if n not in taken_names)
    pid = next(i for i in (f"{SEEKER_ID}-{k}" if k else SEEKER_ID for k in range(len(taken_ids) + 1))
               if i not in taken_ids)
    return Persona(id=pid, name=name, facts=tuple(sentences[:MAX_FACTS]), recent_worry=text[:MAX_TEXT],
                   source="match")


def dispatch(seeker: Seeker, supporters: Sequence[Persona], scorer: CompatibilityScorer, k: int
             ) -> list[Match]:
    """The ``k`` best supporters (the seeker excluded), best first; ties keep bank order."""
    candidates = [p for p in supporters if p.id != seeker.persona.id]
    if not candidates:
        raise UsageError("the bank has no supporter besides the seeker")
    scores = np.asarray(scorer.score_matrix([seeker.text], persona_texts(candidates))[0], dtype=np.float64)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i])][:k]
    return [Match(rank + 1, candidates[i], float(scores[i])) for rank, i in enumerate(order)]


def best_supporters(matrix: np.ndarray, exclude_self: bool = True) -> np.ndarray:
    """Column of the best supporter for every seeker row (a square matrix over one bank: a
    seeker is not their own supporter)."""
    scores = np.array(matrix, dtype=np.float64, copy=True)
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    return np.argmax(scores, axis=1)


def format_matches(seeker: Seeker, matches: Sequence[Match], scorer_label: str) -> str:
    """A plain-text table of the dispatch, one line per supporter."""
    who = seeker.persona.id if seeker.from_bank else f'"{_clip(seeker.text, 70)}"'
    lines = [f"salon: best supporters for {who} ({scorer_label}, predicted compatibility 1-5)",
             f"{'rank':>4}  {'score':>5}  {'id':<12} {'name':<22} {'mbti':<5} job"]
    for match in matches:
        p = match.persona
        lines.append(f"{match.rank:>4}  {match.score:5.2f}  {_clip(p.id, 12):<12} {_clip(p.name, 22):<22} "
                     f"{p.mbti or '-':<5} {_clip(p.job, 40)}")
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
