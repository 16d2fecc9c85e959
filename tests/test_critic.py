"""The critic: experts mixed per dimension, a weighted overall over the dimensions that apply,
unweighted scorers never built; the metric scorers (real MiniLM) and the LLM judge (real model)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from agents.critic import Critic, DimensionSpec
from agents.judge import LLMJudge
from agents.persona import Persona
from agents.scorers import Judgement
from core.errors import UsageError
from core.records import Episode, Scene, Turn

ROOT = Path(__file__).resolve().parents[1]
with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
    DEFAULT_CRITIC = compose("config").critic
DIMENSIONS = ("mood_improved", "problem_solved", "seeker_engaged", "persona_consistency", "naturalness")
GATES = ("copying", "self_address", "recitation", "contradiction")
NAN = math.nan


class Fixed:
    """A scorer that returns the same judgement for every episode (control-flow tests only)."""

    def __init__(self, judgement: Judgement) -> None:
        self.judgement = judgement
        self.calls = 0

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Persona]) -> list[Judgement]:
        self.calls += 1
        return [dict(self.judgement) for _ in episodes]


def never_build(**_: object) -> None:
    raise AssertionError("a scorer without weight was built")


def episode(turns: Sequence[tuple[str, str]], roles: dict[str, str] | None = None,
            personas: dict[str, tuple[str, ...]] | None = None, eid: str = "e1") -> Episode:
    roles = roles or {"Ann": "peer", "Bob": "peer"}
    personas = personas if personas is not None else {
        "Ann": ("i am a nurse.", "i work night shifts at the hospital.", "i have two dogs."),
        "Bob": ("i repair bicycles.", "i own a small bike shop.", "i love cycling in the mountains."),
    }
    return Episode(id=eid, round=0, participants=("Ann", "Bob"), personas=personas, roles=roles,
                   turns=tuple(Turn(s, t) for s, t in turns), model="test",
                   scene=Scene("a bookshop", "Both reached for the same book."))


ON_PERSONA = [
    ("Ann", "I just finished a night shift at the hospital. Being a nurse is exhausting."),
    ("Bob", "I fixed bicycles all day in my bike shop. Do you ride?"),
    ("Ann", "Only when I walk my two dogs, they run next to my bike."),
    ("Bob", "Next weekend I am cycling in the mountains, you should come along."),
]
SUPPORT = [
    ("Ann", "I'm so stressed, my night shifts are wrecking my sleep and I don't know what to do."),
    ("Bob", "That sounds exhausting. Could you ask your manager for fewer night shifts?"),
    ("Ann", "Maybe. I never thought of asking. That could really help."),
    ("Bob", "Try it, and rest on your days off. Your health matters."),
    ("Ann", "Thank you, I feel much better now. I will talk to her tomorrow."),
]
SUPPORT_ROLES = {"Ann": "seeker", "Bob": "supporter"}


# --- combining experts (control flow, fixed expert outputs) ----------------------------------

def test_experts_are_mixed_by_weight_and_overall_is_the_weighted_mean() -> None:
    low = Fixed({"d1": (2.0, "low says 2"), "d2": (NAN, "low cannot tell"), "d3": (1.0, "")})
    high = Fixed({"d1": (4.0, "high says 4"), "d2": (5.0, "high says 5"), "d3": (3.0, "")})
    critic = Critic({"low": low, "high": high}, {
        "d1": {"weight": 1.0, "experts": {"low": 0.25, "high": 0.75}},
        "d2": {"weight": 3.0, "experts": {"low": 1.0, "high": 1.0}},
        "d3": {"weight": 0.0, "experts": {"low": 1.0}},  # reported, not in overall
    })
    scores = critic(episode(ON_PERSONA))
    assert scores.values["d1"] == pytest.approx(0.25 * 2 + 0.75 * 4)
    assert scores.values["d2"] == pytest.approx(5.0)  # the NaN expert is skipped, not averaged in
    assert scores.values["d3"] == pytest.approx(1.0)
    assert scores.overall == pytest.approx((3.5 * 1 + 5.0 * 3) / 4)
    assert scores.reasons["d1"] == "low says 2; high says 4"
    assert scores.reasons["d2"] == "low cannot tell; high says 5"


def test_nan_dimensions_are_left_out_of_overall() -> None:
    experts = {"a": Fixed({"known": (2.0, ""), "unknown": (NAN, "does not apply")})}
    critic = Critic(experts, {"known": DimensionSpec(1.0, {"a": 1.0}),
                              "unknown": DimensionSpec(9.0, {"a": 1.0})})
    scores = critic(episode(ON_PERSONA))
    assert math.isnan(scores.values["unknown"])
    assert scores.overall == pytest.approx(2.0)
    assert scores.to_dict() == {"known": 2.0, "unknown": None, "overall": 2.0}


def test_overall_is_nan_with_a_reason_when_no_dimension_applies() -> None:
    critic = Critic({"a": Fixed({"x": (NAN, "")})}, {"x": DimensionSpec(1.0, {"a": 1.0})})
    scores = critic(episode(ON_PERSONA))
    assert math.isnan(scores.overall) and not scores.rated
    assert "no weighted dimension applies" in scores.overall_reason
    assert scores.to_dict()["overall"] is None


def test_zero_weight_scorers_are_never_built_or_called() -> None:
    used = Fixed({"d": (4.0, "")})
    critic = Critic(
        {"used": used, "judge": never_build, "spare": never_build},
        {"d": {"weight": 1.0, "experts": {"used": 1.0, "judge": 0.0}}},
        model=object())
    assert set(critic.scorers) == {"used"}
    assert critic.score([episode(ON_PERSONA), episode(SUPPORT, SUPPORT_ROLES, eid="e2")])[1].overall == 4.0
    assert used.calls == 1  # one call for the whole batch of episodes


def test_scorer_factories_get_only_the_resources_they_accept() -> None:
    seen = {}

    def needs_embedder(embedder):
        seen["embedder"] = embedder
        return Fixed({"d": (3.0, "")})

    Critic({"e": needs_embedder}, {"d": DimensionSpec(1.0, {"e": 1.0})}, embedder="EMB", model="LLM")
    assert seen == {"embedder": "EMB"}


def test_invalid_critic_configs_are_rejected() -> None:
    with pytest.raises(UsageError, match=r"\['missing'\] have none"):
        Critic({}, {"d": DimensionSpec(1.0, {"missing": 1.0})})
    with pytest.raises(UsageError, match="weight > 0"):
        Critic({"a": Fixed({})}, {"d": DimensionSpec(0.0, {"a": 1.0})})
    with pytest.raises(UsageError, match=r"weight=-1\.0 is invalid: allowed is a number >= 0"):
        DimensionSpec(-1.0, {"a": 1.0})
    with pytest.raises(UsageError, match=r"dimensions\.d\.experts\.a=-2 is invalid"):
        Critic({"a": Fixed({})}, {"d": {"weight": 1.0, "experts": {"a": -2}}})


# --- the default critic with the real embedder ---------------------------------------------------

@pytest.fixture(scope="module")
def default_critic(embedder) -> Critic:
    # The judge has weight 0 in the default config, so no chat model is needed (model=None).
    return instantiate(DEFAULT_CRITIC)(embedder=embedder, model=None)


def expected_overall(values: Mapping[str, float]) -> float:
    """The weighted mean of the quality dimensions, pulled to the floor by the failure gates."""
    weights = {d: float(DEFAULT_CRITIC.dimensions[d].weight) for d in (*DIMENSIONS, *GATES)}
    used = [d for d in DIMENSIONS if not math.isnan(values[d]) and weights[d] > 0]
    quality = sum(values[d] * weights[d] for d in used) / sum(weights[d] for d in used)
    factor = math.prod(((values[g] - 1) / 4) ** weights[g] for g in GATES if not math.isnan(values[g]))
    return 1 + (quality - 1) * factor


def test_default_critic_leaves_the_judge_unbuilt(default_critic: Critic) -> None:
    assert "judge" not in default_critic.scorers
    assert set(default_critic.scorers) == {"persona", "naturalness", "engagement", "mood", "problem",
                                           "copying", "self_address", "recitation", "contradiction"}


def test_default_critic_scores_are_on_scale_and_overall_is_the_weighted_mean(default_critic: Critic
                                                                             ) -> None:
    peer, support = episode(ON_PERSONA), episode(SUPPORT, SUPPORT_ROLES, eid="e2")
    peer_scores, support_scores = default_critic.score([peer, support])
    for scores in (peer_scores, support_scores):
        assert set(scores.values) == {*DIMENSIONS, *GATES}
        assert all(math.isnan(v) or 1.0 <= v <= 5.0 for v in scores.values.values())
        assert scores.overall == pytest.approx(expected_overall(scores.values))
    # Peers: no seeker, so mood and problem do not apply; everything applies to a support talk.
    assert math.isnan(peer_scores.values["mood_improved"])
    assert math.isnan(peer_scores.values["problem_solved"])
    assert not any(math.isnan(support_scores.values[d]) for d in DIMENSIONS)
    assert support_scores.values["mood_improved"] > 3.0  # "stressed" -> "I feel much better now"


def test_persona_consistency_prefers_the_speakers_own_persona(default_critic: Critic) -> None:
    own = episode(ON_PERSONA)
    swapped = episode(ON_PERSONA, personas={"Ann": own.personas["Bob"], "Bob": own.personas["Ann"]})
    unrelated = episode(ON_PERSONA, personas={"Ann": ("i collect stamps.", "i play the violin."),
                                              "Bob": ("i am a pastry chef in paris.",)})
    values = [s.values["persona_consistency"] for s in default_critic.score([own, swapped, unrelated])]
    assert values[0] > values[1] and values[0] > values[2]


def test_failed_turns_and_repetition_lower_naturalness(default_critic: Critic) -> None:
    fine = episode(ON_PERSONA)
    repetitive = episode([ON_PERSONA[0], ON_PERSONA[1], ON_PERSONA[0], ON_PERSONA[1]])
    broken = Episode(**{**fine.__dict__, "turns": (*fine.turns[:2], Turn("Ann", "", failed=True, error="x"),
                                                   Turn("Bob", "", failed=True, error="x"))})
    values = [s.values["naturalness"] for s in default_critic.score([fine, repetitive, broken])]
    assert values[0] > values[1] and values[0] > values[2]


# --- the LLM judge with the real embedded model ---------------------------------------------------

def test_llm_judge_scores_on_scale_and_skips_dimensions_without_their_roles(chat_model) -> None:
    judge = LLMJudge(model=chat_model, rubric=OmegaConf.to_container(DEFAULT_CRITIC.scorers.judge.rubric))
    peer = episode(ON_PERSONA[:2])
    support = episode(SUPPORT[:3], SUPPORT_ROLES, eid="e2")
    silent = Episode(**{**peer.__dict__, "id": "e3", "turns": ()})
    peer_judgement, support_judgement, silent_judgement = judge.score([peer, support, silent], {})
    for name in ("mood_improved", "problem_solved", "seeker_engaged"):
        value, reason = peer_judgement[name]
        assert math.isnan(value) and "not applicable" in reason
    for name in ("persona_consistency", "naturalness"):
        assert 1.0 <= peer_judgement[name][0] <= 5.0
    for name in DIMENSIONS:
        value, reason = support_judgement[name]
        assert 1.0 <= value <= 5.0 and "judge expects" in reason
    assert all(math.isnan(v) for v, _ in silent_judgement.values())
