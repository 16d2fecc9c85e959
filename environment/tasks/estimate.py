"""`task=estimate`: tokens, time and cost of the configured run before it is run, from a short
calibration: the first round of a small society (`estimate.characters`) with the configured
model, conversation and critic, scaled to `society.size` characters and `simulation.rounds`
rounds. Tokens scale per turn; time scales with the batches of episodes a round needs at the
calibration's concurrency (a bigger round may batch more, and later rounds' prompts carry more
memories: measured in bench/README.md)."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from core.errors import is_whole, require
from core.files import atomic_write_text
from core.records import Episode
from environment import build
from environment.budget import Usage, episode_turns, ledger
from environment.store import SQLiteEpisodeStore
from environment.tasks import simulate


@dataclass(frozen=True)
class Estimate:
    episodes: int
    turns: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    usd: float
    calibration: dict[str, float]


def check(cfg: DictConfig) -> None:
    simulate.check(cfg)
    size = cfg.estimate.characters
    require(is_whole(size, 2, cfg.society.size), "estimate.characters",
            f"allowed is a whole number from 2 to society.size={cfg.society.size}", size)


def run(cfg: DictConfig) -> None:
    folder = build.run_dir(cfg)
    calibration = folder / "calibration"
    simulate.run(calibration_config(cfg, calibration))
    estimate = scaled(cfg, calibration)
    atomic_write_text(folder / "estimate.json", json.dumps(asdict(estimate), indent=2))
    print(summary(cfg, estimate) + f"\n  {folder / 'estimate.json'}")


def calibration_config(cfg: DictConfig, folder: Path) -> DictConfig:
    """The configured run, cut to its first round of `estimate.characters` characters, unbudgeted."""
    cut = {"society": {"size": cfg.estimate.characters}, "paths": {"run_dir": str(folder)}, "resume": None,
           "simulation": {"rounds": 1, "budget": {"tokens": None, "usd": None}}}
    return OmegaConf.merge(cfg, cut)


def calibrated(folder: Path) -> tuple[list[Episode], float]:
    """The calibration's episodes and the seconds its round took (the model's start excluded)."""
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    try:
        return store.episodes(), float(store.get_meta("wall_seconds", "0") or 0)
    finally:
        store.close()


def scaled(cfg: DictConfig, calibration: Path) -> Estimate:
    episodes, seconds = calibrated(calibration)
    turns = episode_turns(episodes)
    used = ledger(turns)
    prompt = sum(u.prompt_tokens for u in used.values()) / max(len(turns), 1)
    completion = sum(u.completion_tokens for u in used.values()) / max(len(turns), 1)
    per_round = cfg.society.size // 2  # disjoint pairs
    count = cfg.simulation.rounds * per_round
    total_turns = round(count * statistics.fmean(len(e.turns) for e in episodes))
    tokens = Usage(round(total_turns * prompt), round(total_turns * completion))
    # the calibration's episodes ran side by side: a full round takes as many such batches as
    # it has episodes per calibration batch
    batches = cfg.simulation.rounds * math.ceil(per_round / max(len(episodes), 1))
    usd = simulate.run_budget(cfg).cost({next(iter(used), "unknown"): tokens})
    facts = {"characters": cfg.estimate.characters, "episodes": len(episodes), "turns": len(turns),
             "seconds": round(seconds, 1), "prompt_tokens_per_turn": round(prompt, 1),
             "completion_tokens_per_turn": round(completion, 1),
             "uncounted_calls": sum(u.uncounted for u in used.values())}
    return Estimate(count, total_turns, tokens.prompt_tokens, tokens.completion_tokens,
                    round(batches * seconds, 1), round(usd, 4), facts)


def summary(cfg: DictConfig, estimate: Estimate) -> str:
    c = estimate.calibration
    missing = f"; {c['uncounted_calls']:g} calls came without token counts" if c["uncounted_calls"] else ""
    return (f"salon: estimate for {cfg.society.size} characters x {cfg.simulation.rounds} rounds: "
            f"{estimate.episodes} episodes, about {estimate.turns} turns, "
            f"{estimate.prompt_tokens:,} prompt + {estimate.completion_tokens:,} completion tokens, "
            f"about {_minutes(estimate.seconds)}, ${estimate.usd:.4f} at simulation.budget.prices\n"
            f"  calibration: {c['episodes']:g} episodes of {c['characters']:g} characters in "
            f"{c['seconds']:g} s, {c['prompt_tokens_per_turn']:g} prompt + "
            f"{c['completion_tokens_per_turn']:g} completion tokens a turn{missing}")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
