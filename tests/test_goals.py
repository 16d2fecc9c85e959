"""Turn-level goals: PersonaGPT action codes, custom goals, and self-play where the opener picks
a goal each turn from the society RNG (`conversation.goals=policy`), recorded in Turn.goal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.bank import DEFAULT_BANK, load_bank
from agents.character import Character
from agents.goals import ACTION_CODES, GoalPolicy, goal_policy, resolve_goal
from agents.prompting import PromptBuilder
from core.errors import UsageError
from core.rng import RngTree
from environment.engine import ConversationEngine, EpisodePlan
from memory.chroma import ChromaMemoryStore
from memory.retrieval import Forgetting, RetrievalWeights


@pytest.mark.parametrize(("given", "expected"), [
    ("pets", "ask about their pets"), ("ask about pets", "ask about their pets"),
    ("Music", "talk about music"),
    ("traveling", "talk about traveling"), ("marital status", "ask about their marital status"),
    ("  tell a joke about cats. ", "tell a joke about cats"),
])
def test_action_codes_and_custom_goals(given: str, expected: str) -> None:
    assert resolve_goal(given) == expected


def test_bad_goals_are_refused() -> None:
    for bad in ("", "   ", "x" * 201):
        with pytest.raises(ValueError):
            resolve_goal(bad)


def test_the_policy_steers_only_its_speaker_and_avoids_repeats() -> None:
    policy = GoalPolicy()
    rng = np.random.default_rng(0)
    assert policy.choose(1, [], rng) == "" and policy.choose(3, [], rng) == ""
    chosen: list[str] = []
    for turn in range(0, 2 * len(ACTION_CODES), 2):
        chosen.append(policy.choose(turn, chosen, rng))
    assert sorted(chosen) == sorted(ACTION_CODES.values())  # every goal once before any repeat
    again = [GoalPolicy().choose(0, [], np.random.default_rng(7)) for _ in range(2)]
    assert again[0] == again[1]  # the same seed, the same goal


def test_goal_modes() -> None:
    assert goal_policy("none") is None
    assert isinstance(goal_policy("policy"), GoalPolicy)
    with pytest.raises(UsageError, match=r"goals='sometimes' is invalid"):
        goal_policy("sometimes")


def test_self_play_records_a_goal_per_interviewer_turn(tmp_path: Path, chat_model, embedder) -> None:
    memory = ChromaMemoryStore(str(tmp_path / "memory"), embedder, RetrievalWeights(), Forgetting())
    # Sampled, best of three (the defaults): greedy 20-token openings of the bundled model
    # address their own speaker, which the cleaner rightly rejects, and a greedy retry repeats them.
    short = chat_model.model_copy(update={"max_new_tokens": 20, "temperature": 0.7})  # shares the weights
    bank = load_bank(DEFAULT_BANK)
    plans = []
    for index in range(2):
        a, b = (Character(p, memory, short) for p in bank[2 * index: 2 * index + 2])
        plans.append(EpisodePlan(f"r000-e{index:03d}", 0, (a, b), {a.name: "peer", b.name: "peer"}))
    engine = ConversationEngine(PromptBuilder(), max_turns=2, min_turns=2, stop_on_goodbye=False,
                                repetition_threshold=1.1, retries=1, goals="policy", progress=False,
                                keep_prompts=True, candidates=3)
    episodes = engine.run(plans, RngTree(3), now=0.0)
    for episode in episodes:
        goals = [t.goal for t in episode.turns]
        assert all(g in ACTION_CODES.values() for g in goals[0::2]) and not any(goals[1::2])
        assert len(set(goals[0::2])) == len(goals[0::2])  # no repeated goal within an episode
        assert episode.to_dict()["turns"][0]["goal"] == goals[0]
    assert max(len(e.turns) for e in episodes) == 2
    systems = [str(p[0].content) for p in engine.stats.prompts]  # episodes interleave: any order
    assert all(any(f"In your next reply, {e.turns[0].goal}." in s for s in systems) for e in episodes)
    assert any("In your next reply" not in s for s in systems)


def test_goals_policy_through_run_py_records_the_openers_goals(tmp_path: Path) -> None:
    """`conversation.goals=policy` is a documented switch: it must reach the engine from the
    command line, not only when a test builds the engine by hand."""
    import json

    from tests.conftest import run_py

    result = run_py("experiment=smoke", "conversation.goals=policy", "simulation.progress=false",
                    f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    openers = [e["turns"][0] for e in episodes]
    assert openers and all(t["goal"] in ACTION_CODES.values() for t in openers)
    assert all(not t["goal"] for e in episodes for t in e["turns"][1::2])
