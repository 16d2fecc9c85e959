"""Character-LLM interviews: single-turn questions and multi-turn sessions put to a character,
judged on memorization, values, personality, hallucination and stability (1-7).

The judge is the critic's mechanism: the probabilities of the score tokens '1'..'7' give an
expected value, so every model yields a number. With the embedded 135M model that judge is
weak, so the report also gives metric proxies where one is valid: memorization as the answers'
similarity to the profile (against a control of unrelated characters), hallucination as the
share of questions about unknowable things (protective questions) answered with not knowing."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.character import Character
from agents.chat import ChatSettings, remember
from agents.models.choices import expected_score
from agents.persona import Persona
from agents.prompting import PromptBuilder
from agents.turns import Sampling, TurnRequest, take_turns
from core.errors import UsageError
from core.records import Recalled
from core.seams import ChatModel, MemoryStore
from memory.wrapped import FilteredRecall

DIGITS = tuple(str(d) for d in range(1, 8))
INTERVIEWER = "Interviewer"
PROTECTIVE_TOPICS = ("difficult to answer without breaking character", "protective")
NOT_KNOWING = re.compile(
    r"\b(?:never heard|don't know|do not know|not familiar|no idea|cannot say|can't say|"
    r"what (?:is|are) (?:a |an |this |that |these )?\w+\?|unknown to me|not sure what|don't understand|"
    r"do not understand|never seen|strange word)", re.I)
JUDGE_SYSTEM = "You are a careful, strict judge of role-play interviews."


@dataclass(frozen=True)
class Question:
    topic_id: str
    topic: str
    question: str


@dataclass(frozen=True)
class Session:
    """One interview session: a single question, or a seed question and its follow-ups."""

    id: str
    topic: str
    questions: tuple[str, ...]

    @property
    def protective(self) -> bool:
        return self.topic in PROTECTIVE_TOPICS


@dataclass(frozen=True)
class Transcript:
    """The answered part of a session; a session stops at its first failed answer."""

    session: Session
    answers: tuple[str, ...]
    error: str = ""
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # dim -> (value, mass)

    @property
    def turns(self) -> list[tuple[str, str]]:
        return list(zip(self.session.questions, self.answers, strict=False))


def load_questions(path: Path) -> list[Question]:
    """A Character-LLM question file: a JSON list of {topic_id, topic, question}."""
    if not path.is_file():
        raise UsageError(f"interview.questions={path}: not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"interview.questions={path}: not valid JSON ({error})") from None
    if not isinstance(data, list) or not data:
        raise UsageError(f"interview.questions={path}: expected a non-empty JSON list of questions")
    questions = []
    for index, item in enumerate(data):
        text = item.get("question") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"interview.questions={path}, item {index}: needs a 'question' text")
        questions.append(Question(str(item.get("topic_id", "")), str(item.get("topic", "")),
                                  text.strip()))
    return questions


def is_multi_turn(path: Path, mode: str) -> bool:
    if mode not in ("auto", "single", "multi"):
        raise UsageError(f"interview.mode={mode!r} is invalid: allowed is auto, single or multi")
    return mode == "multi" or (mode == "auto" and "multiturn" in path.name.lower())


def by_topic(questions: Sequence[Question]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for q in questions:
        groups.setdefault(q.topic, []).append(q.question)
    return groups


def plan_sessions(questions: Sequence[Question], multi_turn: bool, turns: int, limit: int | None
                  ) -> list[Session]:
    """Sessions taken round-robin over the topics (so a short interview still covers them):
    one question each, or in multi-turn mode ``turns`` consecutive questions of one topic."""
    size = turns if multi_turn else 1
    queues = [[tuple(qs[i:i + size]) for i in range(0, len(qs), size)] for qs in by_topic(questions).values()]
    topics = list(by_topic(questions))
    sessions: list[Session] = []
    for depth in range(max(len(q) for q in queues)):
        for topic, queue in zip(topics, queues, strict=True):
            if depth < len(queue):
                sessions.append(Session(f"s{len(sessions):03d}", topic, queue[depth]))
    return sessions[:limit] if limit is not None else sessions


def protective_sessions(persona: Persona) -> list[Session]:
    """The reconstruction's protective questions (agents/reconstruction.py), one session each."""
    scenes = persona.extra.get("protective_scenes", [])
    return [Session(f"p{i:03d}", "protective", (s["question"],)) for i, s in enumerate(scenes)]


def run_interview(character: Character, sessions: Sequence[Session], settings: ChatSettings,
                  prompts: PromptBuilder, now: float, seed: int, store: bool = False) -> list[Transcript]:
    """All sessions advance together: one batched turn per question index. Protective questions
    are asked without the not-knowing answers the reconstruction planted as memories, so the
    hallucination proxy measures the character, not a recalled line."""
    answers: list[list[str]] = [[] for _ in sessions]
    errors = [""] * len(sessions)
    withheld = Withholding(character.memory, planted_answers(character.persona))
    guarded = dataclasses.replace(character, memory=withheld)
    for step in range(max((len(s.questions) for s in sessions), default=0)):
        active = [i for i, s in enumerate(sessions) if step < len(s.questions) and not errors[i]]
        requests = [TurnRequest(guarded if sessions[i].protective else character,
                                _history(character, sessions[i], answers[i], step), INTERVIEWER,
                                "interviewee") for i in active]
        replies = take_turns(requests, prompts, settings.turn, now, Sampling(seed + step)) if requests else []
        for i, reply in zip(active, replies, strict=True):
            if reply.ok:
                answers[i].append(reply.text)
            else:
                errors[i] = reply.error
        if store:
            remember(zip(requests, replies, strict=True), now, settings.memory_importance)
    return [Transcript(s, tuple(a), e) for s, a, e in zip(sessions, answers, errors, strict=True)]


