"""Turn-level preference pairs from best-of-n self-play (Sotopia-RL's utterance-level rewards,
from Salon's own candidates): every turn whose speaker had several usable candidates gives one
pair from the same prompt. Each candidate is put in the turn's place and the episode up to
that turn is scored by the critic; chosen = the candidate the critic ranks best, rejected = the
worst. No second run is needed, and held-out characters never train."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

from agents.critic import Critic
from agents.models.messages import to_chat
from agents.prompting import PromptBuilder
from core.records import Episode, Turn
from training.datasets import (
    PREFERENCE_FEATURES,
    BuiltDataset,
    CharacterSplit,
    Target,
    built_dataset,
    reply_context,
)
from training.runs import RunData


def candidate_episodes(target: Target) -> list[Episode]:
    """The episode up to the target turn, once per usable candidate in the turn's place."""
    turn = target.turn
    head = target.episode.turns[: target.index]
    return [dataclasses.replace(target.episode, id=f"{target.episode.id}#t{target.index}c{k}",
                                turns=(*head, Turn(turn.speaker, c.text, memories=turn.memories)),
                                scores=None)
            for k, c in enumerate(turn.candidates)]


def build_turn_preference_dataset(data: RunData, critic: Critic, prompts: PromptBuilder,
                                  split: CharacterSplit, min_margin: float = 0.05) -> BuiltDataset:
    """One (prompt, chosen, rejected) row per turn with >= 2 candidates whose critic scores
    differ by at least ``min_margin``, for the speakers of ``split`` (a held-out speaker's turns
    go to the eval split only when the whole episode is held out)."""
    targets = [Target(e, i) for e in data.episodes for i, t in enumerate(e.turns)
               if not t.failed and len(t.candidates) >= 2]
    variants = [candidate_episodes(t) for t in targets]
    flat = [v for group in variants for v in group]
    personas = {name: data.persona(e, name) for e in data.episodes for name in e.participants}
    scores = iter(critic.score(flat, personas)) if flat else iter(())
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    dropped: Counter[str] = Counter()
    for target, group in zip(targets, variants, strict=True):
        overall = [next(scores).overall for _ in group]
        side = split.side([target.character])
        if side is None:
            dropped["speaker in neither split"] += 1
            continue
        row = _pair(data, prompts, target, overall, min_margin)
        if row is None:
            dropped["candidates scored alike (within min_margin) or unrated"] += 1
            continue
        rows[side].append(row)
    notes = ("Chosen and rejected are two candidates sampled for the same turn from the same prompt; the "
             "critic scored the episode up to that turn with each in place.")
    return built_dataset("turn_preference", data, rows, PREFERENCE_FEATURES, split, dropped, notes=notes,
                         extra={"min_margin": min_margin, "turns_with_candidates": len(targets)})


def _pair(data: RunData, prompts: PromptBuilder, target: Target, overall: Sequence[float],
          min_margin: float) -> dict[str, Any] | None:
    rated = [(o, k) for k, o in enumerate(overall) if o == o]
    if len(rated) < 2:
        return None
    (best, b), (worst, w) = max(rated), min(rated)
    if best - worst < min_margin:
        return None
    context, _ = reply_context(data, target)
    texts = [c.text for c in target.turn.candidates]
    return {"prompt": to_chat(prompts.reply_messages(context)),
            "chosen": [{"role": "assistant", "content": texts[b]}],
            "rejected": [{"role": "assistant", "content": texts[w]}],
            "episode_id": target.episode.id, "rejected_episode_id": target.episode.id,
            "character": target.character, "role": target.role,
            "chosen_overall": best, "rejected_overall": worst}
