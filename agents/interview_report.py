"""An interview's outputs: `interview.jsonl` (every session, answer and score) and
`interview_report.md` (scores with 95% CIs, metric proxies, the transcripts)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.bank import DEFAULT_BANK, load_bank
from agents.interview import Transcript, mean
from agents.persona import Persona
from core.stats import mean_ci

DIMENSIONS = ("memorization", "values", "personality", "hallucination", "stability")
VALIDITY_NOTE = (
    "The LLM judge reads the probabilities of the digits 1-7 and reports their expected value, so it "
    "always gives a number. With the embedded SmolLM2-135M it is weak: as a 1-5 consistency judge on "
    "Persona-Chat it was at chance (AUC 0.47, see the README's critic section), so read its column as "
    "a check that the pipeline runs, not as a measurement; judge with a strong model "
    "(`model=openai model.base_url=...` or `model.path=<7B+ folder>`) for conclusions. The metric "
    "proxies need no language model: memorization is the answers' best MiniLM cosine similarity to "
    "the character's own profile texts, next to the same answers against unrelated characters (the "
    "shipped bank) as a control; hallucination is the share of questions about things the character "
    "cannot know that it answered with not knowing. Values, personality and stability have no valid "
    "metric proxy here.")


def control_texts(persona: Persona) -> list[str]:
    """Profile texts of unrelated characters (the shipped bank) for the similarity control."""
    return [t for p in load_bank(DEFAULT_BANK) if p.id != persona.id for t in (*p.facts, *p.memories)]


def write_jsonl(path: Path, transcripts: Sequence[Transcript]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for t in transcripts:
            out.write(json.dumps({
                "session": t.session.id, "topic": t.session.topic, "questions": list(t.session.questions),
                "answers": list(t.answers), "error": t.error,
                "scores": {d: {"value": _num(v), "mass": round(m, 4)} for d, (v, m) in t.scores.items()},
            }, ensure_ascii=False) + "\n")


def _num(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def write_report(path: Path, persona: Persona, transcripts: Sequence[Transcript], measured: dict[str, Any],
                 summary: dict[str, str]) -> Path:
    answered = sum(len(t.answers) for t in transcripts)
    failed = sum(bool(t.error) for t in transcripts)
    lines = [f"# Interview: {persona.name} ({persona.id})", "",
             *(f"- {k}: {v}" for k, v in summary.items()),
             f"- sessions: {len(transcripts)}, answers: {answered}, "
             f"sessions stopped by a failed answer: {failed}",
             "", "## Scores (1-7)", "",
             "| dimension | LLM judge (mean ± 95% CI) | n | judge mass on 1-7 | metric proxy |",
             "|---|---|---|---|---|"]
    lines += [_score_row(d, transcripts, measured) for d in DIMENSIONS]
    lines += ["", VALIDITY_NOTE, "", "## Sessions", ""]
    for t in transcripts:
        lines += _session_lines(persona, t)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _score_row(dimension: str, transcripts: Sequence[Transcript], measured: dict[str, Any]) -> str:
    values = [t.scores[dimension][0] for t in transcripts if dimension in t.scores]
    masses = [t.scores[dimension][1] for t in transcripts if dimension in t.scores]
    average, half, n = mean_ci(values)
    judged = "n/a" if n == 0 else f"{average:.2f}" + ("" if math.isnan(half) else f" ± {half:.2f}")
    mass = f"{np.mean(masses):.2f}" if masses else "n/a"
    return f"| {dimension} | {judged} | {n} | {mass} | {_proxy(dimension, measured)} |"


def _proxy(dimension: str, measured: dict[str, Any]) -> str:
    if dimension == "memorization" and measured["profile_similarity"]:
        return (f"profile similarity {mean(measured['profile_similarity']):.2f} vs control "
                f"{mean(measured['control_similarity']):.2f} (unrelated characters)")
    if dimension == "hallucination" and measured["protective_answers"]:
        return (f"{measured['protective_not_knowing']}/{measured['protective_answers']} questions about "
                "unknowable things answered with not knowing")
    if dimension == "hallucination":
        return "no question about unknowable things was answered"
    return "none valid"


def _session_lines(persona: Persona, transcript: Transcript) -> list[str]:
    lines = [f"### {transcript.session.id} ({transcript.session.topic})", ""]
    for question, answer in transcript.turns:
        lines += [f"- **Interviewer:** {question}", f"- **{persona.name}:** {answer}"]
    for question in transcript.session.questions[len(transcript.answers):]:
        lines.append(f"- **Interviewer:** {question}")
    if transcript.error:
        lines.append(f"- *no answer: {transcript.error}*")
    if transcript.scores:
        scored = ", ".join(f"{d} {v:.2f}" for d, (v, _) in transcript.scores.items() if not math.isnan(v))
        lines.append(f"- judge: {scored}")
    return [*lines, ""]
