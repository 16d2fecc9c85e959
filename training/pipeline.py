"""From config to trained models, shared by `task=train` and `task=loop`: the runs to learn from,
the chat dataset -> LoRA -> registry, and the scorer dataset -> cross-encoder -> registry."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from agents.bank import save_bank
from agents.importers import personachat_episodes, personachat_personas, read_personachat
from agents.models.loading import ModelSource, cached_folder, embedded_source, folder_source
from agents.models.registry import RegisteredModel
from core.errors import UsageError
from core.records import Episode
from environment import build
from environment.build import base_model_name, complete, instantiate
from memory.crossencoder import read_scorer_info
from training.contradiction import RULES as CONTRADICTION_RULES
from training.contradiction import build_contradiction_dataset
from training.datasets import (
    BuiltDataset,
    EpisodeFilter,
    build_chat_dataset,
    build_compatibility_dataset,
    build_preference_dataset,
    save_dataset,
    split_characters,
    split_names,
)
from training.lora import LoraTrainingConfig, TrainingResult, train_lora
from training.registry import ModelRegistry
from training.runs import RunData, check_run, load_runs
from training.scorers import CrossEncoderConfig, TrainedScorer, train_cross_encoder
from training.selector_data import build_memory_selector_dataset
from training.splits import as_range, dialogues

log = logging.getLogger(__name__)


def base_source(cfg: DictConfig) -> ModelSource:
    """The base model's weights on disk (the embedded GGUF converted once into the cache)."""
    source = folder_source(cfg.model.path) if cfg.model.path else embedded_source()
    return cached_folder(source, Path(cfg.paths.cache_dir).expanduser())


def episode_filter(cfg: DictConfig) -> EpisodeFilter:
    t = cfg.training
    return EpisodeFilter(t.min_overall, t.top_fraction, tuple(t.roles), t.character)


def personachat_run(cfg: DictConfig, folder: Path) -> Path:
    """Persona-Chat dev dialogues written as a run folder, so they train like episodes."""
    path = Path(to_absolute_path(cfg.eval.path))
    chosen = dialogues(path, as_range(cfg.training.personachat_dialogues, "training.personachat_dialogues"))
    personas = personachat_personas(chosen)
    run = folder / "personachat-dev"
    run.mkdir(parents=True, exist_ok=True)
    save_bank(personas, run / "characters.jsonl")
    episodes: list[Episode] = personachat_episodes(chosen, personas)
    (run / "episodes.jsonl").write_text("".join(_json(e) for e in episodes))
    return run


def _json(episode: Episode) -> str:
    import json

    return json.dumps(episode.to_dict()) + "\n"


def check_source(cfg: DictConfig) -> None:
    """`training.source`: the Persona-Chat file, or a non-empty list of run folders."""
    if cfg.training.source == "personachat":
        read_personachat(Path(to_absolute_path(cfg.eval.path)), "dev")
        return
    if cfg.training.source != "runs":
        raise UsageError(f"training.source={cfg.training.source!r} is invalid: "
                         "allowed is runs or personachat")
    if not cfg.training.runs:
        raise UsageError("training.runs is empty: give run folders, e.g. training.runs=[outputs/runs/X]")


def check_run_folders(cfg: DictConfig) -> None:
    """Every folder of `training.runs` holds a run's episodes (with `training.source=runs`)."""
    if cfg.training.source != "runs":
        return
    for run in cfg.training.runs:
        try:
            check_run(Path(to_absolute_path(run)))
        except UsageError as error:
            raise UsageError(f"training.runs: {error}") from None


def training_runs(cfg: DictConfig, folder: Path) -> list[Path]:
    """The run folders to learn from (Persona-Chat dev is first written as one into ``folder``)."""
    if cfg.training.source == "personachat":
        return [personachat_run(cfg, folder)]
    return [Path(to_absolute_path(r)) for r in cfg.training.runs]


def build_chat_data(cfg: DictConfig, data: RunData, held_out: list[str]) -> BuiltDataset:
    rule = episode_filter(cfg)
    if cfg.training.source == "personachat":
        rule = EpisodeFilter(None, None, tuple(cfg.training.roles), cfg.training.character)
    split = split_characters(split_names(data, rule), cfg.training.eval_fraction,
                             np.random.default_rng(cfg.seed), held_out)
    prompts = build.build_prompts(cfg)
    if cfg.training.method == "dpo":
        return build_preference_dataset(data, rule, prompts, split)
    return build_chat_dataset(data, rule, prompts, split)


