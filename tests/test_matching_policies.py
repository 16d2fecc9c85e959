"""Score-based pairing policies on real personas and the real MiniLM: disjoint pairs, fair
sit-outs, determinism, what each policy prefers, bandit updates, and the matching solver."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from agents.bank import load_bank
from core.errors import UsageError
from core.records import Episode, Scores, Turn
from environment.graph import build_graph, update_graph
from matching.assignment import max_weight_pairs
from matching.bandit import BanditPairing
from matching.compatibility import CompatibilityPairing
from matching.features import mbti_overlap
from matching.policies import PersonaMember as Member
from matching.policies import RandomPairing, RoundRobinPairing
from matching.preference import GraphPairing, HeterophilyPairing, HomophilyPairing

ROOT = Path(__file__).resolve().parents[1]
BANK = load_bank(ROOT / "agents" / "data" / "bank.jsonl")


def members(n: int, start: int = 0) -> list[Member]:
    return [Member(p) for p in BANK[start:start + n]]


def factories(embedder) -> dict[str, Callable[[], object]]:
    return {
        "random": RandomPairing,
        "round_robin": RoundRobinPairing,
        "homophily": lambda: HomophilyPairing(embedder),
        "heterophily": lambda: HeterophilyPairing(embedder),
        "graph": lambda: GraphPairing(explore=0.3),
        "compatibility": lambda: CompatibilityPairing(embedder=embedder),
        "bandit_ucb": lambda: BanditPairing("ucb", embedder=embedder),
        "bandit_thompson": lambda: BanditPairing("thompson", embedder=embedder),
    }


NAMES = list(factories(None))


def scored_episode(pair: tuple[Member, Member], round_index: int, index: int, overall: float) -> Episode:
    a, b = pair[0].name, pair[1].name
    return Episode(f"r{round_index:03d}-e{index:03d}", round_index, (a, b), {}, {a: "peer", b: "peer"},
                   (Turn(a, "Hello there."),), "test", scores=Scores({}, {}, overall))


def play(policy, characters: list[Member], rounds: int, seed: int, score=lambda pair: 3.0
         ) -> list[list[tuple[str, str]]]:
    """Rounds as the Society runs them: pair, record scored episodes in the graph, observe."""
    rng, graph, schedule = np.random.default_rng(seed), build_graph([c.persona for c in characters], []), []
    for r in range(rounds):
        pairs = policy(characters, graph, rng, r)
        episodes = [scored_episode(p, r, i, score(p)) for i, p in enumerate(pairs)]
        for episode in episodes:
            update_graph(graph, episode)
        if hasattr(policy, "observe"):
            policy.observe(episodes, graph)
        schedule.append([(a.name, b.name) for a, b in pairs])
    return schedule


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [2, 3, 8, 11])
def test_pairs_are_disjoint_and_everyone_but_one_is_paired(embedder, name: str, n: int) -> None:
    characters = members(n)
    for pairs in play(factories(embedder)[name](), characters, 3, seed=5):
        seated = [who for pair in pairs for who in pair]
        assert len(seated) == len(set(seated)) == n - n % 2
        assert all(a != b for a, b in pairs)


@pytest.mark.parametrize("name", NAMES)
def test_odd_society_rests_everyone_once_over_n_rounds(embedder, name: str) -> None:
    characters = members(5, start=7)
    rested = Counter()
    for pairs in play(factories(embedder)[name](), characters, 5, seed=2):
        seated = {who for pair in pairs for who in pair}
        rested.update(c.name for c in characters if c.name not in seated)
    assert rested == Counter({c.name: 1 for c in characters})


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_schedule(embedder, name: str) -> None:
    characters = members(9, start=20)
    varied = lambda pair: 2.0 + (len(pair[0].name) * len(pair[1].name)) % 30 / 10  # noqa: E731
    first = play(factories(embedder)[name](), characters, 4, seed=11, score=varied)
    assert first == play(factories(embedder)[name](), characters, 4, seed=11, score=varied)


def test_homophily_pairs_similar_types_and_heterophily_dissimilar(embedder) -> None:
    characters = members(16, start=0)  # the bank lists 4 per type: ESTJ, ESTP, ESFJ, ESFP here
    overlap = mbti_overlap([c.persona for c in characters])
    index = {c.name: i for i, c in enumerate(characters)}

    def mean_overlap(policy) -> float:
        pairs = play(policy, characters, 1, seed=0)[0]
        return float(np.mean([overlap[index[a], index[b]] for a, b in pairs]))

    similar = mean_overlap(HomophilyPairing(embedder))
    different = mean_overlap(HeterophilyPairing(embedder))
    chance = float(overlap[np.triu_indices(16, 1)].mean())
    assert similar > chance > different


def test_repeat_penalty_spreads_homophily_over_partners(embedder) -> None:
    characters = members(8, start=30)
    sticky = play(HomophilyPairing(embedder, repeat_penalty=0.0), characters, 3, seed=1)
    spread = play(HomophilyPairing(embedder, repeat_penalty=5.0), characters, 3, seed=1)
    assert sticky[0] == sticky[1] == sticky[2]
    assert len({frozenset(p) for r in spread for p in r}) == 12  # 3 rounds x 4 pairs, no repeat


def test_graph_policy_returns_to_good_partners_unless_exploring() -> None:
    characters = members(6, start=40)
    graph = build_graph([c.persona for c in characters], [])
    good = (characters[0], characters[1])
    update_graph(graph, scored_episode(good, 0, 0, 4.8))
    update_graph(graph, scored_episode((characters[2], characters[3]), 0, 1, 1.2))
    names = {good[0].name, good[1].name}
    stays = GraphPairing(explore=0.0)(characters, graph, np.random.default_rng(0), 1)
    assert names in [{a.name, b.name} for a, b in stays]
    assert {characters[2].name, characters[3].name} not in [{a.name, b.name} for a, b in stays]
    explores = GraphPairing(explore=1.0)(characters, graph, np.random.default_rng(0), 1)
    assert names not in [{a.name, b.name} for a, b in explores]


def test_bandit_observe_moves_the_observed_pair_and_the_offset(embedder) -> None:
    characters = members(6, start=12)
    bandit = BanditPairing("ucb", embedder=embedder)
    before = bandit.beliefs(characters)
    pair = (characters[0], characters[1])
    bandit.observe([scored_episode(pair, 0, 0, 5.0)], nx.Graph())
    after = bandit.beliefs(characters)
    assert after.mean[0, 1] > before.mean[0, 1] + 0.3 and after.mean[0, 1] == after.mean[1, 0]
    assert after.sd[0, 1] < before.sd[0, 1]
    assert after.offset > 0 and after.mean[2, 3] > before.mean[2, 3]  # the scorer-to-critic offset
    assert after.sd[2, 3] == before.sd[2, 3]


def test_bandit_resumes_its_observations_from_the_graph(embedder) -> None:
    characters = members(6, start=12)
    episodes = [scored_episode((characters[0], characters[1]), 0, 0, 4.5),
                scored_episode((characters[2], characters[3]), 0, 1, 2.0)]
    observed = BanditPairing("ucb", embedder=embedder)
    observed.observe(episodes, nx.Graph())
    observed._started = True
    resumed = BanditPairing("ucb", embedder=embedder)
    graph = build_graph([c.persona for c in characters], episodes)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert [tuple(c.name for c in p) for p in observed(characters, graph, rng_a, 1)] == \
        [tuple(c.name for c in p) for p in resumed(characters, graph, rng_b, 1)]
    assert resumed.observations == observed.observations


def test_bandit_learns_to_repeat_a_pair_that_scores_high(embedder) -> None:
    characters = members(6, start=50)
    star = {characters[4].name, characters[5].name}
    score = lambda pair: 5.0 if {pair[0].name, pair[1].name} == star else 1.5  # noqa: E731
    schedule = play(BanditPairing("ucb", embedder=embedder, exploration=0.2), characters, 12, seed=4,
                    score=score)
    met = [star in [set(p) for p in pairs] for pairs in schedule]
    assert any(met) and all(met[met.index(True):]), met


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"algorithm='epsilon' is invalid"):
        BanditPairing("epsilon")
    with pytest.raises(UsageError, match=r"explore=1\.5 is invalid"):
        GraphPairing(explore=1.5)
    with pytest.raises(UsageError, match="repeat_penalty"):
        HomophilyPairing(repeat_penalty=-1)


def total(weights: np.ndarray, pairs) -> float:
    return float(sum(weights[a, b] for a, b in pairs))


def test_assignment_is_exact_when_small_and_close_to_exact_when_large() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8))
    weights = vectors @ vectors.T
    exact = max_weight_pairs(weights, exact_limit=100)
    approx = max_weight_pairs(weights, exact_limit=0)
    for pairs in (exact, approx):
        assert sorted(itertools.chain.from_iterable(pairs)) == list(range(40))
    assert total(weights, approx) >= 0.98 * total(weights, exact)
    brute = np.array([[0, 9, 1, 1], [9, 0, 1, 1], [1, 1, 0, 2], [1, 1, 2, 0]], dtype=float)
    assert max_weight_pairs(brute) == [(0, 1), (2, 3)]


def test_assignment_avoids_forbidden_cells_and_needs_an_even_count() -> None:
    weights = np.ones((4, 4))
    weights[0, 1] = weights[1, 0] = -np.inf
    assert (0, 1) not in max_weight_pairs(weights) and (0, 1) not in max_weight_pairs(weights, exact_limit=0)
    with pytest.raises(ValueError, match="even"):
        max_weight_pairs(np.ones((3, 3)))
