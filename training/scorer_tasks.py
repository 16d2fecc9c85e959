"""`task=train training.target=memory_selector|compatibility`: CharacterChat's BERT-style
scorers fine-tuned from the bundled MiniLM on logged episodes, then registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from training.datasets import (
    build_compatibility_dataset,
    build_memory_selector_dataset,
    save_dataset,
    split_characters,
)
from training.registry import RegisteredModel
from training.runs import load_runs
from training.scorers import CrossEncoderConfig, TrainedScorer, read_scorer_info, train_cross_encoder
from training.swap import registry_of

COLUMNS = {"memory_selector": ("classification", "history", "memory", "label"),
           "compatibility": ("regression", "persona_a", "persona_b", "score")}


def train_scorer(cfg: DictConfig, runs: list[Path], folder: Path, target: str
                 ) -> tuple[RegisteredModel, TrainedScorer]:
    task, text_a, text_b, label = COLUMNS[target]
    data = load_runs(runs)
    rng = np.random.default_rng(cfg.seed)
    split = split_characters(data.characters(), cfg.training.eval_fraction, rng, list(cfg.training.held_out))
    built = (build_memory_selector_dataset(data, split, rng) if target == "memory_selector"
             else build_compatibility_dataset(data, split))
    save_dataset(built.dataset, folder / "dataset", built.card)
    settings = cfg.training.scorer
    config = CrossEncoderConfig(output=str(folder / "scorer"), task=task, epochs=settings.epochs,
                                batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                                max_length=settings.max_length, seed=cfg.seed)
    trained = train_cross_encoder(config, built.dataset["train"], built.dataset["eval"],
                                  text_a, text_b, label)

    card = {"base_model": read_scorer_info(trained.path).base, "dataset": built.card, "task": task,
            "metrics": trained.metrics, "baseline_metrics": trained.baseline_metrics}
    name = cfg.training.name or target.replace("_", "-")
    return registry_of(cfg).register(name, "scorer", trained.path, card), trained


def train_scorer_task(cfg: DictConfig, folder: Path) -> None:
    from training.tasks import training_runs

    target = cfg.training.target
    if target not in COLUMNS:
        from core.errors import UsageError

        raise UsageError(f"training.target={target!r} is invalid: allowed is chat, "
                         f"{', '.join(COLUMNS)}")
    registered, trained = train_scorer(cfg, training_runs(cfg, folder), folder, target)
    use = "memory.selector" if target == "memory_selector" else "matching=compatibility matching.scorer"
    print(f"salon: trained {registered.ref}: held-out {trained.metrics} (embedding baseline "
          f"{trained.baseline_metrics}); use it with {use}={registered.ref}")
