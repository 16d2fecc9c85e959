"""The template bank, its JSON Lines file, character selection and the LLM field rewrite."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from agents.bank import (
    DEFAULT_BANK,
    PRONOUNS,
    generate_template_bank,
    load_bank,
    load_template_data,
    save_bank,
    select_characters,
)
from agents.bank_llm import parse_field_text, rewrite_with_llm
from agents.persona import MBTI_TYPES, PROFILE_FIELDS, Persona
from core.errors import UsageError

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def bank() -> list[Persona]:
    return generate_template_bank(3, np.random.default_rng(7))


def test_bank_has_per_type_characters_with_unique_ids_and_names(bank: list[Persona]) -> None:
    assert len(bank) == 48
    assert collections.Counter(p.mbti for p in bank) == dict.fromkeys(MBTI_TYPES, 3)
    assert len({p.id for p in bank}) == len({p.name for p in bank}) == 48
    assert all(re.fullmatch(r"[ei][sn][tf][jp]-00[1-3]", p.id) for p in bank)
    assert all(p.id.startswith(p.mbti.lower()) for p in bank)


def test_every_profile_field_is_filled(bank: list[Persona]) -> None:
    for persona in bank:
        assert persona.name and persona.age and persona.source == "template"
        for name in PROFILE_FIELDS:
            assert getattr(persona, name).strip(), (persona.id, name)
            assert "{" not in getattr(persona, name), (persona.id, name)


def test_facts_are_short_first_person_and_match_the_profile(bank: list[Persona]) -> None:
    data = load_template_data()
    for persona in bank:
        assert 4 <= len(persona.facts) <= 6
        assert 3 <= len(persona.memories) <= 6
        for fact in persona.facts:
            assert fact == fact.lower() and fact.endswith(".") and len(fact) < 90, fact
            assert re.search(r"\b(i|my|me|we|our)\b", fact), fact
            if match := re.fullmatch(r"i am (\d+) years old\.", fact):
                assert int(match.group(1)) == persona.age
            if fact.startswith("i live in ") and fact.count(" ") == 3:
                assert fact[len("i live in "):-1] == persona.region.split(",")[0].lower()
        jobs = data.types[persona.mbti].jobs
        assert persona.facts[0] in {j.fact.lower() for j in jobs if j.title == persona.job}
        assert all(m[0].isupper() and "{" not in m for m in persona.memories)


def test_same_seed_same_bank_other_seed_other_bank() -> None:
    first = generate_template_bank(2, np.random.default_rng(11))
    again = generate_template_bank(2, np.random.default_rng(11))
    other = generate_template_bank(2, np.random.default_rng(12))
    assert [p.to_dict() for p in first] == [p.to_dict() for p in again]
    assert [p.to_dict() for p in first] != [p.to_dict() for p in other]


def test_generator_leaves_the_global_numpy_rng_alone() -> None:
    np.random.seed(5)
    expected = np.random.random()
    np.random.seed(5)
    generate_template_bank(1, np.random.default_rng(0))
    assert np.random.random() == expected


def test_large_bank_has_1024_unique_names() -> None:
    personas = generate_template_bank(64, np.random.default_rng(3))
    assert len(personas) == 1024
    assert len({p.name for p in personas}) == 1024


def test_per_type_must_be_positive() -> None:
    with pytest.raises(UsageError, match=r"bank\.per_type"):
        generate_template_bank(0, np.random.default_rng(0))


def test_every_template_text_renders_and_every_draw_has_an_option() -> None:
    data = load_template_data()
    slots = {"city": "C", "country": "K", "hometown": "H", "young_age": "9",
             "sibling": "sister", "parent": "mother", "aunt": "aunt", "hobby": "x"}
    for profile in data.types.values():
        assert all(6 <= len(getattr(profile, name)) <= 10 for name in (
            "jobs", "hobbies", "social_life", "emotional_states", "growth_experiences",
            "family", "living", "worries"))
        texts = [c.text for c in (*profile.jobs, *profile.family, *profile.living,
                                  *profile.worries, *profile.growth_experiences)]
        texts += [c.fact for c in (*profile.jobs, *profile.family, *profile.living)]
        texts += [c.memory for c in profile.jobs] + list(profile.social_life)
        for text in texts + list(data.childhood_memories + data.hobby_memories):
            text.format_map({**slots, **PRONOUNS["female"]})
        for job in profile.jobs:
            for age in range(job.ages[0], job.ages[1] + 1):
                _assert_complete(profile, age, set(job.tags))


def _assert_complete(profile: Any, age: int, tags: set[str]) -> None:
    """Every family choice leads to a home, and every home to a worry (no dead ends)."""
    assert any(g.fits(age, tags, set()) for g in profile.growth_experiences)
    families = [f for f in profile.family if f.fits(age, tags, set())]
    assert families, (profile.mbti, age, tags)
    for family in families:
        tags2, banned = tags | set(family.tags), set(family.excludes)
        homes = [h for h in profile.living if h.fits(age, tags2, banned)]
        assert homes, (profile.mbti, age, family.text)
        for home in homes:
            assert any(w.fits(age, tags2 | set(home.tags), banned | set(home.excludes))
                       for w in profile.worries), (profile.mbti, age, family.text, home.text)


def test_shipped_bank_is_the_seed_0_bank() -> None:
    shipped = load_bank(DEFAULT_BANK)
    assert len(shipped) == 64
    fresh = generate_template_bank(4, np.random.default_rng(0))
    assert [p.to_dict() for p in shipped] == [p.to_dict() for p in fresh]


def test_save_and_load_round_trip(bank: list[Persona], tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bank.jsonl"
    save_bank(bank, path)
    assert load_bank(path) == bank
    assert [p.to_dict() for p in load_bank(path)] == [p.to_dict() for p in bank]
    assert [f.name for f in path.parent.iterdir()] == ["bank.jsonl"]


def _record(**changes: Any) -> str:
    data = {"id": "intj-001", "name": "Ada Abara", "facts": ["i like tea."], **changes}
    return json.dumps(data)


MALFORMED = {
    "invalid json": ([_record(), '{"id": "x",'], "record 2", None),
    "not an object": ([_record(), "[1, 2]"], "record 2", None),
    "bad age": ([_record(), _record(id="intj-002", name="B", age="x")],
                "record 2 (id=intj-002)", "field 'age'"),
    "missing facts": ([json.dumps({"id": "intj-005", "name": "C"})],
                      "record 1 (id=intj-005)", "field 'facts'"),
    "unknown field": ([_record(colour="red")], "record 1 (id=intj-001)", "field 'colour'"),
    "duplicate id": ([_record(), "", _record(name="Other")], "record 3 (id=intj-001)", "field 'id'"),
    "duplicate name": ([_record(), _record(id="intj-002")], "record 2 (id=intj-002)",
                       "field 'name'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_bank_names_file_record_and_field(case: str, tmp_path: Path) -> None:
    lines, record, field = MALFORMED[case]
    path = tmp_path / "bank.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        load_bank(path)
    message = str(info.value)
    assert "\n" not in message
    assert f"bank file {path}, {record}" in message
    if field:
        assert field in message


def test_empty_or_missing_bank_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"empty\.jsonl: no records"):
        load_bank(empty)
    with pytest.raises(UsageError, match=r"nothing\.jsonl: not found"):
        load_bank(tmp_path / "nothing.jsonl")
    with pytest.raises(UsageError, match="not a file"):
        load_bank(tmp_path)


def test_select_spreads_over_types(bank: list[Persona]) -> None:
    chosen = select_characters(bank, 16, np.random.default_rng(1))
    assert sorted(p.mbti for p in chosen) == sorted(MBTI_TYPES)
    counts = collections.Counter(p.mbti for p in select_characters(bank, 20, np.random.default_rng(1)))
    assert len(counts) == 16 and set(counts.values()) == {1, 2}
    everyone = select_characters(bank, 48, np.random.default_rng(2))
    assert sorted(p.id for p in everyone) == sorted(p.id for p in bank)


def test_select_is_deterministic_per_rng_state(bank: list[Persona]) -> None:
    first = select_characters(bank, 10, np.random.default_rng(4))
    again = select_characters(bank, 10, np.random.default_rng(4))
    other = select_characters(bank, 10, np.random.default_rng(5))
    assert [p.id for p in first] == [p.id for p in again] != [p.id for p in other]


def test_select_more_than_the_bank_is_a_usage_error(bank: list[Persona]) -> None:
    with pytest.raises(UsageError, match=r"size=49 .*48"):
        select_characters(bank, 49, np.random.default_rng(0))


class ScriptedChat(BaseChatModel):
    """Replies from a per-character script (found by the 'Name:' line of the prompt), so the
    test does not depend on the order in which batch() runs its inputs."""

    script: dict[str, list[str]]
    batch_sizes: list[int] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        name = re.search(r"Name: (.+)", messages[-1].text).group(1)
        reply = AIMessage(self.script[name].pop(0))
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def batch(self, inputs: list[Any], *args: Any, **kwargs: Any) -> list[Any]:
        self.batch_sizes.append(len(inputs))
        return super().batch(inputs, *args, **kwargs)


GOOD = "Recent worry: \"The landlord is raising the rent, and a move may be unavoidable.\""


def test_rewrite_retries_only_failures_and_never_invents(bank: list[Persona]) -> None:
    people = bank[:3]
    a, b, c = (p.name for p in people)
    model = ScriptedChat(script={
        a: [GOOD, "Married with two small children and a busy home."],
        b: ["I am worried about money.", "Worried that the car will fail its inspection.",
            "Lives alone since a recent divorce, close to a sister."],
        c: ["<|im_end|>", "As an AI, nothing to add here at all.",
            "Single, with no children, and close to an older cousin."],
    })
    result, failures = rewrite_with_llm(people, model, ["recent_worry", "family"], retries=1)
    assert model.batch_sizes == [3, 2, 3]
    assert failures == 1
    assert result[0].recent_worry == "The landlord is raising the rent, and a move may be unavoidable."
    assert result[1].recent_worry == "Worried that the car will fail its inspection."
    assert result[2].recent_worry == people[2].recent_worry
    assert result[2].extra["llm_failed_fields"] == ["recent_worry"]
    assert result[2].family == "Single, with no children, and close to an older cousin."
    assert "llm_failed_fields" not in result[0].extra


def test_rewrite_with_langchain_fake_model(bank: list[Persona]) -> None:
    good = FakeListChatModel(responses=["Grew up by the sea and learned to sail before walking."])
    result, failures = rewrite_with_llm(bank[:4], good, ["growth_experience"], retries=0)
    assert failures == 0
    assert {p.growth_experience for p in result} == {
        "Grew up by the sea and learned to sail before walking."}
    bad = FakeListChatModel(responses=["<|assistant|> sure"])
    result, failures = rewrite_with_llm(bank[:4], bad, ["growth_experience", "family"], retries=2)
    assert failures == 8
    assert result == bank[:4]
    assert all(p.extra["llm_failed_fields"] == ["growth_experience", "family"] for p in result)


def test_rewrite_rejects_unknown_fields(bank: list[Persona]) -> None:
    model = FakeListChatModel(responses=["x"])
    with pytest.raises(UsageError, match=r"bank\.llm_fields"):
        rewrite_with_llm(bank[:1], model, ["favourite_colour"], retries=0)


@pytest.mark.parametrize(("raw", "expected"), [
    ("Family: Married, with two kids at school.", "Married, with two kids at school."),
    ("  'Lives with a partner and a dog.'  ", "Lives with a partner and a dog."),
    ("Worried about money for the rent this month.", "Worried about money for the rent this month."),
    ("One is here. Two is here. Three is here. Four is here.", "One is here. Two is here. Three is here."),
    ("Married, with two young kids. The older one is at school and", "Married, with two young kids."),
])
def test_parse_accepts_clean_field_text(raw: str, expected: str) -> None:
    assert parse_field_text(raw, "family") == expected


@pytest.mark.parametrize("raw", [
    "Too short.", "No ending punctuation here at all", "I have two kids and a dog.",
    "Fine text <|endoftext|> here ok.",
    "As an AI language model, this is not possible.", " ".join(["word"] * 61) + ".",
])
def test_parse_rejects_bad_field_text(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_field_text(raw, "family")
