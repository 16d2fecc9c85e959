"""Pairing policies: disjoint pairs, round-robin coverage, seeding and fair sit-outs."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pytest

from agents.persona import Persona
from core.errors import UsageError
from core.records import Episode, Turn
from environment.graph import build_graph, update_graph
from matching.policies import RandomPairing, RoundRobinPairing, conversations_so_far, sit_out

pytestmark = pytest.mark.fast

POLICIES = [RandomPairing(), RoundRobinPairing()]


@dataclass(frozen=True)
class Someone:
    name: str


def people(n: int) -> list[Someone]:
    return [Someone(f"p{i:02d}") for i in range(n)]


def names(pairs) -> list[tuple[str, str]]:
    return [(a.name, b.name) for a, b in pairs]


def record(graph: nx.Graph, pairs, round_index: int) -> None:
    for index, (a, b) in enumerate(pairs):
        update_graph(graph, Episode(f"r{round_index}-e{index}", round_index, (a.name, b.name), {},
                                    {a.name: "peer", b.name: "peer"}, (Turn(a.name, "Hi."),), "test"))


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
@pytest.mark.parametrize("n", [2, 3, 4, 7, 10, 15])
def test_pairs_are_disjoint_and_cover_everyone_but_one_if_odd(policy, n: int) -> None:
    characters = people(n)
    rng = np.random.default_rng(1)
    for round_index in range(6):
        pairs = policy(characters, nx.Graph(), rng, round_index)
        seated = [c.name for pair in pairs for c in pair]
        assert len(seated) == len(set(seated)), "someone is in two pairs"
        assert all(a != b for a, b in pairs)
        assert len(pairs) == n // 2
        assert set(seated) <= {c.name for c in characters}
        assert len(set(seated)) == n - n % 2


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_fewer_than_two_characters_is_a_usage_error(policy) -> None:
    with pytest.raises(UsageError, match="at least 2"):
        policy(people(1), nx.Graph(), np.random.default_rng(0), 0)


@pytest.mark.parametrize("n", [2, 4, 6, 8, 16])
def test_round_robin_even_everyone_meets_everyone_once_in_n_minus_1_rounds(n: int) -> None:
    characters, policy = people(n), RoundRobinPairing()
    met = Counter(frozenset(p) for r in range(n - 1)
                  for p in names(policy(characters, nx.Graph(), np.random.default_rng(0), r)))
    assert set(met) == {frozenset(p) for p in itertools.combinations([c.name for c in characters], 2)}
    assert set(met.values()) == {1}
    # then the schedule repeats
    again, first = (names(policy(characters, nx.Graph(), None, r)) for r in (n - 1, 0))
    assert again == first


@pytest.mark.parametrize("n", [3, 5, 7, 9])
def test_round_robin_odd_everyone_meets_everyone_once_in_n_rounds_resting_once(n: int) -> None:
    characters, policy = people(n), RoundRobinPairing()
    met, rested = Counter(), Counter()
    for r in range(n):
        pairs = names(policy(characters, nx.Graph(), np.random.default_rng(0), r))
        met.update(frozenset(p) for p in pairs)
        seated = {name for pair in pairs for name in pair}
        rested.update(c.name for c in characters if c.name not in seated)
    assert set(met) == {frozenset(p) for p in itertools.combinations([c.name for c in characters], 2)}
    assert set(met.values()) == {1}
    assert rested == Counter({c.name: 1 for c in characters})


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
@pytest.mark.parametrize("n", [6, 7])
def test_same_seed_gives_the_same_pairs(policy, n: int) -> None:
    characters = people(n)

    def schedule(seed: int) -> list[list[tuple[str, str]]]:
        rng, graph, rounds = np.random.default_rng(seed), build_graph([], []), []
        for r in range(8):
            pairs = policy(characters, graph, rng, r)
            record(graph, pairs, r)
            rounds.append(names(pairs))
        return rounds

    assert schedule(42) == schedule(42)


def test_random_pairing_varies_with_the_seed_and_the_round() -> None:
    characters, policy = people(10), RandomPairing()
    rng = np.random.default_rng(3)
    def matching(pairs) -> frozenset:
        return frozenset(map(frozenset, names(pairs)))

    rounds = {matching(policy(characters, nx.Graph(), rng, r)) for r in range(5)}
    assert len(rounds) > 1
    seeds = {matching(policy(characters, nx.Graph(), np.random.default_rng(s), 0)) for s in range(5)}
    assert len(seeds) > 1


@pytest.mark.parametrize("n", [5, 7, 9])
def test_random_policy_spreads_sit_outs_evenly(n: int) -> None:
    characters, policy = people(n), RandomPairing()
    personas = [Persona(id=c.name, name=c.name, facts=("i like tea.",)) for c in characters]
    graph, rng, rested = build_graph(personas, []), np.random.default_rng(7), Counter()
    rounds = 10 * n
    for r in range(rounds):
        pairs = policy(characters, graph, rng, r)
        seated = {c.name for pair in pairs for c in pair}
        rested.update(c.name for c in characters if c.name not in seated)
        record(graph, pairs, r)
        counts = [rested[c.name] for c in characters]
        assert max(counts) - min(counts) <= 1, f"round {r}: uneven sit-outs {counts}"
    assert rested == Counter({c.name: 10 for c in characters})
    assert {conversations_so_far(graph, c.name) for c in characters} == {rounds - 10}


def test_sit_out_rests_the_busiest_and_keeps_even_groups_whole() -> None:
    characters = people(5)
    graph = build_graph([], [])
    record(graph, [(characters[0], characters[1])], 0)
    record(graph, [(characters[0], characters[2])], 1)
    present = sit_out(characters, graph, np.random.default_rng(0))
    assert [c.name for c in present] == ["p01", "p02", "p03", "p04"]
    assert sit_out(characters[:4], graph, np.random.default_rng(0)) == characters[:4]
