"""What characters remember of an episode: a summary and what the partner said about
themselves. Extractive by design: nothing here is generated, so nothing is made up."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.records import Episode, MemoryRecord
from core.text import split_sentences

_SELF_DISCLOSURE = re.compile(r"^(i|i'm|i am|i've|i have|my|we)\b", re.I)


@dataclass(frozen=True)
class EpisodeMemoryWriter:
    summary_importance: float = 0.5
    fact_importance: float = 0.6
    max_facts: int = 3
    max_chars: int = 240

    def records(self, episode: Episode, now: float) -> list[MemoryRecord]:
        records: list[MemoryRecord] = []
        for me, partner in (episode.participants, episode.participants[::-1]):
            owner = episode.character_ids.get(me, me)
            records.append(MemoryRecord(owner, self.summary(episode, me, partner), "summary",
                                        self.summary_importance, now, episode.id))
            records += [MemoryRecord(owner, fact, "partner_fact", self.fact_importance, now, episode.id)
                        for fact in self.partner_facts(episode, partner)]
        return records

    def summary(self, episode: Episode, me: str, partner: str) -> str:
        where = f" at {episode.scene.location}" if episode.scene else ""
        role = episode.roles[me]
        relation = {"seeker": f"{partner} listened to my worries", "supporter": f"I tried to help {partner}"}
        lines = episode.utterances(partner)
        said = f' {partner} said: "{max(lines, key=len)[: self.max_chars]}"' if lines else ""
        return f"I talked with {partner}{where}; {relation.get(role, 'we got to know each other')}.{said}"

    def partner_facts(self, episode: Episode, partner: str) -> list[str]:
        """The partner's self-disclosures ("I have two dogs."), at most ``max_facts``."""
        found: list[str] = []
        for line in episode.utterances(partner):
            for sentence in split_sentences(line):
                if _SELF_DISCLOSURE.match(sentence) and len(sentence.split()) >= 4:
                    fact = f"{partner} told me: {sentence[: self.max_chars]}"
                    if fact not in found:
                        found.append(fact)
        return found[: self.max_facts]
