"""The Society: characters, the interaction graph and the seeded RNG tree; it runs rounds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from agents.character import Character
from agents.critic import Critic
from agents.persona import Attributes
from core.errors import is_number, is_whole, require
from core.records import Episode, RecallCount, Scene
from core.rng import ENCOUNTERS, PAIRING, RngTree
from core.seams import EpisodeStore, PairingPolicy
from environment.budget import BudgetReached
from environment.engine import BudgetCheck, ConversationEngine, EpisodePlan, Interrupted, RoundFailed
from environment.graph import build_graph, update_graph
from memory.recalls import RecallHistory, TurnRecalls
from memory.writer import EpisodeMemoryWriter

log = logging.getLogger(__name__)
MIN_SIZE = 2  # a society needs at least one pair


@dataclass(frozen=True)
class EncounterSettings:
    """How a pair meets: the share of seeker/supporter conversations (the rest are peers)
    and the scenes (location, status) to draw from; no scenes means no scene."""

    support_share: float = 0.5
    scenes: Sequence[Scene] = ()


@dataclass(frozen=True)
class SocietySettings:
    """`society.*` in the config: who is in the society and how pairs meet."""

    size: int = 16
    bank: str | None = None
    support_share: float = 0.5
    attributes: Attributes = field(default_factory=Attributes)
    use_scenes: bool = True
    scenes: tuple[Scene, ...] = ()

    def __post_init__(self) -> None:
        require(is_whole(self.size, MIN_SIZE), "size", f"allowed is a whole number >= {MIN_SIZE}", self.size)
        require(is_number(self.support_share, 0, 1), "support_share", "allowed is a number from 0 to 1",
                self.support_share)
        require(isinstance(self.use_scenes, bool), "use_scenes", "allowed is true or false", self.use_scenes)
        if isinstance(self.attributes, dict):
            object.__setattr__(self, "attributes", Attributes(**self.attributes))
        object.__setattr__(self, "scenes", tuple(_scene(s) for s in self.scenes))

    @property
    def encounters(self) -> EncounterSettings:
        return EncounterSettings(self.support_share, self.scenes if self.use_scenes else ())


def _scene(value: Scene | dict[str, Any]) -> Scene:
    if isinstance(value, Scene):
        return value
    require(isinstance(value, dict) and set(value) == {"location", "status"}, "scenes",
            "allowed is a list of {location, status}", value)
    return Scene(str(value["location"]), str(value["status"]))


@dataclass
class Society:
    characters: list[Character]
    policy: PairingPolicy
    engine: ConversationEngine
    critic: Critic
    store: EpisodeStore
    rng: RngTree
    encounters: EncounterSettings = field(default_factory=EncounterSettings)
    memory_writer: EpisodeMemoryWriter = field(default_factory=EpisodeMemoryWriter)
    graph: nx.Graph = field(init=False)
    recalls: RecallHistory = field(init=False)
    _committing: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        names = [c.name for c in self.characters]
        if len(set(names)) != len(names):
            raise ValueError("character names must be unique within a society")
        stored = self.store.episodes()
        self.graph = build_graph([c.persona for c in self.characters], stored)
        self.recalls = self._history(stored)
        self.personas = {c.name: c.persona for c in self.characters}

    def run_round(self, round_index: int, budget: BudgetCheck | None = None) -> list[Episode]:
        """Pair, converse, score, store, remember. A round's draws come from its own RNG
        streams, so a resumed round replays its pairing and re-runs only the episodes not yet
        stored, from the memory state the round began with (see _rewind).
        When ``budget`` says it is spent, the finished episodes are kept and BudgetReached
        goes up; the round stays incomplete, so a resume runs the rest."""
        self.store.begin_round(round_index)
        plans = self.plan_round(round_index, self._graph_before(round_index))
        stored = {e.id: e for e in self.store.iter_episodes(round_index)}
        self._rewind(round_index, plans, stored)
        committed: dict[str, Episode] = {}
        try:
            episodes = self.engine.run(plans, self.rng, now=float(round_index), budget=budget, stored=stored,
                                       on_finished=lambda episode: self._commit(episode, committed))
        except Interrupted as interrupted:
            self._keep(plans, stored, interrupted.finished, committed)
            raise KeyboardInterrupt from None
        except BudgetReached as spent:
            self._keep(plans, stored, spent.finished, committed)
            raise
        except RoundFailed as failed:
            self._keep(plans, stored, failed.finished, committed)
            raise failed.error from None
        kept = self._keep(plans, stored, episodes, committed)
        self.policy.observe(self.store.episodes(round_index), self.graph)
        self.store.complete_round(round_index)
        return kept

    def _rewind(self, round_index: int, plans: Sequence[EpisodePlan], stored: Mapping[str, Episode]) -> None:
        """Memory as the round began: a kill may have left some of the round's commits in
        memory (its episodes' memories, their recalls' reinforcement), whole or in part. The
        round's episodes see none of them while they run (the lockstep engine generates the
        stored ones again), and _keep commits them all afterwards. An episode's memories come
        after its insert, so a round without stored episodes has nothing to take back."""
        if not stored:
            return
        memory = self.characters[0].memory
        memory.forget_episodes([p.id for p in plans])
        recalled = {i for e in stored.values() for i in _recalled(e)}
        if recalled:
            before = self._history(e for e in self.store.iter_episodes() if e.round < round_index)
            memory.set_recalls(before.at(recalled))

    def _graph_before(self, round_index: int) -> nx.Graph:
        """The graph as it stood when the round began: a resumed round must not see its own
        already stored episodes, or the replayed pairing could differ."""
        if not any(True for _ in self.store.iter_episodes(round_index)):
            return self.graph
        earlier = (e for e in self.store.iter_episodes() if e.round < round_index)
        return build_graph([c.persona for c in self.characters], earlier)

    def plan_round(self, round_index: int, graph: nx.Graph | None = None) -> list[EpisodePlan]:
        pairing = self.rng.stream(PAIRING, round_index)
        pairs = self.policy(self.characters, self.graph if graph is None else graph, pairing, round_index)
        names = [c.name for pair in pairs for c in pair]
        if len(set(names)) != len(names):  # the policies' contract; resume relies on it
            raise ValueError(f"the pairing policy put a character in two pairs of round {round_index}")
        encounters = self.rng.stream(ENCOUNTERS, round_index)
        return [self._plan(round_index, i, a, b, encounters) for i, (a, b) in enumerate(pairs)]

    def _plan(self, round_index: int, index: int, a: Character, b: Character, rng: Any) -> EpisodePlan:
        support = rng.random() < self.encounters.support_share
        if rng.random() < 0.5:
            a, b = b, a
        roles = {a.name: "seeker", b.name: "supporter"} if support else {a.name: "peer", b.name: "peer"}
        scenes = self.encounters.scenes
        scene = scenes[int(rng.integers(len(scenes)))] if scenes else None
        return EpisodePlan(f"r{round_index:03d}-e{index:03d}", round_index, (a, b), roles, scene)

    def _commit(self, episode: Episode, committed: dict[str, Episode]) -> None:
        """Score and commit one episode as soon as it has finished (the independent schedule,
        from its own thread), so a kill in the middle of a long round loses only the episodes
        still running. Pairs are disjoint and memory is per owner, so no running episode reads
        what this commit writes; one commit at a time."""
        with self._committing:
            scored = episode.with_scores(self.critic.score([episode], self.personas)[0])
            self.store.append(scored)
            committed[scored.id] = scored
            self._remember(scored, self.recalls.add(self._recall_times(scored)))

    def _keep(self, plans: Sequence[EpisodePlan], stored: Mapping[str, Episode],
              episodes: Sequence[Episode], committed: Mapping[str, Episode]) -> list[Episode]:
        """Score the new episodes not yet committed, then commit the round's episodes in the
        plans' order: a new one's commit is its store transaction, then what it changes in
        memory (its memories, its recalls' reinforcement); a stored one's is only the latter.
        Memory follows from the stored episodes alone, so an episode that never reached the
        store left nothing in it. The graph takes the new episodes in the plans' order (the
        order in which they finished differs between runs)."""
        fresh = [e for e in episodes if e.id not in committed]
        scores = self.critic.score(fresh, self.personas) if fresh else []
        scored = {e.id: e.with_scores(s) for e, s in zip(fresh, scores, strict=True)}
        kept = []
        for plan in plans:
            if plan.id in stored:
                episode = stored[plan.id]
                self._remember(episode, self.recalls.of(_recalled(episode)))
            elif plan.id in committed:
                kept.append(committed[plan.id])
                update_graph(self.graph, committed[plan.id])
            elif plan.id in scored:
                episode = scored[plan.id]
                self.store.append(episode)
                self._remember(episode, self.recalls.add(self._recall_times(episode)))
                update_graph(self.graph, episode)
                kept.append(episode)
        return kept

    def _remember(self, episode: Episode, recalls: Mapping[str, RecallCount]) -> None:
        memory = self.characters[0].memory
        memory.add(self.memory_writer.records(episode, now=episode.round + 0.5))
        memory.set_recalls(recalls)

    def _history(self, episodes: Iterable[Episode]) -> RecallHistory:
        history = RecallHistory()
        for episode in episodes:
            history.add(self._recall_times(episode))
        return history

    def _recall_times(self, episode: Episode) -> TurnRecalls:
        start = float(episode.round)
        return [(t.memory_ids, self.engine.turn_time(start, i)) for i, t in enumerate(episode.turns)]

    def seed_memories(self, importance: float) -> int:
        """Give each character its persona's seed memories (once, at the start of a run)."""
        records = [r for c in self.characters for r in c.seed_memories(0.0, importance)]
        return len(self.characters[0].memory.add(records)) if records else 0


def _recalled(episode: Episode) -> set[str]:
    """The memories an episode's turns recalled."""
    return {i for t in episode.turns for i in t.memory_ids}
