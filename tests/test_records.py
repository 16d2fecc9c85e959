"""Turn, Scores and Episode: validation in __post_init__ and the export format's round trip."""

from __future__ import annotations

import json
import math

import pytest

from core.records import Episode, Scene, Scores, Turn

pytestmark = pytest.mark.fast

EXPORT_FIELDS = {"id", "round", "participants", "personas", "roles", "turns", "scores", "model"}
TURN_FIELDS = {"speaker", "text", "memory_ids", "prompt_tokens", "completion_tokens"}


def make_episode(**changes) -> Episode:
    values = dict(
        id="r001-e002", round=1, participants=("Ann", "Bob"),
        personas={"Ann": ("i bake bread.", "i have two cats."), "Bob": ("i fix bikes.",)},
        roles={"Ann": "seeker", "Bob": "supporter"},
        turns=(
            Turn("Ann", "I am worried about my bakery.", ("ann:1", "ann:2"), 120, 9, goal="share"),
            Turn("Bob", "", (), 130, 48, failed=True, error="empty or unreadable reply"),
            Turn("Bob", "What worries you most about it?", ("bob:7",), 131, 8),
        ),
        model="SmolLM2-135M-Instruct", character_ids={"Ann": "enfp-001", "Bob": "istj-002"},
        scene=Scene("a bookshop", "Both reached for the same book."), stop_reason="max_turns",
        scores=Scores({"mood_improved": math.nan, "naturalness": 4.25},
                      {"mood_improved": "needs two lines", "naturalness": "distinct-2 0.90"}, 4.25),
        models={"Ann": "SmolLM2-135M-Instruct", "Bob": "SmolLM2-135M-Instruct"},
        meta={"note": "hand-made"},
    )
    values.update(changes)
    return Episode(**values)


# --- Turn -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(speaker="", text="Hi."), "speaker"),
    (dict(speaker="Ann", text="Hi.", failed=True), "text exactly when"),
    (dict(speaker="Ann", text=""), "text exactly when"),
    (dict(speaker="Ann", text="Hi.", prompt_tokens=-1), "token counts"),
    (dict(speaker="Ann", text="Hi.", completion_tokens=-3), "token counts"),
])
def test_turn_rejects_invalid_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Turn(**kwargs)


def test_turn_round_trip_keeps_every_field() -> None:
    turn = Turn("Ann", "Hello there.", ("a:1", "a:2"), 10, 5, goal="ask about pets")
    data = json.loads(json.dumps(turn.to_dict()))
    assert data["memory_ids"] == ["a:1", "a:2"]
    assert Turn.from_dict(data) == turn
    failed = Turn("Bob", "", failed=True, error="speaks for the partner")
    assert Turn.from_dict(json.loads(json.dumps(failed.to_dict()))) == failed


# --- Scores -----------------------------------------------------------------------------------

def test_scores_need_a_reason_per_value_and_a_real_overall() -> None:
    with pytest.raises(ValueError, match="reason"):
        Scores({"a": 3.0}, {"b": ""}, 3.0)
    with pytest.raises(ValueError, match="overall"):
        Scores({"a": 3.0}, {"a": ""}, math.nan)


@pytest.mark.parametrize("values, overall", [
    ({"a": 3.0}, 0.0), ({"a": 3.0}, 5.5), ({"a": 0.5}, 3.0), ({"a": 7.0}, 3.0),
    ({"a": math.inf}, 3.0), ({"a": 3.0}, math.inf),
])
def test_scores_must_be_on_the_1_to_5_scale(values: dict, overall: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        Scores(values, dict.fromkeys(values, ""), overall)


def test_scores_allow_nan_values_and_rounding_slack() -> None:
    Scores({"a": math.nan, "b": 5.0 + 1e-9}, {"a": "", "b": ""}, 1.0 - 1e-9)


def test_scores_export_nan_as_null_and_read_it_back() -> None:
    scores = Scores({"mood": math.nan, "naturalness": 3.123456}, {"mood": "n/a", "naturalness": "ok"},
                    3.123456)
    data = json.loads(json.dumps(scores.to_dict()))
    assert data == {"mood": None, "naturalness": 3.1235, "overall": 3.1235}
    back = Scores.from_dict(data, scores.reasons)
    assert math.isnan(back.values["mood"]) and back.values["naturalness"] == 3.1235
    assert back.reasons == scores.reasons and back.overall == 3.1235


# --- Episode ----------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    (dict(id=""), "id"),
    (dict(round=-1), "round"),
    (dict(participants=("Ann", "Ann"), roles={"Ann": "peer"}), "two different"),
    (dict(participants=("Ann", "Bob", "Cy")), "two different"),
    (dict(roles={"Ann": "peer"}), "roles must name both"),
    (dict(roles={"Ann": "peer", "Cy": "peer"}), "roles must name both"),
    (dict(roles={"Ann": "peer", "Bob": "boss"}), "unknown role"),
    (dict(turns=(Turn("Cy", "Hi."),)), "no participant"),
])
def test_episode_rejects_invalid_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_episode(**changes)


def test_export_format_has_the_documented_fields() -> None:
    data = make_episode().to_dict()
    assert set(data) >= EXPORT_FIELDS
    assert data["participants"] == ["Ann", "Bob"]
    assert data["personas"] == {"Ann": ["i bake bread.", "i have two cats."], "Bob": ["i fix bikes."]}
    assert data["roles"] == {"Ann": "seeker", "Bob": "supporter"}
    assert all(set(turn) >= TURN_FIELDS for turn in data["turns"])
    assert data["turns"][0]["memory_ids"] == ["ann:1", "ann:2"]
    assert [t["prompt_tokens"] for t in data["turns"]] == [120, 130, 131]
    assert [t["completion_tokens"] for t in data["turns"]] == [9, 48, 8]
    assert data["scores"] == {"mood_improved": None, "naturalness": 4.25, "overall": 4.25}
    assert data["model"] == "SmolLM2-135M-Instruct"
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN literals in the export


def test_episode_round_trip_through_json_is_lossless() -> None:
    episode = make_episode()
    back = Episode.from_dict(json.loads(json.dumps(episode.to_dict())))
    assert back.to_dict() == episode.to_dict()
    # NaN != NaN, so compare everything but the scores field by field, then the scores.
    assert back.turns == episode.turns and back.scene == episode.scene
    assert (back.id, back.round, back.participants, back.personas, back.roles) == \
        (episode.id, episode.round, episode.participants, episode.personas, episode.roles)
    assert (back.character_ids, back.models, back.meta, back.stop_reason) == \
        (episode.character_ids, episode.models, episode.meta, episode.stop_reason)
    assert back.scores.reasons == episode.scores.reasons
    assert math.isnan(back.scores.values["mood_improved"])
    unscored = make_episode(scores=None, scene=None)
    assert Episode.from_dict(json.loads(json.dumps(unscored.to_dict()))) == unscored


def test_episode_helpers() -> None:
    episode = make_episode()
    assert episode.utterances("Bob") == ["What worries you most about it?"]  # failed turn skipped
    assert episode.role_of("seeker") == "Ann" and episode.role_of("peer") is None
    assert episode.token_counts == (381, 65)
    rescored = episode.with_scores(Scores({"x": 2.0}, {"x": ""}, 2.0))
    assert rescored.scores.overall == 2.0 and episode.scores.overall == 4.25
