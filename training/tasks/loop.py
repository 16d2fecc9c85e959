"""`task=loop`: the society improves itself. Generation 0 may start from a warm start (LoRA on
human Persona-Chat dialogues 40-199, Sotopia-pi's behaviour cloning); each generation then
simulates with best-of-n candidates, turns them into turn-level preference pairs judged by the
critic (or keeps the best episodes), trains the adapter further (DPO or SFT), and the next
generation speaks with the new version. A fixed set of held-out characters never trains; every
generation is measured on them by the critic and, independently, by degeneration measures,
Persona-Chat dev perplexity/F1 and a frozen human-vs-Salon discriminator; the test split is
read only at the end (base, generation 0, last). `resume=<loop folder>` continues it."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.bank import load_bank
from agents.models.registry import NAME
from core.errors import UsageError, require
from core.files import atomic_write_text
from environment import build
from environment.build import AdapterPlan, registry_of
from environment.tasks import simulate
from training import loop_steps
from training.loop_measures import (
    Generation,
    degeneration_of,
    held_out_episodes,
    jsonable,
    scores_by_dimension,
)
from training.loop_report import write_loop_report
from training.pipeline import base_source
from training.splits import as_range, refuse_overlap

log = logging.getLogger(__name__)
STATE = "loop.json"
METHODS = ("dpo", "sft")


def check(cfg: DictConfig) -> None:
    """The loop's settings and splits, the Persona-Chat file, the base model, and everything a
    simulation checks (each generation is one)."""
    simulate.check(cfg)
    loop = cfg.loop
    require(isinstance(loop.generations, int) and loop.generations >= 1, "loop.generations",
            "allowed is a whole number >= 1", loop.generations)
    require(isinstance(loop.held_out, int) and 1 <= loop.held_out < cfg.society.size, "loop.held_out",
            f"allowed is a whole number from 1 to society.size-1 ({cfg.society.size - 1})", loop.held_out)
    require(loop.method in METHODS, "loop.method", f"allowed is {', '.join(METHODS)}", loop.method)
    require(isinstance(loop.cumulative, bool), "loop.cumulative", "allowed is true or false", loop.cumulative)
    require(loop.warm_start in ("none", "personachat"), "loop.warm_start", "allowed is none or personachat",
            loop.warm_start)
    require(not loop.name or bool(NAME.fullmatch(str(loop.name))), "loop.name",
            "allowed is letters, digits, '_' and '-' (no '.': peft refuses it)", loop.name)
    if not Path(to_absolute_path(cfg.eval.path)).is_file():
        raise UsageError(f"eval.path={cfg.eval.path}: the Persona-Chat file is missing")
    refuse_overlap(trained_ranges(cfg), evaluated_ranges(cfg))
    base_source(cfg)  # a missing model package stops here, before any work


def trained_ranges(cfg: DictConfig) -> dict[str, range]:
    ranges = {"loop.discriminator_dialogues": as_range(cfg.loop.discriminator_dialogues,
                                                       "loop.discriminator_dialogues")}
    if cfg.loop.warm_start == "personachat":
        ranges["training.personachat_dialogues (the warm start)"] = as_range(
            cfg.training.personachat_dialogues, "training.personachat_dialogues")
    return ranges


def evaluated_ranges(cfg: DictConfig) -> dict[str, range]:
    return {"loop.eval_dialogues": as_range(cfg.loop.eval_dialogues, "loop.eval_dialogues"),
            "loop.test_dialogues": as_range(cfg.loop.test_dialogues, "loop.test_dialogues")}


def loop_name(cfg: DictConfig, folder: Path) -> str:
    return cfg.loop.name or "loop-" + re.sub(r"[^A-Za-z0-9_-]", "-", folder.name)


def generation_config(cfg: DictConfig, folder: Path, adapter: str) -> DictConfig:
    return OmegaConf.merge(cfg, {"paths": {"run_dir": str(folder)}, "model": {"adapter": adapter or None},
                                 "resume": None})


def choose_held_out(run: Path, count: int, seed: int) -> list[str]:
    ids = sorted(p.id for p in load_bank(run / "characters.jsonl"))
    rng = np.random.default_rng([seed, 7])
    return sorted(ids[i] for i in rng.choice(len(ids), size=count, replace=False))


def load_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE
    if not path.is_file():
        return {"held_out": [], "warm_start": "", "discriminator": "", "generations": [], "test": {}}
    state = json.loads(path.read_text())
    state["generations"] = [Generation.from_dict(g) for g in state["generations"]]
    return state


def save_state(folder: Path, state: dict[str, Any]) -> None:
    data = {**state, "generations": [jsonable(g) for g in state["generations"]]}
    atomic_write_text(folder / STATE, json.dumps(data, indent=2))  # a kill never leaves half a file


def run(cfg: DictConfig) -> None:
    folder = build.run_dir(cfg)
    state = load_state(folder)
    if not (folder / "config.yaml").is_file():
        OmegaConf.save(cfg, folder / "config.yaml", resolve=True)
    adapter = warm_start(cfg, folder, state)
    for index in range(cfg.loop.generations + 1):
        generation = _generation(state, index, adapter)
        if not generation.done:
            run_generation(cfg, folder, generation, state)
        adapter = generation.trained_adapter or adapter
        write_loop_report(folder, state)
    loop_steps.test_evaluation(cfg, folder, state, lambda: save_state(folder, state))
    write_loop_report(folder, state)
    print(f"salon: loop finished; report: {folder / 'loop_report.md'}; last adapter: {adapter or 'none'}")


def _generation(state: dict[str, Any], index: int, adapter: str) -> Generation:
    if index < len(state["generations"]):
        return state["generations"][index]
    generation = Generation(index, adapter)
    state["generations"].append(generation)
    return generation


def warm_start(cfg: DictConfig, folder: Path, state: dict[str, Any]) -> str:
    """Generation 0's adapter: LoRA SFT on Persona-Chat dev dialogues 40-199 in Salon's prompt
    format (registered like any adapter), once; '' without a warm start."""
    if cfg.loop.warm_start != "personachat" or state["warm_start"]:
        return state["warm_start"] or (cfg.model.adapter or "")
    started = time.perf_counter()
    warm_cfg = OmegaConf.merge(cfg, {"training": {"source": "personachat", "method": "sft",
                                                  "lora": {"max_steps": cfg.loop.warm_start_steps}}})
    registered, result = loop_steps.train_fresh(warm_cfg, folder / "warm_start", loop_name(cfg, folder))
    state["warm_start"] = registered.ref
    state["warm_start_info"] = {"examples": result.get("examples"), "train_loss": result.get("train_loss"),
                                "seconds": round(time.perf_counter() - started, 1)}
    save_state(folder, state)
    return registered.ref


def run_generation(cfg: DictConfig, folder: Path, generation: Generation, state: dict[str, Any]) -> None:
    """Simulate (resumable), measure on the held-out characters, train the next adapter."""
    gen_dir = folder / f"gen{generation.index}"
    started = time.perf_counter()
    simulate.run(generation_config(cfg, gen_dir, generation.adapter))
    generation.seconds["simulate"] = round(time.perf_counter() - started, 1)
    state["held_out"] = state["held_out"] or choose_held_out(gen_dir, cfg.loop.held_out, cfg.seed)
    measure(cfg, folder, generation, state)
    save_state(folder, state)
    if generation.index < cfg.loop.generations:
        started = time.perf_counter()
        loop_steps.train_generation(cfg, folder, generation, state["held_out"], loop_name(cfg, folder))
        generation.seconds["train"] = round(time.perf_counter() - started, 1)
    generation.done = True
    save_state(folder, state)


def measure(cfg: DictConfig, folder: Path, generation: Generation, state: dict[str, Any]) -> None:
    episodes = held_out_episodes(folder / f"gen{generation.index}", state["held_out"])
    generation.held_out_scores, generation.episodes = scores_by_dimension(episodes), len(episodes)
    generation.degeneration = degeneration_of(episodes)
    started = time.perf_counter()
    folder_of = str(registry_of(cfg).verified(generation.adapter).path) if generation.adapter else ""
    plan = AdapterPlan(folders={generation.adapter: folder_of} if generation.adapter else {})
    generation.perplexity, generation.f1 = loop_steps.persona_chat(
        cfg, generation.adapter, plan, as_range(cfg.loop.eval_dialogues, "loop.eval_dialogues"),
        cfg.loop.eval_per_dialogue)
    generation.seconds["evaluate"] = round(time.perf_counter() - started, 1)
    if not state["discriminator"]:
        state["discriminator"] = loop_steps.train_discriminator(cfg, folder, state)
    generation.discriminator_auc = loop_steps.discriminate(cfg, state["discriminator"], episodes)


def clean_partial(folder: Path) -> None:
    """Remove what an interrupted training step left (its dataset and checkpoints are redone)."""
    if folder.exists():
        shutil.rmtree(folder)
