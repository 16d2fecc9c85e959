"""Turn-level goals (PersonaGPT's action codes) that steer a character's next reply, and the
goal policy an interviewer uses in self-play (`conversation.goals=policy`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import require

# code -> the instruction the reply prompt receives ("In your next reply, <instruction>.")
ACTION_CODES: Mapping[str, str] = {
    "family": "ask about their family",
    "pets": "ask about their pets",
    "work": "talk about work",
    "travel": "talk about traveling",
    "age": "ask about their age and gender",
    "hobbies": "ask about their hobbies",
    "music": "talk about music",
    "food": "talk about food",
    "movies": "talk about movies",
    "politics": "talk about politics",
    "marital": "ask about their marital status",
}
ALIASES: Mapping[str, str] = {
    "ask about family": "family", "ask about pets": "pets", "talk about work": "work",
    "traveling": "travel", "talk about traveling": "travel", "age and gender": "age",
    "ask about age and gender": "age", "hobby": "hobbies", "ask about hobbies": "hobbies",
    "talk about music": "music", "talk about food": "food", "talk about movies": "movies",
    "talk about politics": "politics", "marital status": "marital",
    "ask about marital status": "marital",
}
MAX_GOAL_CHARS = 200
GOAL_MODES = ("none", "policy")


def resolve_goal(text: str) -> str:
    """An action code (``pets``, ``ask about pets``) becomes its instruction; any other text is
    a custom goal, used as written (one line, at most MAX_GOAL_CHARS characters)."""
    goal = " ".join(text.split()).rstrip(".")
    if not goal:
        raise ValueError("a goal needs text: an action code or your own instruction")
    if len(goal) > MAX_GOAL_CHARS:
        raise ValueError(f"a goal is at most {MAX_GOAL_CHARS} characters")
    code = ALIASES.get(goal.lower(), goal.lower())
    return ACTION_CODES.get(code, goal)


def describe_codes() -> str:
    return ", ".join(f"{code} ({instruction})" for code, instruction in ACTION_CODES.items())


@dataclass(frozen=True)
class GoalPolicy:
    """PersonaGPT-style self-play: one participant (``speaker``: 0 opens the conversation, the
    interviewer) gets a goal drawn from ``goals`` on each of its turns, avoiding goals it has
    already pursued in the episode until all are used. Draws come from the society's RNG."""

    goals: tuple[str, ...] = tuple(ACTION_CODES.values())
    speaker: int = 0

    def __post_init__(self) -> None:
        if not self.goals or any(not g.strip() for g in self.goals):
            raise ValueError("a goal policy needs non-empty goals")
        if self.speaker not in (0, 1):
            raise ValueError("GoalPolicy.speaker is 0 (the opener) or 1")

    def choose(self, turn_index: int, earlier: Sequence[str], rng: np.random.Generator) -> str:
        """The goal for turn ``turn_index`` ('' when the other participant speaks)."""
        if turn_index % 2 != self.speaker:
            return ""
        fresh = [g for g in self.goals if g not in set(earlier)]
        options = fresh or list(self.goals)
        return options[int(rng.integers(len(options)))]


def goal_policy(mode: str, speaker: int = 0) -> GoalPolicy | None:
    """``none`` (no goals) or ``policy`` (the opener picks a goal each of its turns)."""
    require(mode in GOAL_MODES, "goals", f"allowed is one of {', '.join(GOAL_MODES)}", mode)
    return GoalPolicy(speaker=speaker) if mode == "policy" else None