def train_chat(cfg: DictConfig, runs: list[Path], folder: Path, held_out: list[str],
               name: str) -> tuple[RegisteredModel, TrainingResult, BuiltDataset]:
    """Dataset -> LoRA -> registry; the dataset and its card are kept in ``folder``."""
    base_source(cfg)  # fails fast if the model package is missing
    built = build_chat_data(cfg, load_runs(runs), held_out)
    registered, result = train_and_register(cfg, built, folder, name)
    return registered, result, built


def train_and_register(cfg: DictConfig, built: BuiltDataset, folder: Path, name: str,
                       init_adapter: Path | None = None, card_extra: Mapping[str, Any] | None = None
                       ) -> tuple[RegisteredModel, TrainingResult]:
    """Save the dataset in ``folder``, train LoRA on it (a new adapter, or ``init_adapter``
    further) with `training.lora`, and register the result as the next version of ``name``
    (its card also holds ``card_extra``)."""
    save_dataset(built.dataset, folder / "dataset", built.card)
    settings: LoraTrainingConfig = instantiate(cfg.training.lora, "training.lora")
    result = train_lora(settings, base_source(cfg), built.dataset["train"], built.dataset["eval"],
                        folder / "lora", init_adapter)
    card = {"base_model": base_model_name(cfg.model), "dataset": built.card, "method": settings.method,
            "metrics": {"train_loss": result.train_loss, "eval_loss": result.eval_loss,
                        "steps": result.steps, "train_tokens": result.train_tokens,
                        "train_seconds": round(result.seconds, 1),
                        "train_tokens_per_second": round(result.tokens_per_second, 1)},
            "rows": {split: len(rows) for split, rows in built.dataset.items()}, **(card_extra or {})}
    return writable_registry(cfg).register(name, "adapter", result.adapter_dir, card), result


def writable_registry(cfg: DictConfig) -> ModelRegistry:
    return ModelRegistry(build.registry_of(cfg).root)


COLUMNS = {"memory_selector": ("classification", "history", "memory", "label"),
           "compatibility": ("regression", "persona_a", "persona_b", "score")}
SCORER_TARGETS = tuple(COLUMNS)


def train_scorer(cfg: DictConfig, runs: list[Path], folder: Path, target: str
                 ) -> tuple[RegisteredModel, TrainedScorer]:
    task, text_a, text_b, label = COLUMNS[target]
    data = load_runs(runs)
    rng = np.random.default_rng(cfg.seed)
    split = split_characters(data.characters(), cfg.training.eval_fraction, rng, list(cfg.training.held_out))
    built = (build_memory_selector_dataset(data, split) if target == "memory_selector"
             else build_compatibility_dataset(data, split))
    save_dataset(built.dataset, folder / "dataset", built.card)
    settings = instantiate(cfg.training.scorer, "training.scorer")
    config: CrossEncoderConfig = complete(settings, "training.scorer", output=str(folder / "scorer"),
                                          task=task)
    trained = train_cross_encoder(config, built.dataset["train"], built.dataset["eval"],
                                  text_a, text_b, label)

    card = {"base_model": read_scorer_info(trained.path).base, "dataset": built.card, "task": task,
            "metrics": trained.metrics, "baseline_metrics": trained.baseline_metrics}
    name = cfg.training.name or target.replace("_", "-")
    return writable_registry(cfg).register(name, "scorer", trained.path, card), trained


def train_contradiction(cfg: DictConfig, folder: Path) -> tuple[RegisteredModel, TrainedScorer]:
    """The critic's contradiction expert: an NLI-style cross-encoder from MiniLM on Persona-Chat
    dev dialogues 40-199 (training/contradiction.py), registered as ``training.name`` or
    ``contradiction``."""
    rows = as_range(cfg.training.personachat_dialogues, "training.personachat_dialogues")
    built = build_contradiction_dataset(dialogues(Path(to_absolute_path(cfg.eval.path)), rows), cfg.seed)
    card = {"kind": "contradiction", "source": "personachat dev 40-199", "rules": len(CONTRADICTION_RULES)}
    save_dataset(built, folder / "dataset", card)
    settings = instantiate(cfg.training.scorer, "training.scorer")
    config: CrossEncoderConfig = complete(settings, "training.scorer", output=str(folder / "scorer"),
                                          task="classification")
    trained = train_cross_encoder(config, built["train"], built["eval"], "fact", "line", "label")
    card = {"base_model": read_scorer_info(trained.path).base, "dataset": card, "task": "classification",
            "metrics": trained.metrics, "baseline_metrics": trained.baseline_metrics}
    name = cfg.training.name or "contradiction"
    return writable_registry(cfg).register(name, "scorer", trained.path, card), trained
