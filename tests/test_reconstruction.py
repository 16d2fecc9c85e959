"""Character-LLM experience reconstruction: strict parsing of model replies (grounded in the
profile or rejected) and the extractive fallbacks that are flagged, never invented. The model
run itself is exercised end to end in tests/test_interview.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.importers import read_profile
from agents.reconstruction import (
    ReconstructionSettings,
    Reconstructor,
    assemble,
    gender_from_pronouns,
    parse_experience,
    parse_field,
    parse_question,
    parse_scene,
    passages,
)
from core.errors import UsageError

PROFILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "character-llm" / "profiles"
NAME = "Spartacus"
PASSAGE = ("Spartacus was a Thracian gladiator. He escaped from the gladiator school at Capua and "
           "camped with his followers on Mount Vesuvius, where the Romans besieged them.")


def test_experiences_must_be_first_person_and_grounded() -> None:
    good = ('Spartacus: "I escaped from the gladiator school at Capua. '
            'My followers camped with me on Mount Vesuvius."')
    assert parse_experience(good, NAME, PASSAGE, 0.6).startswith("I escaped from the gladiator school")
    with pytest.raises(ValueError, match="first person"):
        parse_experience("Spartacus escaped from the gladiator school at Capua with his followers.", NAME,
                         PASSAGE, 0.6)
    with pytest.raises(ValueError, match="come from the passage"):
        parse_experience("I sailed to Sicily and built a great fleet of ships with my friends there.", NAME,
                         PASSAGE, 0.6)


def test_scenes_in_both_formats_and_locations_must_be_named() -> None:
    status = "The Romans besieged Spartacus and his followers."
    labelled = parse_scene(f"Location: Mount Vesuvius\nStatus: {status}", NAME, PASSAGE, 0.6)
    assert labelled == {"location": "Mount Vesuvius", "status": status}
    prose = parse_scene("The passage takes place in the gladiator school at Capua. He escaped the school.",
                        NAME, PASSAGE, 0.6)
    assert prose["location"] == "the gladiator school at Capua"
    with pytest.raises(ValueError, match="not a place named"):
        parse_scene("Location: Sicily\nStatus: The Romans besieged Spartacus there.", NAME, PASSAGE, 0.6)
    with pytest.raises(ValueError):
        parse_scene("Spartacus was brave.", NAME, PASSAGE, 0.6)


def test_fields_are_a_few_words_from_the_profile() -> None:
    words = {"thracian", "gladiator", "capua", "school"}
    assert parse_field('Spartacus\'s occupation is "gladiator."', "Spartacus", words) == "Gladiator"
    assert parse_field("A Thracian gladiator", "Spartacus", words) == "Thracian gladiator"
    with pytest.raises(ValueError):
        parse_field("fictional character created by the Roman author Varro.", "Spartacus", words)


def test_protective_questions_ask_about_the_thing() -> None:
    raw = "Spartacus: I'm so glad you asked. What's the most interesting thing about the internet?"
    assert parse_question(raw, NAME, "internet") == "What's the most interesting thing about the internet?"
    assert parse_question('Spartacus: "What\'s the internet?"', NAME, "internet") == "What's the internet?"
    with pytest.raises(ValueError):
        parse_question("Tell me about your life in Rome.", "Spartacus", "internet")
    with pytest.raises(ValueError):
        parse_question("Internet?", "Spartacus", "internet")


def test_failed_requests_keep_extractive_values_and_are_flagged() -> None:
    base = read_profile(_need(PROFILES / "wiki_Spartacus.txt"))
    text = (PROFILES / "wiki_Spartacus.txt").read_text(encoding="utf-8")
    chosen = passages(text, 2, 500)
    assert len(chosen) == 2 and all(p in text for p in chosen)
    question = "What do you think of smartphones?"
    topics = [{"thing": "smartphones", "keyword": "smartphone", "question": question}]
    accepted = {"job": "Gladiator", "experience[0]": "I was a gladiator at Capua."}
    keys = ["job", "region", "scene[0]", "experience[0]", "scene[1]", "experience[1]", "protective[0]"]
    persona = assemble(base, text, chosen, accepted, keys, topics)
    assert persona.job == "Gladiator" and persona.region == "" and persona.gender == "male"
    assert persona.extra["reconstruction_flagged"] == ["region", "scene[0]", "scene[1]", "experience[1]",
                                                       "protective[0]"]
    experiences = persona.extra["experiences"]
    assert experiences[0] == {"text": "I was a gladiator at Capua.", "passage": chosen[0], "source": "model"}
    assert experiences[1] == {"text": chosen[1], "passage": chosen[1], "source": "extractive"}
    protective = persona.extra["protective_scenes"][0]
    assert protective["source"] == "template" and protective["question"] == question
    assert persona.memories[:2] == ("I was a gladiator at Capua.", chosen[1])
    assert persona.source.endswith(":reconstructed")


def test_settings_are_checked_and_requests_are_built(chat_model) -> None:
    with pytest.raises(UsageError, match=r"reconstruction\.scenes"):
        ReconstructionSettings(scenes=-1)
    with pytest.raises(UsageError, match=r"reconstruction\.fields"):
        ReconstructionSettings(fields=("favourite colour",))
    reconstructor = Reconstructor(chat_model, ReconstructionSettings(scenes=2, protective=1))
    text = "# Ada\n\nAda Lovelace was a mathematician. She wrote the first program.\n\nShe lived in London."
    asks = reconstructor.asks("Ada", text, passages(text, 2, 300))
    assert [a.key for a in asks] == ["job", "region", "scene[0]", "experience[0]", "scene[1]",
                                     "experience[1]", "protective[0]"]
    assert "She lived in London." in asks[-2].messages[1].content
    assert gender_from_pronouns("she her she her hers she") == "female"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data {path} is missing (expected beside the repo in shared/data)")
    return path
