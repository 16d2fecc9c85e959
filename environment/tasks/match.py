"""`python run.py task=match seeker="<persona text or bank id>" match.k=5 [match.chat=true]`:
the k best supporters from the bank with their predicted compatibility; with ``match.chat`` the
seeker then talks with the best one (the simulation's Character and conversation engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from agents.bank import load_bank
from agents.persona import Persona
from core.errors import require
from core.records import Episode
from core.rng import RngTree
from environment import build
from environment.engine import ConversationEngine, EpisodePlan
from matching.compatibility import build_scorer
from matching.dispatch import Match, Seeker, check_seeker, dispatch, format_matches, seeker_from
from matching.scorers import persona_texts


def check(cfg: DictConfig) -> None:
    """Everything that needs no model: the seeker text, k, turns and the scorer's registry ref."""
    check_seeker(cfg.seeker)
    require(isinstance(cfg.match.k, int) and cfg.match.k >= 1, "match.k", "a whole number >= 1", cfg.match.k)
    require(isinstance(cfg.match.turns, int) and 1 <= cfg.match.turns <= 50, "match.turns",
            "a whole number from 1 to 50", cfg.match.turns)
    if cfg.match.scorer:
        from matching.compatibility import resolve_scorer

        resolve_scorer(cfg.match.scorer, cfg.paths.registry_root, "match.scorer")


def run(cfg: DictConfig) -> None:
    run_match(cfg)


def run_match(cfg: DictConfig, embedder: Any = None, model: Any = None) -> dict[str, Any]:
    """Dispatch (and chat, with ``match.chat``), print, write ``match.json``; return its record.
    The embedder and chat model are built from config unless given."""
    bank = load_bank(build.bank_path(cfg))
    seeker = seeker_from(cfg.seeker, bank)
    embedder = embedder if embedder is not None else build.build_embedder(cfg)
    scorer = build_scorer(cfg.match.scorer, cfg.paths.registry_root, embedder, cfg.match.shortlist,
                          key="match.scorer")
    label = f"scorer {cfg.match.scorer}" if cfg.match.scorer else "persona-embedding similarity"
    embedder.embed_kept(persona_texts(bank), Path(cfg.paths.cache_dir) / "embeddings")
    matches = dispatch(seeker, bank, scorer, cfg.match.k)
    print(format_matches(seeker, matches, label))
    episode = chat(cfg, seeker, matches[0].persona, embedder, model) if cfg.match.chat else None
    if episode is not None:
        print(format_episode(episode))
    record = match_record(seeker, matches, label, episode)
    folder = build.run_dir(cfg)
    (folder / "match.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"  {folder / 'match.json'}")
    return record


def chat(cfg: DictConfig, seeker: Seeker, supporter: Persona, embedder: Any, model: Any = None) -> Episode:
    """A short seeker/supporter conversation (seeker first), scored by the configured critic."""
    folder = build.run_dir(cfg)
    model = model if model is not None else build.build_model(cfg)
    memory = build.build_memory(cfg, embedder, folder)
    characters = build.build_characters([seeker.persona, supporter], memory, model)
    seeds = [r for c in characters for r in c.seed_memories(0.0, cfg.memory.seed_importance)]
    if seeds:
        memory.add(seeds)
    roles = {seeker.persona.name: "seeker", supporter.name: "supporter"}
    plan = EpisodePlan("match-000", 0, (characters[0], characters[1]), roles)
    episode = chat_engine(cfg, embedder).run([plan], RngTree(cfg.seed), now=0.0)[0]
    critic = build.build_critic(cfg, embedder, model)
    return episode.with_scores(critic.score([episode], {c.name: c.persona for c in characters})[0])


def chat_engine(cfg: DictConfig, embedder: Any) -> ConversationEngine:
    """The run's conversation settings, for ``match.turns`` turns and without progress bars."""
    turns = int(cfg.match.turns)
    return build.build_engine(cfg, embedder, progress=False, max_turns=turns,
                              min_turns=min(cfg.conversation.min_turns, turns))


def format_episode(episode: Episode) -> str:
    lines = [f"salon: conversation ({len(episode.turns)} turns, stop: {episode.stop_reason})"]
    for turn in episode.turns:
        text = f"(failed turn: {turn.error})" if turn.failed else turn.text
        lines.append(f"  {turn.speaker} ({episode.roles[turn.speaker]}): {text}")
    if episode.scores is not None:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in episode.scores.values.items() if not np.isnan(v))
        lines.append(f"  critic: overall {episode.scores.overall:.2f} ({parts})")
    return "\n".join(lines)


def match_record(seeker: Seeker, matches: list[Match], label: str, episode: Episode | None
                 ) -> dict[str, Any]:
    return {
        "seeker": {"id": seeker.persona.id, "text": seeker.text, "from_bank": seeker.from_bank},
        "scorer": label,
        "matches": [{"rank": m.rank, "id": m.persona.id, "name": m.persona.name, "mbti": m.persona.mbti,
                     "score": round(m.score, 4)} for m in matches],
        "episode": episode.to_dict() if episode is not None else None,
    }
