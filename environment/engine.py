"""The conversation engine: all episodes of a round advance together, one batched model call
per turn (per distinct chat model), whether the model is a local batch or a remote server."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from langchain_core.messages import BaseMessage
from tqdm.auto import tqdm

from agents.character import Character
from agents.replies import Cleaned, clean_reply, is_goodbye, is_repetition
from environment.records import Episode, Scene, Turn


class Interrupted(Exception):
    """Ctrl-C during a round; carries the episodes that had already finished."""

    def __init__(self, finished: list[Episode]) -> None:
        super().__init__(f"interrupted with {len(finished)} finished episodes")
        self.finished = finished


@dataclass(frozen=True)
class StopRules:
    """When an episode ends: max turns, a goodbye (after min_turns), a repeated or failed reply."""

    max_turns: int = 8
    min_turns: int = 2
    goodbye: bool = True
    repetition_threshold: float = 0.8

    def __post_init__(self) -> None:
        if self.max_turns < 1 or not 0 < self.min_turns <= self.max_turns:
            raise ValueError("need 1 <= min_turns <= max_turns")


class GoalChooser(Protocol):
    """Picks a turn's goal (agents.goals.GoalPolicy); '' leaves the turn unsteered."""

    def choose(self, turn_index: int, earlier: Sequence[str], rng: np.random.Generator) -> str: ...


@dataclass(frozen=True)
class EpisodePlan:
    """Who talks (first speaker first), in which roles and scene."""

    id: str
    round: int
    speakers: tuple[Character, Character]
    roles: dict[str, str]
    scene: Scene | None = None
    goals: tuple[str, ...] = ()


@dataclass
class EngineStats:
    """Wall time spent in model calls and tokens produced, for throughput measurements."""

    generate_seconds: float = 0.0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    model_calls: int = 0
    prompts: list[list[BaseMessage]] = field(default_factory=list)


@dataclass
class _Conversation:
    plan: EpisodePlan
    turns: list[Turn] = field(default_factory=list)
    stop_reason: str = ""
    next_goal: str = ""

    @property
    def speaker(self) -> Character:
        return self.plan.speakers[len(self.turns) % 2]

    @property
    def partner(self) -> Character:
        return self.plan.speakers[(len(self.turns) + 1) % 2]

    @property
    def history(self) -> list[tuple[str, str]]:
        return [(t.speaker, t.text) for t in self.turns if not t.failed]

    @property
    def goal(self) -> str:
        goals = self.plan.goals
        return goals[len(self.turns)] if len(self.turns) < len(goals) else ""


@dataclass(frozen=True)
class _Reply:
    cleaned: Cleaned
    prompt_tokens: int
    completion_tokens: int


