"""Pairing policies (core.seams.PairingPolicy): `(characters, graph, rng, round_index) -> disjoint
pairs`, and `observe(episodes, graph)` after each round.

Every policy returns disjoint pairs. With an odd number of characters one sits out; the
fair rule (`sit_out`) rests whoever has had the most conversations so far."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import networkx as nx
import numpy as np

from core.errors import UsageError
from core.records import Episode

if TYPE_CHECKING:
    from agents.persona import Persona


class Named(Protocol):
    @property
    def name(self) -> str: ...


C = TypeVar("C", bound=Named)


@dataclass(frozen=True)
class PersonaMember:
    """A member as policies see a character (a name and a persona), without memory or model:
    for pairing a bank outside a society (benchmarks, tests)."""

    persona: Persona

    @property
    def name(self) -> str:
        return self.persona.name


def conversations_so_far(graph: nx.Graph, name: str) -> int:
    if name not in graph:
        return 0
    return sum(int(data.get("episodes", 0)) for _, _, data in graph.edges(name, data=True))


def sit_out(characters: Sequence[C], graph: nx.Graph, rng: np.random.Generator) -> list[C]:
    """Drop one character if the count is odd: the busiest so far, ties broken by the RNG."""
    if len(characters) % 2 == 0:
        return list(characters)
    loads = np.array([conversations_so_far(graph, c.name) for c in characters], dtype=float)
    candidates = np.flatnonzero(loads == loads.max())
    resting = int(rng.choice(candidates))
    return [c for i, c in enumerate(characters) if i != resting]


def require_pairs(characters: Sequence[Named]) -> None:
    if len(characters) < 2:
        raise UsageError(f"pairing needs at least 2 characters, got {len(characters)}")


class RandomPairing:
    """Uniformly random disjoint pairs each round."""

    name = "random"

    def observe(self, episodes: Sequence[Episode], graph: nx.Graph) -> None:
        """Fixed policy: nothing to learn."""

    def __call__(self, characters: Sequence[C], graph: nx.Graph, rng: np.random.Generator,
                 round_index: int) -> list[tuple[C, C]]:
        require_pairs(characters)
        present = sit_out(characters, graph, rng)
        order = rng.permutation(len(present))
        return [(present[order[i]], present[order[i + 1]]) for i in range(0, len(order), 2)]


class RoundRobinPairing:
    """The circle method: over n-1 rounds (n even; n rounds if odd, one resting each round)
    everyone meets everyone exactly once; then the schedule repeats."""

    name = "round_robin"

    def observe(self, episodes: Sequence[Episode], graph: nx.Graph) -> None:
        """Fixed policy: nothing to learn."""

    def __call__(self, characters: Sequence[C], graph: nx.Graph, rng: np.random.Generator,
                 round_index: int) -> list[tuple[C, C]]:
        require_pairs(characters)
        slots: list[C | None] = list(characters) + ([None] if len(characters) % 2 else [])
        n = len(slots)
        shift = round_index % (n - 1)
        rotating = slots[1:]
        rotating = rotating[-shift:] + rotating[:-shift] if shift else rotating
        circle = [slots[0], *rotating]
        pairs = [(circle[i], circle[n - 1 - i]) for i in range(n // 2)]
        return [(a, b) for a, b in pairs if a is not None and b is not None]
