"""`task=score input=<episodes.jsonl>`: re-score stored or external episodes with the critic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from agents.bank import load_bank
from agents.critic import Critic
from agents.persona import Persona
from core.errors import UsageError
from core.records import Episode
from environment import build


def read_episodes(path: Path) -> list[Episode]:
    """Episodes in the export format, one JSON object per line; errors name file and line."""
    if not path.is_file():
        raise UsageError(f"input={path}: no such file; give an episodes.jsonl")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"input={path}: cannot be read as UTF-8 text ({error})") from None
    episodes = [_episode(line, f"input={path}, line {number}") for number, line in enumerate(lines, start=1)
                if line.strip()]
    if not episodes:
        raise UsageError(f"input={path}: the file holds no episodes")
    return episodes


def _episode(line: str, where: str) -> Episode:
    try:
        data = json.loads(line)
    except ValueError as error:
        raise UsageError(f"{where}: not valid JSON ({error}); one episode object per line") from None
    try:
        return Episode.from_dict(data)
    except KeyError as error:
        raise UsageError(f"{where}: not an episode (missing field {error})") from None
    except (ValueError, TypeError, AttributeError) as error:
        raise UsageError(f"{where}: not an episode ({error})") from None


def input_path(cfg: DictConfig) -> Path:
    if not cfg.input:
        raise UsageError("input is missing: python run.py task=score input=<episodes.jsonl>")
    return Path(to_absolute_path(cfg.input))


def check(cfg: DictConfig) -> None:
    """The input holds episodes, and the critic builds."""
    read_episodes(input_path(cfg))
    embedder = build.build_embedder(cfg)
    build.build_critic(cfg, embedder, build.build_model(cfg) if _judge_weighted(cfg) else None)


def run(cfg: DictConfig) -> None:
    source = input_path(cfg)
    episodes = read_episodes(source)
    personas = run_personas(source)
    embedder = build.build_embedder(cfg)
    model = build.build_model(cfg) if _judge_weighted(cfg) else None
    critic = build.build_critic(cfg, embedder, model)
    scored = score_episodes(critic, episodes, personas)
    target = build.run_dir(cfg) / f"{source.stem}.scored.jsonl"
    target.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in scored))
    rated = [e.scores.overall for e in scored if e.scores and e.scores.rated]
    mean = sum(rated) / len(rated) if rated else float("nan")
    print(f"salon: scored {len(scored)} episodes (mean overall {mean:.2f}) -> {target}")


def run_personas(source: Path) -> dict[str, Persona]:
    """The personas of the run the episodes come from (its characters.jsonl, beside the input):
    the critic reads their worries (problem_solved). Without it, say that the scores differ."""
    saved = source.parent / "characters.jsonl"
    if not saved.is_file():
        print(f"salon: no characters.jsonl beside {source.name}: scoring without the personas' "
              "worries (problem_solved falls back to each seeker's first line)", file=sys.stderr)
        return {}
    return {p.name: p for p in load_bank(saved)}


def score_episodes(critic: Critic, episodes: list[Episode], personas: dict[str, Persona]) -> list[Episode]:
    """The episodes scored as a run scores them: one critic batch per round."""
    scored: dict[str, Episode] = {}
    for index in sorted({e.round for e in episodes}):
        batch = [e for e in episodes if e.round == index]
        scored |= {e.id: e.with_scores(s) for e, s in zip(batch, critic.score(batch, personas), strict=True)}
    return [scored[e.id] for e in episodes]


def _judge_weighted(cfg: DictConfig) -> bool:
    return any(float(w) > 0 for spec in cfg.critic.dimensions.values()
               for name, w in spec.experts.items() if name == "judge")
