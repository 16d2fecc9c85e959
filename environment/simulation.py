"""`task=simulate` (the default): run the society for `simulation.rounds` rounds."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from agents.bank import load_bank, save_bank
from agents.persona import Persona
from environment import build
from environment.engine import model_label
from environment.exports import export_run
from environment.society import Society
from environment.store import SQLiteEpisodeStore
from environment.validation import check_simulation
from matching.checks import build_policy
from training.swap import adapter_plan

log = logging.getLogger(__name__)


def society_personas(cfg: DictConfig, folder: Path, rng: np.random.Generator) -> list[Persona]:
    """The run's characters: chosen from the bank once, then read back from the run folder."""
    saved = folder / "characters.jsonl"
    if saved.is_file():
        return load_bank(saved)
    personas = build.choose_personas(cfg, rng)
    save_bank(personas, saved)
    return personas


def make_society(cfg: DictConfig, folder: Path, store: SQLiteEpisodeStore) -> Society:
    rng = np.random.default_rng(cfg.seed)
    personas = society_personas(cfg, folder, rng)
    plan = adapter_plan(cfg)
    embedder = build.build_embedder(cfg)
    policy = build_policy(cfg, embedder)
    model = build.build_model(cfg, plan)
    memory = build.build_memory(cfg, embedder, folder)
    characters = build.build_characters(personas, memory, model, build.build_prompts(cfg), plan, rng)
    return Society(characters, policy, build.build_engine(cfg, cfg.simulation.progress),
                   build.build_critic(cfg, embedder, model), store, rng, build.encounter_settings(cfg))


def simulate_task(cfg: DictConfig) -> None:
    check_simulation(cfg)
    folder = build.run_dir(cfg)
    if not cfg.resume:
        OmegaConf.save(cfg, folder / "config.yaml", resolve=True)
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    society = make_society(cfg, folder, store)
    if store.get_meta("seeded") is None:
        society.seed_memories(cfg.memory.seed_importance)
        store.set_meta("seeded", "1")
    interrupted = run_rounds(society, store, cfg.simulation.rounds, cfg.simulation.progress)
    wall = float(store.get_meta("wall_seconds", "0") or 0)
    outputs = export_run(folder, store, [c.persona for c in society.characters], seed=cfg.seed,
                         summary=run_summary(cfg, society), wall_seconds=wall)
    print_outcome(folder, store, outputs)
    store.close()
    if interrupted:
        sys.exit(130)


def run_rounds(society: Society, store: SQLiteEpisodeStore, rounds: int, progress: bool) -> bool:
    """Run the remaining rounds; returns True if Ctrl-C stopped it (completed episodes are kept)."""
    start = store.completed_rounds()
    began = time.perf_counter()
    try:
        for index in tqdm(range(start, rounds), desc="rounds", initial=start, total=rounds,
                          disable=not progress):
            society.run_round(index)
        return False
    except KeyboardInterrupt:
        log.warning("interrupted: %d completed episodes are kept in the store", store.count())
        return True
    finally:
        spent = float(store.get_meta("wall_seconds", "0") or 0) + time.perf_counter() - began
        store.set_meta("wall_seconds", f"{spent:.3f}")


def run_summary(cfg: DictConfig, society: Society) -> dict[str, str]:
    weights = ", ".join(f"{d} {s.weight:g}" for d, s in society.critic.dimensions.items() if s.weight)
    return {
        "model": model_label(society.characters[0]),
        "matching": type(society.policy).__name__,
        "characters": str(len(society.characters)),
        "rounds": str(cfg.simulation.rounds),
        "max turns": str(cfg.conversation.max_turns),
        "seed": str(cfg.seed),
        "critic weights": weights,
    }


def print_outcome(folder: Path, store: SQLiteEpisodeStore, outputs: list[Path]) -> None:
    episodes = store.episodes()
    scores = [e.scores.overall for e in episodes if e.scores]
    mean = f"{np.mean(scores):.2f}" if scores else "n/a"
    print(f"salon: {len(episodes)} episodes, mean overall score {mean}; run folder: {folder}")
    for path in outputs:
        print(f"  {path}")
