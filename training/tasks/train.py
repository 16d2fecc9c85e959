"""`task=train`: a LoRA chat adapter (SFT or DPO) or a BERT-style scorer (memory selector,
compatibility) from logged runs or Persona-Chat dev, registered for swapping back in."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from agents.importers import read_personachat
from agents.models.registry import NAME
from core.errors import require
from environment import build
from environment.build import complete, instantiate
from training.pipeline import (
    SCORER_TARGETS,
    base_source,
    check_run_folders,
    check_source,
    episode_filter,
    train_chat,
    train_contradiction,
    train_scorer,
    training_runs,
)

TARGETS = ("chat", *SCORER_TARGETS, "contradiction")


def check(cfg: DictConfig) -> None:
    """The target, source and runs, the training settings, and the base model on disk."""
    target = cfg.training.target
    require(target in TARGETS, "training.target", f"allowed is {', '.join(TARGETS)}", target)
    require(not cfg.training.name or bool(NAME.fullmatch(str(cfg.training.name))), "training.name",
            "allowed is letters, digits, '_' and '-' (no '.': peft refuses it)", cfg.training.name)
    if target == "contradiction":  # always from Persona-Chat dev 40-199
        read_personachat(Path(to_absolute_path(cfg.eval.path)), "dev")
    else:
        check_source(cfg)
    if target == "chat":
        instantiate(cfg.training.lora, "training.lora")
    else:
        complete(instantiate(cfg.training.scorer, "training.scorer"), "training.scorer", output="unused")
    if target != "contradiction":
        episode_filter(cfg)
        check_run_folders(cfg)
    if target == "chat":
        base_source(cfg)  # last: it may unpack the embedded model into the cache


def run(cfg: DictConfig) -> None:
    folder = build.run_dir(cfg)
    if cfg.training.target == "contradiction":
        registered, trained = train_contradiction(cfg, folder)
        print(f"salon: trained {registered.ref}: held-out {trained.metrics} (embedding baseline "
              f"{trained.baseline_metrics}); the critic's contradiction expert uses it as "
              f"critic.scorers.contradiction.scorer={registered.ref}")
        return
    runs = training_runs(cfg, folder)
    if cfg.training.target != "chat":
        registered, trained = train_scorer(cfg, runs, folder, cfg.training.target)
        use = ("memory.selector" if cfg.training.target == "memory_selector"
               else "matching=compatibility matching.scorer")
        heuristic = registered.card.get("dataset", {}).get("heuristic_auc")
        against = f", heuristic retriever AUC {heuristic:.3f}" if heuristic is not None else ""
        print(f"salon: trained {registered.ref}: held-out {trained.metrics} (embedding baseline "
              f"{trained.baseline_metrics}{against}); use it with {use}={registered.ref}")
        return
    name = cfg.training.name or "chat"
    registered, result, built = train_chat(cfg, runs, folder, list(cfg.training.held_out), name)
    counts = {k: len(v) for k, v in built.dataset.items()}
    eval_loss = result.eval_loss if result.eval_loss is None else round(result.eval_loss, 3)
    print(f"salon: trained {registered.ref} on {counts} examples: train loss {result.train_loss:.3f}, "
          f"eval loss {eval_loss}, {result.tokens_per_second:.0f} tokens/s; "
          f"use it with model.adapter={registered.ref}")
