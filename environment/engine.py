"""The conversation engine. With `schedule=independent` every episode of a round advances on
its own: each asks for its next turn (`agents/turns.py`) as soon as its last one is done, and
the backend batches whatever is pending (a server's continuous batching, or the in-process
model's micro-batcher, `agents/models/coalesce.py`), so no episode waits for the slowest turn
of the round. With `schedule=lockstep` every active episode takes one turn per step, in one
batch: the batches are the same in every run, so a run is reproduced bit for bit (the
composition root's `auto` picks it for the in-process model, independent for servers). Each
episode draws its sampling seeds and goals from its own RNG streams in both."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from agents.character import Character
from agents.goals import goal_policy
from agents.prompting import PromptBuilder
from agents.ranking import TurnRanker
from agents.replies import is_goodbye, is_repetition
from agents.turns import CallStats, Sampling, TurnRequest, TurnSettings, take_turns
from core.errors import is_number, is_whole, require
from core.records import Episode, Reply, Scene, Turn
from core.rng import GOALS, SAMPLING, RngTree
from core.seams import Embedder, GoalChooser
from environment.budget import BudgetReached

log = logging.getLogger(__name__)
SCHEDULES = ("independent", "lockstep")  # the config's "auto" is resolved by the composition root
# asked before each turn with the round's turns so far: '' to go on, else why the budget is spent
BudgetCheck = Callable[[Sequence[Turn]], str]


class _Stop:
    """Whether the round stops: Ctrl-C or a failure elsewhere (``event``), or a spent budget."""

    def __init__(self, conversations: Sequence[_Conversation], budget: BudgetCheck | None) -> None:
        self.conversations, self.budget = conversations, budget
        self.event = threading.Event()
        self.spent = ""
        self._lock = threading.Lock()

    def now(self) -> bool:
        if self.event.is_set() or self.budget is None:
            return self.event.is_set()
        with self._lock:
            self.spent = self.spent or self.budget([t for c in self.conversations for t in c.turns])
        if self.spent:
            self.event.set()
        return bool(self.spent)


class RoundFailed(Exception):
    """A turn failed with an error (a model server down, say); carries the episodes that had
    finished, so that they are kept, and the error."""

    def __init__(self, finished: list[Episode], error: Exception) -> None:
        super().__init__(str(error))
        self.finished, self.error = finished, error


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
        require(is_whole(self.max_turns, 1, 200), "max_turns", "allowed is a whole number from 1 to 200",
                self.max_turns)
        require(is_whole(self.min_turns, 1, self.max_turns), "min_turns",
                f"allowed is a whole number from 1 to max_turns={self.max_turns}", self.min_turns)
        require(is_number(self.repetition_threshold, 0) and self.repetition_threshold > 0,
                "repetition_threshold", "allowed is a number > 0 (above 1 turns the rule off)",
                self.repetition_threshold)


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
class _Conversation:
    plan: EpisodePlan
    turns: list[Turn] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def speaker(self) -> Character:
        return self.plan.speakers[len(self.turns) % 2]

    @property
    def partner(self) -> Character:
        return self.plan.speakers[(len(self.turns) + 1) % 2]

    @property
    def history(self) -> tuple[tuple[str, str], ...]:
        return tuple((t.speaker, t.text) for t in self.turns if not t.failed)

    @property
    def planned_goal(self) -> str:
        goals = self.plan.goals
        return goals[len(self.turns)] if len(self.turns) < len(goals) else ""


class ConversationEngine:
    """`conversation.*` in the config: the stop rules, how each reply is made (memories,
    retries, sentences), the goal mode and the prompt templates."""

    def __init__(
        self,
        prompts: PromptBuilder | None = None,
        max_turns: int = 6,
        min_turns: int = 2,
        stop_on_goodbye: bool = True,
        repetition_threshold: float = 0.8,
        retries: int = 2,
        memory_k: int = 3,
        max_sentences: int = 3,
        candidates: int = 1,
        block_ngrams: int = 4,
        ranker: TurnRanker | Callable[..., TurnRanker] | None = None,
        embedder: Embedder | None = None,
        goals: str = "none",
        progress: bool = True,
        keep_prompts: bool = False,
        schedule: str = "independent",
        concurrency: int = 64,
    ) -> None:
        require(schedule in SCHEDULES, "schedule", f"allowed is {', '.join(SCHEDULES)}", schedule)
        for name, flag in (("stop_on_goodbye", stop_on_goodbye), ("progress", progress),
                           ("keep_prompts", keep_prompts)):
            require(isinstance(flag, bool), name, "allowed is true or false", flag)
        require(is_whole(concurrency, 1, 4096), "concurrency", "allowed is a whole number from 1 to 4096",
                concurrency)
        self.schedule, self.concurrency = schedule, concurrency
        self.rules = StopRules(max_turns, min_turns, stop_on_goodbye, repetition_threshold)
        # recalls are reinforced when the episode is committed (Society), not when made
        self.turn = TurnSettings(memory_k, retries, max_sentences, candidates, block_ngrams, reinforce=False)
        # the config gives the ranker as a partial; the run's embedder completes it
        self.ranker = ranker(embedder=embedder) if callable(ranker) and not isinstance(ranker, TurnRanker) \
            else ranker
        self.goal_policy: GoalChooser | None = goal_policy(goals)
        self.prompts = prompts or PromptBuilder()
        self.progress = progress
        self.stats = CallStats(keep_prompts=keep_prompts)

    def turn_time(self, now: float, index: int) -> float:
        """The simulation clock at turn ``index`` of an episode that began at ``now``."""
        return now + index / (10 * self.rules.max_turns)

    def run(self, plans: Sequence[EpisodePlan], rng: RngTree, now: float,
            budget: BudgetCheck | None = None, stored: Mapping[str, Episode] | None = None,
            on_finished: Callable[[Episode], None] | None = None) -> list[Episode]:
        """Every plan to its end, in the plans' order. ``budget(turns of the round so far)`` is
        asked before every turn; once it says why it is spent, no turn starts and BudgetReached
        carries the episodes that had finished (the others are re-run on resume).
        ``stored``: the round's episodes already stored (a resumed round), by id; they are not
        returned. With lockstep they are generated again beside the others (see _lockstep).
        ``on_finished(episode)``: with the independent schedule, called in the episode's thread
        as soon as it has finished (so a caller can commit it then); lockstep ignores it."""
        stored = stored or {}
        if not any(p.id not in stored for p in plans):
            return []
        if self.schedule == "lockstep":
            return self._lockstep(plans, rng, now, budget, stored)
        conversations = [_Conversation(plan) for plan in plans if plan.id not in stored]
        stop = _Stop(conversations, budget)
        bar = tqdm(total=len(conversations), desc="episodes", leave=False, disable=not self.progress)
        with bar, ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(conversations)))) as pool:
            futures = [pool.submit(self._converse, c, rng, now, stop, bar, on_finished)
                       for c in conversations]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # a failure in an episode's thread is raised here
            except KeyboardInterrupt:
                stop.event.set()
                raise Interrupted(self._done(conversations)) from None
            except Exception as error:
                stop.event.set()
                wait(futures)  # the other episodes stop at their next turn; those that finished are kept
                raise RoundFailed(self._done(conversations), error) from error
            except BaseException:
                stop.event.set()
                raise
        return self._finished(conversations, stop)

    def _done(self, conversations: Sequence[_Conversation]) -> list[Episode]:
        return [self._finish(c) for c in conversations if c.stop_reason]

    def _finished(self, conversations: list[_Conversation], stop: _Stop) -> list[Episode]:
        if stop.spent:
            raise BudgetReached(stop.spent, self._done(conversations))
        return [self._finish(c) for c in conversations]

    def _converse(self, conversation: _Conversation, rng: RngTree, now: float, stop: _Stop,
                  bar: tqdm, on_finished: Callable[[Episode], None] | None) -> None:
        """One episode, turn by turn, with seeds and goals from its own streams (keyed by its id)."""
        plan = conversation.plan
        goals = rng.stream(GOALS, plan.round, plan.id)
        while not conversation.stop_reason and not stop.now():
            index = len(conversation.turns)
            seed = rng.seed_of(SAMPLING, plan.round, plan.id, index)
            self._step([conversation], (seed,), [goals], self.turn_time(now, index))
        if conversation.stop_reason and on_finished is not None:
            on_finished(self._finish(conversation))
        bar.update()

    def _lockstep(self, plans: Sequence[EpisodePlan], rng: RngTree, now: float,
                  budget: BudgetCheck | None, stored: Mapping[str, Episode]) -> list[Episode]:
        """One batched turn of every active episode per step, each episode with the same seeds
        and goal stream as it would have on its own: its text is the same as with
        `schedule=independent` wherever generation does not depend on the batch, and each step's
        batch is the same in every run (so is the run, bit for bit). Generation does depend on
        the batch (padding, batch size), so a resumed round generates its stored episodes again
        beside the others, to give every step the batch it had, and drops them at the end."""
        everyone = [_Conversation(plan) for plan in plans]
        conversations = [c for c in everyone if c.plan.id not in stored]
        stop = _Stop(conversations, budget)
        goals = {c.plan.id: rng.stream(GOALS, c.plan.round, c.plan.id) for c in everyone}
        if stored:
            log.info("resuming a round: %d stored episodes are generated again beside the %d others, so that "
                     "each batch is the one the uninterrupted run had", len(everyone) - len(conversations),
                     len(conversations))
        bar = tqdm(total=self.rules.max_turns, desc="turns", leave=False, disable=not self.progress)
        with bar:
            try:
                for index in range(self.rules.max_turns):
                    active = [c for c in everyone if not c.stop_reason]
                    if not any(c.plan.id not in stored for c in active) or stop.now():
                        break
                    seeds = tuple(rng.seed_of(SAMPLING, c.plan.round, c.plan.id, index) for c in active)
                    self._step(active, seeds, [goals[c.plan.id] for c in active], self.turn_time(now, index))
                    bar.update()
            except KeyboardInterrupt:
                raise Interrupted(self._done(conversations)) from None
            except Exception as error:
                raise RoundFailed(self._done(conversations), error) from error
        self._compare_replays([c for c in everyone if c.plan.id in stored], stored)
        return self._finished(conversations, stop)

    def _compare_replays(self, replayed: Sequence[_Conversation], stored: Mapping[str, Episode]) -> None:
        """A replayed episode that is not its stored self means generation here is not
        reproducible (another machine, library or dtype): the resumed round may then differ."""
        for conversation in replayed:
            said = [(t.speaker, t.text) for t in stored[conversation.plan.id].turns]
            again = [(t.speaker, t.text) for t in conversation.turns]
            if again[:len(said)] != said[:len(again)]:
                log.warning("episode %s came out differently when generated again on resume: the resumed "
                            "round may differ from an uninterrupted run (see README, Reproducibility)",
                            conversation.plan.id)

    def _step(self, active: list[_Conversation], seeds: tuple[int, ...], goals: list[np.random.Generator],
              now: float) -> None:
        requests = [TurnRequest(c.speaker, c.history, c.partner.name, c.plan.roles[c.speaker.name],
                                c.plan.scene, self._goal(c, stream))
                    for c, stream in zip(active, goals, strict=True)]
        replies = take_turns(requests, self.prompts, self.turn, now, Sampling(seeds), stats=self.stats,
                             ranker=self.ranker)
        for conversation, reply in zip(active, replies, strict=True):
            self._record(conversation, reply)

    def _goal(self, conversation: _Conversation, goals: np.random.Generator) -> str:
        """The plan's goal for this turn, else the goal policy's."""
        if conversation.planned_goal or self.goal_policy is None:
            return conversation.planned_goal
        earlier = [t.goal for t in conversation.turns if t.goal]
        return self.goal_policy.choose(len(conversation.turns), earlier, goals)

    def _record(self, conversation: _Conversation, reply: Reply) -> None:
        earlier = [t.text for t in conversation.turns if not t.failed]
        speaker = conversation.speaker
        model = speaker.label(conversation.plan.roles[speaker.name])
        conversation.turns.append(Turn.of(speaker.name, reply, model))
        conversation.stop_reason = self._stop_reason(conversation, reply, earlier)

    def _stop_reason(self, conversation: _Conversation, reply: Reply, earlier: list[str]) -> str:
        count = len(conversation.turns)
        if not reply.ok:
            return "failed_reply"
        if is_repetition(reply.text, earlier, self.rules.repetition_threshold):
            return "repetition"
        if self.rules.goodbye and count >= self.rules.min_turns and is_goodbye(reply.text):
            return "goodbye"
        if count >= self.rules.max_turns:
            return "max_turns"
        return ""

    def _finish(self, conversation: _Conversation) -> Episode:
        plan = conversation.plan
        names = tuple(s.name for s in plan.speakers)
        labels = {s.name: s.label(plan.roles[s.name]) for s in plan.speakers}
        return Episode(
            id=plan.id, round=plan.round, participants=names,  # type: ignore[arg-type]
            personas={s.name: s.persona.facts for s in plan.speakers},
            roles=dict(plan.roles), turns=tuple(conversation.turns),
            model=labels[names[0]] if len(set(labels.values())) == 1 else "mixed",
            character_ids={s.name: s.id for s in plan.speakers}, scene=plan.scene,
            stop_reason=conversation.stop_reason or "max_turns", models=labels)
