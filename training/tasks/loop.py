"""`task=loop`: the society improves itself. Each generation simulates, the critic scores,
the kept episodes train a LoRA adapter, the registry versions it, and the next generation
speaks with it. A fixed set of held-out characters never trains; the report compares
generations on them, and on Persona-Chat dev (a measure the critic did not train for)."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.bank import load_bank
from agents.importers import read_personachat
from core.errors import UsageError, require
from core.stats import mean_ci
from environment import build
from environment.build import AdapterPlan, registry_of
from environment.store import SQLiteEpisodeStore
from environment.tasks import simulate
from training.evaluate import evaluate_model, personachat_examples
from training.loop_report import write_loop_report
from training.pipeline import base_source, train_chat

log = logging.getLogger(__name__)


@dataclass
class Generation:
    """What one generation measured (mutable while it runs, then written to loop.json)."""

    index: int
    adapter: str
    held_out_scores: dict[str, list[float]] = field(default_factory=dict)
    episodes: int = 0
    perplexity: float = float("nan")
    f1: float = float("nan")
    dataset: dict[str, int] = field(default_factory=dict)
    train_loss: float | None = None
    eval_loss: float | None = None
    trained_adapter: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, list[float]]:
        """Dimension -> [mean, 95% half-width, n] on held-out characters."""
        return {d: list(mean_ci(v)) for d, v in self.held_out_scores.items()}


def check(cfg: DictConfig) -> None:
    """The loop's settings, the Persona-Chat file, the base model, and everything a simulation
    checks (each generation is one)."""
    simulate.check(cfg)
    loop = cfg.loop
    require(isinstance(loop.generations, int) and loop.generations >= 1, "loop.generations",
            "a whole number >= 1", loop.generations)
    require(isinstance(loop.held_out, int) and 1 <= loop.held_out < cfg.society.size, "loop.held_out",
            f"a whole number from 1 to society.size-1 ({cfg.society.size - 1})", loop.held_out)
    path = Path(to_absolute_path(cfg.eval.path))
    if not path.is_file():
        raise UsageError(f"eval.path={cfg.eval.path}: the Persona-Chat file is missing")
    base_source(cfg)  # a missing model package stops here, before any work


def loop_name(cfg: DictConfig, folder: Path) -> str:
    return cfg.loop.name or "loop-" + re.sub(r"[^A-Za-z0-9_.-]", "-", folder.name)


def generation_config(cfg: DictConfig, folder: Path, adapter: str) -> DictConfig:
    return OmegaConf.merge(cfg, {"paths": {"run_dir": str(folder)}, "model": {"adapter": adapter or None},
                                 "resume": None})


def choose_held_out(run: Path, count: int, seed: int) -> list[str]:
    ids = sorted(p.id for p in load_bank(run / "characters.jsonl"))
    rng = np.random.default_rng([seed, 7])
    return sorted(ids[i] for i in rng.choice(len(ids), size=count, replace=False))


def held_out_scores(run: Path, held_out: list[str]) -> tuple[dict[str, list[float]], int]:
    """Per dimension, the scores of episodes in which a held-out character took part."""
    store = SQLiteEpisodeStore(run / "episodes.sqlite")
    episodes = [e for e in store.episodes() if set(e.character_ids.values()) & set(held_out) and e.scores]
    store.close()
    scores: dict[str, list[float]] = {}
    for episode in episodes:
        for dimension, value in {**episode.scores.values, "overall": episode.scores.overall}.items():
            if not np.isnan(value):
                scores.setdefault(dimension, []).append(value)
    return scores, len(episodes)


def persona_chat(cfg: DictConfig, adapter: str, folder: str) -> tuple[float, float]:
    dialogues = read_personachat(Path(to_absolute_path(cfg.eval.path)), "dev")[: cfg.loop.eval_dialogues]
    examples = personachat_examples(dialogues, build.build_prompts(cfg), cfg.loop.eval_per_dialogue)
    plan = AdapterPlan(folders={adapter: folder} if adapter else {}, default=adapter)
    model = build.build_model(generation_config(cfg, Path(cfg.paths.run_dir), ""), plan)
    result = evaluate_model(model, examples, adapter, cfg.eval.max_new_tokens)
    return result.perplexity, result.f1


def run_generation(cfg: DictConfig, folder: Path, index: int, adapter: str, held: list[str] | None
                   ) -> tuple[Generation, list[str]]:
    generation = Generation(index, adapter)
    gen_dir = folder / f"gen{index}"
    started = time.perf_counter()
    simulate.run(generation_config(cfg, gen_dir, adapter))
    generation.seconds["simulate"] = round(time.perf_counter() - started, 1)
    held = held or choose_held_out(gen_dir, cfg.loop.held_out, cfg.seed)
    generation.held_out_scores, generation.episodes = held_out_scores(gen_dir, held)
    started = time.perf_counter()
    folder_of = str(registry_of(cfg).resolve(adapter).path) if adapter else ""
    generation.perplexity, generation.f1 = persona_chat(cfg, adapter, folder_of)
    generation.seconds["evaluate"] = round(time.perf_counter() - started, 1)
    return generation, held


def train_generation(cfg: DictConfig, folder: Path, generation: Generation, held: list[str]) -> str:
    runs = [folder / f"gen{i}" for i in range(generation.index + 1)] if cfg.loop.cumulative \
        else [folder / f"gen{generation.index}"]
    started = time.perf_counter()
    registered, result, built = train_chat(cfg, runs, folder / f"gen{generation.index}" / "train",
                                           held, loop_name(cfg, folder))
    generation.seconds["train"] = round(time.perf_counter() - started, 1)
    generation.dataset = {k: len(v) for k, v in built.dataset.items()}
    generation.train_loss, generation.eval_loss = result.train_loss, result.eval_loss
    generation.trained_adapter = registered.ref
    return registered.ref


def run(cfg: DictConfig) -> None:
    folder = build.run_dir(cfg)
    OmegaConf.save(cfg, folder / "config.yaml", resolve=True)
    adapter, held, generations = cfg.model.adapter or "", None, []
    for index in range(cfg.loop.generations + 1):
        generation, held = run_generation(cfg, folder, index, adapter, held)
        if index < cfg.loop.generations:
            adapter = train_generation(cfg, folder, generation, held)
        generations.append(generation)
        (folder / "loop.json").write_text(json.dumps(
            {"held_out": held, "generations": [asdict(g) | {"summary": g.summary()} for g in generations]},
            indent=2))
        write_loop_report(folder, generations, held)
    print(f"salon: loop finished; report: {folder / 'loop_report.md'}; last adapter: {adapter or 'none'}")
