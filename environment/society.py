"""The Society: characters, the interaction graph and the one seeded RNG; it runs rounds."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from agents.character import Character
from agents.critic import Critic
from environment.engine import ConversationEngine, EpisodePlan, Interrupted
from environment.graph import build_graph, update_graph
from environment.records import Episode, Scene
from environment.store import SQLiteEpisodeStore
from matching.policies import PairingPolicy
from memory.writer import EpisodeMemoryWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncounterSettings:
    """How a pair meets: the share of seeker/supporter conversations (the rest are peers)
    and the scenes (location, status) to draw from; no scenes means no scene."""

    support_share: float = 0.5
    scenes: Sequence[Scene] = ()


@dataclass
class Society:
    characters: list[Character]
    policy: PairingPolicy
    engine: ConversationEngine
    critic: Critic
    store: SQLiteEpisodeStore
    rng: np.random.Generator
    encounters: EncounterSettings = field(default_factory=EncounterSettings)
    memory_writer: EpisodeMemoryWriter = field(default_factory=EpisodeMemoryWriter)
    graph: nx.Graph = field(init=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.characters]
        if len(set(names)) != len(names):
            raise ValueError("character names must be unique within a society")
        self.graph = build_graph([c.persona for c in self.characters], self.store.iter_episodes())
        self.personas = {c.name: c.persona for c in self.characters}

    def run_round(self, round_index: int) -> list[Episode]:
        """Pair, converse, score, store, remember. A resumed round replays the pairing from its
        RNG checkpoint and skips the episodes already stored."""
        saved = self.store.round_rng_state(round_index)
        if saved is None:
            self.store.begin_round(round_index, self.rng.bit_generator.state)
        else:
            self.rng.bit_generator.state = saved
        plans = self.plan_round(round_index, self._graph_before(round_index))
        done = self.store.ids()
        plans = [p for p in plans if p.id not in done]
        self.characters[0].memory.forget_episodes([p.id for p in plans])
        try:
            episodes = self.engine.run(plans, self.rng, now=float(round_index))
        except Interrupted as interrupted:
            self._keep(interrupted.finished, round_index)
            raise KeyboardInterrupt from None
        kept = self._keep(episodes, round_index)
        observe = getattr(self.policy, "observe", None)
        if observe is not None:  # learning policies (bandits) update from the critic's scores
            observe(self.store.episodes(round_index), self.graph)
        self.store.complete_round(round_index)
        self.store.begin_round(round_index + 1, self.rng.bit_generator.state)
        return kept

    def _graph_before(self, round_index: int) -> nx.Graph:
        """The graph as it stood when the round began: a resumed round must not see its own
        already stored episodes, or the replayed pairing could differ."""
        if not any(True for _ in self.store.iter_episodes(round_index)):
            return self.graph
        earlier = (e for e in self.store.iter_episodes() if e.round < round_index)
        return build_graph([c.persona for c in self.characters], earlier)

    def plan_round(self, round_index: int, graph: nx.Graph | None = None) -> list[EpisodePlan]:
        pairs = self.policy(self.characters, self.graph if graph is None else graph, self.rng, round_index)
        return [self._plan(round_index, i, a, b) for i, (a, b) in enumerate(pairs)]

    def _plan(self, round_index: int, index: int, a: Character, b: Character) -> EpisodePlan:
        support = self.rng.random() < self.encounters.support_share
        if self.rng.random() < 0.5:
            a, b = b, a
        roles = {a.name: "seeker", b.name: "supporter"} if support else {a.name: "peer", b.name: "peer"}
        scenes = self.encounters.scenes
        scene = scenes[int(self.rng.integers(len(scenes)))] if scenes else None
        return EpisodePlan(f"r{round_index:03d}-e{index:03d}", round_index, (a, b), roles, scene)

    def _keep(self, episodes: Sequence[Episode], round_index: int) -> list[Episode]:
        """Score, then per episode: memories, then one store transaction. Memories of an episode
        that did not reach the store are removed before its round is resumed."""
        if not episodes:
            return []
        scored = [e.with_scores(s) for e, s in
                  zip(episodes, self.critic.score(episodes, self.personas), strict=True)]
        memory = self.characters[0].memory
        for episode in scored:
            memory.add(self.memory_writer.records(episode, now=round_index + 0.5))
            self.store.append(episode)
            update_graph(self.graph, episode)
        return scored

    def seed_memories(self, importance: float) -> int:
        """Give each character its persona's seed memories (once, at the start of a run)."""
        records = [r for c in self.characters for r in c.seed_memories(0.0, importance)]
        return len(self.characters[0].memory.add(records)) if records else 0