def planted_answers(persona: Persona) -> tuple[str, ...]:
    """The fixed not-knowing answers of the reconstruction's protective scenes."""
    return tuple(s["answer"] for s in persona.extra.get("protective_scenes", []) if s.get("answer"))


@dataclass
class Withholding(FilteredRecall):
    """A memory store that never recalls a memory containing one of ``texts`` (everything else
    is the wrapped store's)."""

    store: MemoryStore
    texts: tuple[str, ...]

    def fetch_k(self, k: int) -> int:
        return k + len(self.texts)

    def keep(self, requests: Sequence[tuple[str, str]], found: list[list[Recalled]], k: int
             ) -> list[list[Recalled]]:
        return [[m for m in memories if not any(t in m.text for t in self.texts)][:k] for memories in found]


def _history(character: Character, session: Session, answers: list[str], step: int
             ) -> tuple[tuple[str, str], ...]:
    lines: list[tuple[str, str]] = []
    for question, answer in zip(session.questions[:step], answers, strict=False):
        lines += [(INTERVIEWER, question), (character.name, answer)]
    return (*lines, (INTERVIEWER, session.questions[step]))


@dataclass
class InterviewJudge:
    """Each dimension of each transcript as one prompt; all prompts in batched forward passes."""

    model: ChatModel
    prompts: PromptBuilder
    embedder: Any
    rubric_path: Path = Path(__file__).parent / "prompts" / "interview_rubric.yaml"
    max_answer_chars: int = 600
    excerpts: int = 3

    def rubric(self) -> dict[str, dict[str, Any]]:
        return yaml.safe_load(self.rubric_path.read_text(encoding="utf-8"))

    def score(self, persona: Persona, transcripts: Sequence[Transcript]) -> list[Transcript]:
        asks: list[tuple[int, str, list[BaseMessage]]] = []
        for index, transcript in enumerate(transcripts):
            if not transcript.answers:
                continue
            reference = self.reference(persona, transcript)
            for dimension, item in self.rubric().items():
                if item.get("multi_turn_only") and len(transcript.answers) < 2:
                    continue
                asks.append((index, dimension, self.messages(persona, transcript, reference,
                                                             item["criterion"].format(name=persona.name))))
        probabilities = self.model.choice_probabilities([m for _, _, m in asks], DIGITS)
        scores: list[dict[str, tuple[float, float]]] = [{} for _ in transcripts]
        for (index, dimension, _), row in zip(asks, probabilities, strict=True):
            scores[index][dimension] = expected_score(row, range(1, 8))
        return [Transcript(t.session, t.answers, t.error, s)
                for t, s in zip(transcripts, scores, strict=True)]

    def reference(self, persona: Persona, transcript: Transcript) -> list[str]:
        """The profile excerpts (memories) closest to the session's questions."""
        texts = list(persona.memories)
        if not texts:
            return []
        vectors = self.embedder([*texts, " ".join(transcript.session.questions)])
        similarity = vectors[:-1] @ vectors[-1]
        return [texts[i][: self.max_answer_chars] for i in np.argsort(-similarity)[: self.excerpts]]

    def messages(self, persona: Persona, transcript: Transcript, reference: list[str],
                 criterion: str) -> list[BaseMessage]:
        turns = [(q, a[: self.max_answer_chars]) for q, a in transcript.turns]
        text = self.prompts.render("interview_judge.jinja", name=persona.name, facts=list(persona.facts),
                                   reference=reference, turns=turns, criterion=criterion)
        return [SystemMessage(JUDGE_SYSTEM), HumanMessage(text)]


def profile_similarity(embedder: Any, answers: Sequence[str], profile: Sequence[str]) -> list[float]:
    """Per answer: the best cosine similarity to a profile text (facts and memories)."""
    if not answers or not profile:
        return []
    vectors = embedder([*answers, *profile])
    return [float(v) for v in (vectors[: len(answers)] @ vectors[len(answers):].T).max(axis=1)]


def says_not_knowing(answer: str) -> bool:
    return bool(NOT_KNOWING.search(answer))


def proxies(embedder: Any, persona: Persona, control: Sequence[str], transcripts: Sequence[Transcript]
            ) -> dict[str, Any]:
    """Metric proxies: profile similarity (with a control) and not-knowing on protective questions."""
    answers = [a for t in transcripts for a in t.answers]
    own = profile_similarity(embedder, answers, [*persona.facts, *persona.memories])
    other = profile_similarity(embedder, answers, list(control))
    protective = [a for t in transcripts if t.session.protective for a in t.answers]
    return {"profile_similarity": own, "control_similarity": other,
            "protective_answers": len(protective),
            "protective_not_knowing": sum(says_not_knowing(a) for a in protective)}


def mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan
