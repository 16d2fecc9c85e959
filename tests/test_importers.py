"""Persona-Chat and profile-text importers (real files from ../shared/data when present)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.importers import (
    PersonaChatDialogue,
    personachat_episodes,
    personachat_personas,
    read_personachat,
    read_profile,
    split_sentences,
)
from core.errors import UsageError

pytestmark = pytest.mark.fast

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PERSONACHAT = DATA / "personachat" / "valid_both_original_no_cands.txt"
PROFILES = DATA / "character-llm" / "profiles"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data {path} is missing (expected beside the repo in shared/data)")
    return path


@pytest.fixture(scope="module")
def dev() -> list[PersonaChatDialogue]:
    return read_personachat(_need(PERSONACHAT), "dev")


def _file_turn_counts(path: Path) -> list[int]:
    """Utterances per dialogue, counted straight from the file."""
    counts: list[int] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        number, _, text = line.partition(" ")
        if number == "1":
            counts.append(0)
        if "persona:" not in text:
            counts[-1] += sum(1 for part in text.split("\t") if part.strip())
    return counts


def test_dev_and_test_splits(dev: list[PersonaChatDialogue]) -> None:
    test = read_personachat(PERSONACHAT, "test")
    assert len(dev) == 200 and len(test) == 800
    assert [d.index for d in dev] == list(range(200))
    assert [d.index for d in test] == list(range(200, 1000))
    assert dev[0].your_persona[0] == "i read twenty books a year."
    assert dev[0].partner_persona[0] == "horror movies are my favorites."
    assert dev[0].turns[0] == ("partner", "hello what are doing today ?")
    assert dev[0].turns[1][0] == "you"
    assert {d.split for d in test} == {"test"}


def test_unknown_split_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="split"):
        read_personachat(Path("whatever.txt"), "train")


def test_personas_two_per_dialogue_with_unique_names(dev: list[PersonaChatDialogue]) -> None:
    personas = personachat_personas(dev)
    assert len(personas) == 400
    assert len({p.name for p in personas}) == len({p.id for p in personas}) == 400
    you, partner = personas[34], personas[35]
    assert (you.id, partner.id) == ("pc-0017-you", "pc-0017-partner")
    assert you.facts == dev[17].your_persona and partner.facts == dev[17].partner_persona
    assert you.source == "personachat:dev:17:you"
    assert you.job == "" and you.mbti == "" and you.memories == ()
    assert personachat_personas(dev[17:18])[0].name == you.name


def test_episodes_match_the_file(dev: list[PersonaChatDialogue]) -> None:
    personas = personachat_personas(dev)
    episodes = personachat_episodes(dev, personas)
    counts = _file_turn_counts(PERSONACHAT)[:200]
    assert [len(e.turns) for e in episodes] == counts
    episode, names = episodes[17], {p.id: p.name for p in personas}
    assert episode.id == "pc-0017" and episode.model == "human:personachat"
    assert episode.participants == (names["pc-0017-partner"], names["pc-0017-you"])
    assert set(episode.roles.values()) == {"peer"}
    assert episode.personas[names["pc-0017-you"]] == dev[17].your_persona
    assert episode.turns[0].speaker == names["pc-0017-partner"]
    assert [t.text for t in episode.turns] == [text for _, text in dev[17].turns]


def test_missing_reply_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "pc.txt"
    path.write_text(
        "1 your persona: i like tea.\n2 partner's persona: i like coffee.\n"
        "3 hi there\tHello !\n4 are you there ?\t\n5 bye\n", encoding="utf-8")
    (dialogue,) = read_personachat(path)
    assert [s for s, _ in dialogue.turns] == ["partner", "you", "partner", "partner"]
    assert len(personachat_episodes([dialogue], personachat_personas([dialogue]))[0].turns) == 4
    path.write_text("1 your persona: i like tea.\nx hello\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"pc\.txt, line 2"):
        read_personachat(path)
    with pytest.raises(UsageError, match="not found"):
        read_personachat(tmp_path / "missing.txt")


def test_beethoven_profile() -> None:
    persona = read_profile(_need(PROFILES / "wiki_Beethoven.txt"))
    assert persona.name == "Ludwig van Beethoven"
    assert persona.source == "profile:wiki_Beethoven.txt"
    assert 4 <= len(persona.facts) <= 6
    assert persona.facts[0].startswith("Ludwig van Beethoven (baptised 17 December 1770")
    assert all(len(f) <= 200 for f in persona.facts)
    assert len(persona.memories) > 20
    assert not any(m.startswith("#") or m == "Family and early life" for m in persona.memories)
    assert "Beethoven was born in Bonn." in " ".join(persona.facts + persona.memories)


def test_every_shipped_profile_parses() -> None:
    for path in sorted(_need(PROFILES).glob("wiki_*.txt")):
        persona = read_profile(path)
        assert persona.facts and persona.memories, path


def test_profile_without_heading_takes_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "wiki_Ada_Lovelace.txt"
    path.write_text("She wrote notes. She liked numbers. She met Babbage. He built engines. "
                    "They wrote letters. She travelled. She died young. Her notes survived.\n",
                    encoding="utf-8")
    persona = read_profile(path)
    assert persona.name == "Ada Lovelace"
    assert len(persona.facts) == 6
    assert persona.memories == ("She died young. Her notes survived.",)


def test_empty_profile_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "wiki_Nobody.txt"
    path.write_text("# Nobody\n\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"wiki_Nobody\.txt"):
        read_profile(path)


def test_sentence_splitting_keeps_initials_and_abbreviations() -> None:
    text = "It was written by J. K. Rowling in 1997. He was born c. 470 BC in Athens! Was he? Yes."
    assert split_sentences(text) == [
        "It was written by J. K. Rowling in 1997.", "He was born c. 470 BC in Athens!",
        "Was he?", "Yes.",
    ]
