"""The LLM rubric judge: reads the probabilities of the score tokens 1-5 and reports their
expected value, so every model yields a valid number (no free-text parsing)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.models.choices import expected_score
from agents.persona import Persona
from agents.prompting import PromptBuilder
from core.records import Episode
from core.seams import ChatModel, Judgement

DIGITS = ("1", "2", "3", "4", "5")
# A server that returns no logprobs gives the judge nothing to read; the report warns about it.
NO_PROBABILITIES = "judge: no probability on the score tokens (a server without logprobs?)"


@dataclass(frozen=True)
class RubricItem:
    """A question about an episode; ``needs`` are roles that must be present ({seeker} etc.)."""

    question: str
    needs: tuple[str, ...] = ()


@dataclass
class LLMJudge:
    model: ChatModel
    rubric: Mapping[str, RubricItem | Mapping]
    prompts: PromptBuilder = field(default_factory=PromptBuilder)
    system: str = "You are a careful, strict judge of conversations."
    max_turns_shown: int = 16

    def __post_init__(self) -> None:
        self.rubric = {k: v if isinstance(v, RubricItem) else
                       RubricItem(v["question"], tuple(v.get("needs", ()))) for k, v in self.rubric.items()}

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Persona]) -> list[Judgement]:
        asks: list[tuple[int, str, list[BaseMessage]]] = []
        results: list[Judgement] = [{} for _ in episodes]
        for index, episode in enumerate(episodes):
            for dimension, item in self.rubric.items():
                roles = {role: episode.role_of(role) for role in item.needs}
                if not all(roles.values()) or not episode.utterances(episode.participants[0]):
                    results[index][dimension] = (math.nan, "not applicable to this episode")
                    continue
                asks.append((index, dimension, self._messages(episode, item, roles)))
        probabilities = self.model.choice_probabilities([m for _, _, m in asks], DIGITS)
        for (index, dimension, _), row in zip(asks, probabilities, strict=True):
            value, mass = expected_score(row, range(1, 6))
            results[index][dimension] = (value, f"judge expects {value:.2f} (mass on 1-5: {mass:.2f})"
                                         if mass > 0 else NO_PROBABILITIES)
        return results

    def _messages(self, episode: Episode, item: RubricItem, roles: dict) -> list[BaseMessage]:
        turns = [(t.speaker, t.text) for t in episode.turns if not t.failed][: self.max_turns_shown]
        names = dict(zip(("a", "b"), episode.participants, strict=True))
        question = item.question.format(**roles, **names)
        text = self.prompts.render("judge.jinja", turns=turns, question=question, scene=episode.scene)
        return [SystemMessage(self.system), HumanMessage(text)]
