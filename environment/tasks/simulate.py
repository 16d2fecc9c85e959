"""`task=simulate` (the default): run the society for `simulation.rounds` rounds."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from agents.bank import load_bank, save_bank
from agents.persona import Persona
from core.errors import ModelCallFailed, require
from core.records import Turn
from core.rng import RngTree
from environment import build
from environment.budget import Budget, BudgetReached, episode_turns, ledger
from environment.engine import BudgetCheck
from environment.exports import export_run
from environment.society import Society
from environment.store import SQLiteEpisodeStore
from environment.validation import RUN_CHECKS, check_values

log = logging.getLogger(__name__)


def check(cfg: DictConfig) -> None:
    """Every part of the society builds (constructors check their values; nothing loads), the
    adapters and the memory selector resolve in the registry, and the bank has enough people."""
    check_values(cfg, RUN_CHECKS)
    settings = build.society_settings(cfg)
    bank = load_bank(build.bank_path(cfg))
    require(settings.size <= len(bank), "society.size",
            f"allowed is at most the bank's {len(bank)} characters", settings.size)
    build.build_engine(cfg)
    plan = build.adapter_plan(cfg)
    model = build.build_model(cfg, plan)
    embedder = build.build_embedder(cfg)
    build.instantiate(cfg.memory.store, "memory.store", embedder=embedder, path="")
    if cfg.memory.selector:
        build.selector_model(cfg)
    build.build_policy(cfg, embedder)
    build.build_critic(cfg, embedder, model)
    run_budget(cfg)


def society_personas(cfg: DictConfig, folder: Path, rng: RngTree, plan: build.AdapterPlan) -> list[Persona]:
    """The run's characters (and its A/B cohort): drawn once, then read back from the run folder."""
    saved = folder / "characters.jsonl"
    if saved.is_file():
        return load_bank(saved)
    personas = build.draw_cohort(build.choose_personas(cfg, rng), plan, rng)
    save_bank(personas, saved)
    return personas


def make_society(cfg: DictConfig, folder: Path, store: SQLiteEpisodeStore) -> Society:
    rng = RngTree(cfg.seed)
    plan = build.adapter_plan(cfg)
    personas = society_personas(cfg, folder, rng, plan)
    embedder = build.build_embedder(cfg)
    policy = build.build_policy(cfg, embedder)
    model = build.build_model(cfg, plan)
    memory = build.build_memory(cfg, embedder, folder)
    characters = build.build_characters(personas, memory, model, plan)
    engine = build.build_engine(cfg, embedder)
    return Society(characters, policy, engine, build.build_critic(cfg, embedder, model), store, rng,
                   build.society_settings(cfg).encounters)


def run(cfg: DictConfig) -> None:
    folder = build.run_dir(cfg)
    if not cfg.resume:
        OmegaConf.save(cfg, folder / "config.yaml", resolve=True)
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    society = make_society(cfg, folder, store)
    try:
        if store.get_meta("seeded") is None:
            society.seed_memories(cfg.memory.seed_importance)
            store.set_meta("seeded", "1")
        budget = run_budget(cfg)
        interrupted, spent = run_rounds(society, store, cfg.simulation.rounds, cfg.simulation.progress,
                                        budget)
    finally:
        close_servers(society)
    wall = float(store.get_meta("wall_seconds", "0") or 0)
    summary = run_summary(cfg, society) | ({"stopped": f"{spent}; resume= with a larger budget continues"}
                                           if spent else {})
    outputs = export_run(folder, store, [c.persona for c in society.characters], seed=cfg.seed,
                         summary=summary, wall_seconds=wall, prices=budget.prices)
    if spent:
        print(f"salon: stopped at the budget ({spent}): {store.count()} episodes kept; continue with "
              f"resume={folder} and a larger simulation.budget", file=sys.stderr)
    print_outcome(folder, store, outputs)
    store.close()
    if interrupted:
        sys.exit(130)


def run_rounds(society: Society, store: SQLiteEpisodeStore, rounds: int, progress: bool,
               budget: Budget | None = None) -> tuple[bool, str]:
    """Run the remaining rounds; (whether Ctrl-C stopped it, why the budget stopped it or '').
    Completed episodes are kept either way."""
    start = store.completed_rounds()
    began = time.perf_counter()
    check = budget_check(budget, store) if budget is not None else None
    try:
        for index in tqdm(range(start, rounds), desc="rounds", initial=start, total=rounds,
                          disable=not progress):
            society.run_round(index, check)
        return False, ""
    except KeyboardInterrupt:
        log.warning("interrupted: %d completed episodes are kept in the store", store.count())
        return True, ""
    except BudgetReached as spent:
        return False, spent.reason
    except ModelCallFailed as failed:
        raise ModelCallFailed(f"{failed}; the {store.count()} finished episodes are kept: "
                              f"resume={Path(store.path).parent} continues") from None
    finally:
        spent = float(store.get_meta("wall_seconds", "0") or 0) + time.perf_counter() - began
        store.set_meta("wall_seconds", f"{spent:.3f}")


def run_budget(cfg: DictConfig) -> Budget:
    """`simulation.budget` (a run saved before budgets existed has none: no limit)."""
    node = OmegaConf.select(cfg, "simulation.budget")
    if node is None:
        return Budget()
    values = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "_target_"}
    return build.instantiate(OmegaConf.create({"_target_": "environment.budget.Budget", **values}),
                             "simulation.budget")


def budget_check(budget: Budget, store: SQLiteEpisodeStore) -> BudgetCheck | None:
    """The engine's check: what the stored episodes spent plus the round's turns so far."""
    if budget.tokens is None and budget.usd is None:
        return None

    stored: dict[int, list[Turn]] = {}  # the stored turns, read again only when an episode is added

    def check(round_turns: Sequence[Turn]) -> str:
        count = store.count()
        if count not in stored:
            stored.clear()
            stored[count] = episode_turns(store.iter_episodes())
        return budget.exceeded(ledger([*stored[count], *round_turns]))

    return check


def close_servers(society: Society) -> None:
    """Stop the servers the run started (model=llamacpp, memory.store.serve): a loop's next
    generation starts its own, with its own adapter."""
    owners = [c.model for c in society.characters] + [c.memory for c in society.characters]
    for owner in {id(o): o for o in owners}.values():
        close = getattr(owner, "close", None)
        if callable(close):
            close()


def run_summary(cfg: DictConfig, society: Society) -> dict[str, str]:
    weights = ", ".join(f"{d} {s.weight:g}" for d, s in society.critic.dimensions.items() if s.weight)
    serving = getattr(society.characters[0].model, "serving", None)
    return {
        "model": society.characters[0].label(),
        "matching": type(society.policy).__name__,
        "characters": str(len(society.characters)),
        "rounds": str(cfg.simulation.rounds),
        "max turns": str(cfg.conversation.max_turns),
        "seed": str(cfg.seed),
        "critic weights": weights,
        **({"server": serving()} if callable(serving) else {}),
    }


def print_outcome(folder: Path, store: SQLiteEpisodeStore, outputs: list[Path]) -> None:
    episodes = store.episodes()
    scores = [e.scores.overall for e in episodes if e.scores and e.scores.rated]
    mean = f"{np.mean(scores):.2f}" if scores else "n/a"
    print(f"salon: {len(episodes)} episodes, mean overall score {mean}; run folder: {folder}")
    for path in outputs:
        print(f"  {path}")
