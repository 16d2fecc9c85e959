"""Character-LLM interviews: the question files (single- and multi-turn), session planning, a
multi-turn interview judged 1-7, and end to end: `task=bank bank.source=profile` turns a shared
profile into a character, `task=interview` interviews it and writes interview_report.md."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agents.bank import DEFAULT_BANK, load_bank
from agents.character import Character
from agents.chat import ChatSettings
from agents.interview import (
    InterviewJudge,
    Question,
    is_multi_turn,
    load_questions,
    plan_sessions,
    run_interview,
    says_not_knowing,
)
from agents.prompting import PromptBuilder
from core.errors import UsageError
from memory.chroma import ChromaMemoryStore
from memory.retrieval import Forgetting, RetrievalWeights
from tests.conftest import ROOT, run_py

DATA = ROOT.parent / "shared" / "data" / "character-llm"
SINGLE = DATA / "questions" / "generated_agent_interview_Spartacus.json"
MULTI = DATA / "questions" / "generated_agent_interview_for_multiturn_Spartacus.json"
DIMENSIONS = ("memorization", "values", "personality", "hallucination", "stability")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data {path} is missing (expected beside the repo in shared/data)")
    return path


def test_question_files_load_in_both_formats(tmp_path: Path) -> None:
    single, multi = load_questions(_need(SINGLE)), load_questions(_need(MULTI))
    assert len(single) == 94 and len(multi) == 50
    assert single[0].question and single[0].topic
    assert not is_multi_turn(SINGLE, "auto") and is_multi_turn(MULTI, "auto")
    assert is_multi_turn(SINGLE, "multi")
    cases = (("not json", "not valid JSON"), ("[]", "non-empty"), ('[{"topic": "x"}]', "question"))
    for text, message in cases:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(UsageError, match=message):
            load_questions(bad)
    with pytest.raises(UsageError, match=r"interview\.mode"):
        is_multi_turn(SINGLE, "sometimes")


def test_sessions_cover_the_topics_round_robin() -> None:
    questions = [Question(f"t{t}", f"topic {t}", f"q{t}-{i}") for t in range(3) for i in range(4)]
    single = plan_sessions(questions, multi_turn=False, turns=3, limit=4)
    assert [s.questions for s in single] == [("q0-0",), ("q1-0",), ("q2-0",), ("q0-1",)]
    multi = plan_sessions(questions, multi_turn=True, turns=3, limit=None)
    assert multi[0].questions == ("q0-0", "q0-1", "q0-2") and multi[3].questions == ("q0-3",)
    assert len({s.id for s in multi}) == len(multi)


def test_not_knowing_is_recognised() -> None:
    assert says_not_knowing("I have never heard of such a thing.")
    assert says_not_knowing("What is a smartphone?")
    assert not says_not_knowing("I use my smartphone every day.")


def test_a_multi_turn_interview_is_judged_on_five_dimensions(tmp_path: Path, chat_model, embedder) -> None:
    memory = ChromaMemoryStore(str(tmp_path / "memory"), embedder, RetrievalWeights(), Forgetting())
    short = chat_model.model_copy(update={"max_new_tokens": 32})  # shares the loaded weights
    character = Character(load_bank(DEFAULT_BANK)[5], memory, short)
    sessions = plan_sessions(load_questions(_need(MULTI)), multi_turn=True, turns=2, limit=1)
    transcript = run_interview(character, sessions, ChatSettings(), PromptBuilder(), now=0.0, seed=0)[0]
    assert transcript.session.questions == sessions[0].questions and transcript.answers
    scored = InterviewJudge(chat_model, PromptBuilder(), embedder).score(character.persona, [transcript])[0]
    expected = set(DIMENSIONS) if len(transcript.answers) == 2 else set(DIMENSIONS) - {"stability"}
    assert set(scored.scores) == expected
    for value, mass in scored.scores.values():
        assert 1.0 <= value <= 7.0 and 0.0 < mass <= 1.0 and not math.isnan(value)
    assert memory.count(character.id) == 0  # interviews store nothing unless asked to


def test_profile_to_character_to_interview_report(tmp_path: Path) -> None:
    profile = _need(DATA / "profiles" / "wiki_Spartacus.txt")
    folder = tmp_path / "bank"
    bank = run_py("task=bank", "bank.source=profile", f"bank.path={profile}", f"hydra.run.dir={folder}",
                  "reconstruction.scenes=1", "reconstruction.protective=1", "reconstruction.fields=[]",
                  "reconstruction.retries=0", "reconstruction.max_new_tokens=48")
    assert bank.returncode == 0, bank.stderr[-3000:]
    persona = load_bank(tmp_path / "bank" / "bank.jsonl")[0]
    assert persona.name == "Spartacus" and len(persona.extra["experiences"]) == 1
    assert len(persona.extra["protective_scenes"]) == 1 and "reconstruction_flagged" in persona.extra
    interview = run_py("task=interview", f"society.bank={tmp_path / 'bank' / 'bank.jsonl'}",
                       "character=Spartacus", f"interview.questions={_need(SINGLE)}", "interview.limit=2",
                       f"paths.chat_memory={tmp_path / 'chats'}", f"hydra.run.dir={tmp_path / 'interview'}")
    assert interview.returncode == 0, interview.stderr[-3000:]
    report = (tmp_path / "interview" / "interview_report.md").read_text()
    assert report.startswith("# Interview: Spartacus (profile-spartacus)")
    for dimension in DIMENSIONS:
        assert f"| {dimension} |" in report
    assert "profile similarity" in report and "SmolLM2-135M" in report
    lines = (tmp_path / "interview" / "interview.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 and records[-1]["topic"] == "protective"  # 2 questions + 1 protective question
    assert all(r["answers"] or r["error"] for r in records)