class ConversationEngine:
    def __init__(
        self,
        rules: StopRules,
        memory_k: int = 3,
        retries: int = 2,
        max_sentences: int = 3,
        progress: bool = True,
        keep_prompts: bool = False,
        goal_policy: GoalChooser | None = None,
    ) -> None:
        self.rules = rules
        self.memory_k = memory_k
        self.retries = retries
        self.max_sentences = max_sentences
        self.progress = progress
        self.keep_prompts = keep_prompts
        self.goal_policy = goal_policy
        self.stats = EngineStats()

    def run(self, plans: Sequence[EpisodePlan], rng: np.random.Generator, now: float) -> list[Episode]:
        conversations = [_Conversation(plan) for plan in plans]
        bar = tqdm(total=self.rules.max_turns, desc="turns", leave=False, disable=not self.progress)
        with bar:
            try:
                for index in range(self.rules.max_turns):
                    active = [c for c in conversations if not c.stop_reason]
                    if not active:
                        break
                    self._step(active, rng, now + index / (10 * self.rules.max_turns))
                    bar.update()
            except KeyboardInterrupt:
                raise Interrupted([self._finish(c) for c in conversations if c.stop_reason]) from None
        return [self._finish(c) for c in conversations]

    def _step(self, active: list[_Conversation], rng: np.random.Generator, now: float) -> None:
        speakers = [c.speaker for c in active]
        for conversation in active:
            conversation.next_goal = self._goal(conversation, rng)
        requests = [(s.id, s.memory_query(c.history, c.partner.name, c.plan.scene))
                    for s, c in zip(speakers, active, strict=True)]
        recalled = speakers[0].memory.search_many(requests, self.memory_k, now)
        prompts = [s.messages(s.context(c.history, c.partner.name, c.plan.roles[s.name], found,
                                        c.plan.scene, c.next_goal))
                   for s, c, found in zip(speakers, active, recalled, strict=True)]
        adapters = [s.adapter_for(c.plan.roles[s.name]) for s, c in zip(speakers, active, strict=True)]
        replies = self._generate(prompts, speakers, adapters, [c.partner.name for c in active], rng)
        for conversation, reply, found in zip(active, replies, recalled, strict=True):
            self._record(conversation, reply, tuple(m.id for m in found))

    def _goal(self, conversation: _Conversation, rng: np.random.Generator) -> str:
        """The plan's goal for this turn, else the goal policy's (drawn from the society RNG)."""
        if conversation.goal or self.goal_policy is None:
            return conversation.goal
        earlier = [t.goal for t in conversation.turns if t.goal]
        return self.goal_policy.choose(len(conversation.turns), earlier, rng)

    def _generate(self, prompts: list[list[BaseMessage]], speakers: list[Character],
                  adapters: list[str], partners: list[str], rng: np.random.Generator) -> list[_Reply]:
        """Batched calls; only rejected replies are asked again, up to ``retries`` times."""
        replies: list[_Reply | None] = [None] * len(prompts)
        spent = [[0, 0] for _ in prompts]
        pending = list(range(len(prompts)))
        for _attempt in range(self.retries + 1):
            outputs = self._call_models([prompts[i] for i in pending], [speakers[i] for i in pending],
                                        [adapters[i] for i in pending], rng)
            still_failing = []
            for i, (text, usage) in zip(pending, outputs, strict=True):
                spent[i][0] += usage[0]
                spent[i][1] += usage[1]
                cleaned = clean_reply(text, speakers[i].name, partners[i], self.max_sentences)
                replies[i] = _Reply(cleaned, *spent[i])
                if cleaned.error:
                    still_failing.append(i)
            pending = still_failing
            if not pending:
                break
        return [r for r in replies if r is not None]

    def _call_models(self, prompts: list[list[BaseMessage]], speakers: list[Character],
                     adapters: list[str], rng: np.random.Generator) -> list[tuple[str, tuple[int, int]]]:
        """One `batch` call per distinct chat model; adapters travel along as a kwarg."""
        results: list[tuple[str, tuple[int, int]]] = [("", (0, 0))] * len(prompts)
        groups: dict[int, list[int]] = {}
        for i, speaker in enumerate(speakers):
            groups.setdefault(id(speaker.model), []).append(i)
        for indices in groups.values():
            model = speakers[indices[0]].model
            kwargs: dict[str, Any] = {"seed": int(rng.integers(2**31 - 1))}
            if any(adapters[i] for i in indices):
                kwargs["adapters"] = [adapters[i] for i in indices]
            started = time.perf_counter()
            outputs = model.batch([prompts[i] for i in indices], **kwargs)
            self.stats.generate_seconds += time.perf_counter() - started
            self.stats.model_calls += 1
            for i, message in zip(indices, outputs, strict=True):
                usage = message.usage_metadata or {}
                tokens = (int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))
                self.stats.prompt_tokens += tokens[0]
                self.stats.completion_tokens += tokens[1]
                results[i] = (str(message.content), tokens)
        if self.keep_prompts:
            self.stats.prompts.extend(prompts)
        return results

    def _record(self, conversation: _Conversation, reply: _Reply, memory_ids: tuple[str, ...]) -> None:
        speaker = conversation.speaker.name
        earlier = [t.text for t in conversation.turns if not t.failed]
        cleaned = reply.cleaned
        conversation.turns.append(Turn(
            speaker=speaker, text=cleaned.text, memory_ids=memory_ids,
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
            failed=bool(cleaned.error), error=cleaned.error, goal=conversation.next_goal))
        conversation.stop_reason = self._stop_reason(conversation, cleaned, earlier)

    def _stop_reason(self, conversation: _Conversation, cleaned: Cleaned, earlier: list[str]) -> str:
        count = len(conversation.turns)
        if cleaned.error:
            return "failed_reply"
        if is_repetition(cleaned.text, earlier, self.rules.repetition_threshold):
            return "repetition"
        if self.rules.goodbye and count >= self.rules.min_turns and is_goodbye(cleaned.text):
            return "goodbye"
        if count >= self.rules.max_turns:
            return "max_turns"
        return ""

    def _finish(self, conversation: _Conversation) -> Episode:
        plan = conversation.plan
        names = tuple(s.name for s in plan.speakers)
        labels = {s.name: model_label(s, plan.roles[s.name]) for s in plan.speakers}
        return Episode(
            id=plan.id, round=plan.round, participants=names,  # type: ignore[arg-type]
            personas={s.name: s.persona.facts for s in plan.speakers},
            roles=dict(plan.roles), turns=tuple(conversation.turns),
            model=labels[names[0]] if len(set(labels.values())) == 1 else "mixed",
            character_ids={s.name: s.id for s in plan.speakers}, scene=plan.scene,
            stop_reason=conversation.stop_reason or "max_turns", models=labels)


def model_label(character: Character, role: str = "") -> str:
    """The model a character speaks with, as recorded in episodes: name+adapter."""
    model = character.model
    name = getattr(model, "model_name", None) or getattr(model, "_llm_type", type(model).__name__)
    adapter = character.adapter_for(role)
    return f"{name}+{adapter}" if adapter else str(name)
