"""`task=interview character=<name or id> interview.questions=<json>`: Character-LLM's interviews,
judged on five dimensions, written to `interview.jsonl` and `interview_report.md`."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from agents.interview import (
    InterviewJudge,
    is_multi_turn,
    load_questions,
    plan_sessions,
    protective_sessions,
    proxies,
    run_interview,
)
from agents.interview_report import control_texts, write_jsonl, write_report
from core.errors import is_whole, require
from environment.build import build_embedder, instantiate, run_dir
from environment.serve.characters import character_key, check_character, check_source, open_directory


def check(cfg: DictConfig) -> None:
    """The interview settings, the question file, the character's source and the chat settings."""
    settings = cfg.interview
    require(bool(settings.questions), "interview.questions", "a Character-LLM question file (JSON)")
    require(settings.limit is None or (isinstance(settings.limit, int) and settings.limit >= 1),
            "interview.limit", "a whole number >= 1, or null for all", settings.limit)
    require(isinstance(settings.turns, int) and 1 <= settings.turns <= 20, "interview.turns",
            "a whole number from 1 to 20", settings.turns)
    require(is_whole(settings.max_answer_chars, 1), "interview.max_answer_chars", "a whole number >= 1",
            settings.max_answer_chars)
    for flag in ("remember", "protective"):
        require(isinstance(settings[flag], bool), f"interview.{flag}", "true or false", settings[flag])
    path = Path(to_absolute_path(settings.questions))
    load_questions(path)
    is_multi_turn(path, settings.mode)
    check_source(cfg)
    check_character(cfg)
    instantiate(cfg.chat, "chat")


def run(cfg: DictConfig) -> None:
    settings = cfg.interview
    path = Path(to_absolute_path(settings.questions))
    questions = load_questions(path)
    multi = is_multi_turn(path, settings.mode)
    embedder = build_embedder(cfg)
    directory = open_directory(cfg, embedder=embedder)
    character = directory.chosen(character_key(cfg))
    sessions = plan_sessions(questions, multi, settings.turns, settings.limit)
    if settings.protective:
        sessions += protective_sessions(character.persona)
    transcripts = run_interview(character, sessions, instantiate(cfg.chat, "chat"), directory.prompts,
                                directory.now, cfg.seed, store=settings.remember)
    judge = InterviewJudge(directory.model, directory.prompts, embedder,
                           max_answer_chars=settings.max_answer_chars)
    scored = judge.score(character.persona, transcripts)
    measured = proxies(embedder, character.persona, control_texts(character.persona), scored)
    folder = run_dir(cfg)
    write_jsonl(folder / "interview.jsonl", scored)
    summary = {"questions": str(path.resolve()), "mode": "multi-turn" if multi else "single-turn",
               "model": directory.model.label(), "judge": directory.model.label()}
    report = write_report(folder / "interview_report.md", character.persona, scored, measured, summary)
    print(f"salon: interviewed {character.name}: {len(scored)} sessions; report: {report}")
