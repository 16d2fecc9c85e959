"""`task=train` and `task=evaluate`: fine-tune from logged episodes, compare on Persona-Chat."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.bank import save_bank
from agents.importers import personachat_episodes, personachat_personas, read_personachat
from agents.models.loading import ModelSource, cached_folder, embedded_source, folder_source
from environment import build
from core.errors import UsageError
from core.records import Episode
from training.datasets import (
    BuiltDataset,
    EpisodeFilter,
    build_chat_dataset,
    build_preference_dataset,
    save_dataset,
    split_characters,
    split_names,
)
from training.evaluate import evaluate_model, personachat_examples, write_results
from training.lora import LoraTrainingConfig, TrainingResult, train_lora
from training.registry import RegisteredModel
from training.runs import RunData, load_runs
from training.swap import base_name, registry_of

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
    dialogues = read_personachat(path, "dev")[: cfg.training.personachat_dialogues]
    personas = personachat_personas(dialogues)
    run = folder / "personachat-dev"
    run.mkdir(parents=True, exist_ok=True)
    save_bank(personas, run / "characters.jsonl")
    episodes: list[Episode] = personachat_episodes(dialogues, personas)
    (run / "episodes.jsonl").write_text("".join(_json(e) for e in episodes))
    return run


def _json(episode: Episode) -> str:
    import json

    return json.dumps(episode.to_dict()) + "\n"


def training_runs(cfg: DictConfig, folder: Path) -> list[Path]:
    if cfg.training.source == "personachat":
        return [personachat_run(cfg, folder)]
    if cfg.training.source != "runs":
        raise UsageError(f"training.source={cfg.training.source!r} is invalid: "
                         "allowed is runs or personachat")
    if not cfg.training.runs:
        raise UsageError("training.runs is empty: give run folders, e.g. training.runs=[outputs/runs/X]")
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
    base = base_source(cfg)  # fails fast if the model package is missing
    built = build_chat_data(cfg, load_runs(runs), held_out)
    save_dataset(built.dataset, folder / "dataset", built.card)
    settings = LoraTrainingConfig(method=cfg.training.method, seed=cfg.seed,
                                  **OmegaConf.to_container(cfg.training.lora))
    result = train_lora(settings, base, built.dataset["train"], built.dataset["eval"], folder / "lora")
    card = {"base_model": base_name(cfg.model), "dataset": built.card, "method": settings.method,
            "metrics": {"train_loss": result.train_loss, "eval_loss": result.eval_loss,
                        "steps": result.steps, "train_tokens": result.train_tokens,
                        "train_seconds": round(result.seconds, 1),
                        "train_tokens_per_second": round(result.tokens_per_second, 1)}}
    registered = registry_of(cfg).register(name, "adapter", result.adapter_dir, card)
    return registered, result, built


def train_task(cfg: DictConfig) -> None:
    folder = build.run_dir(cfg)
    if cfg.training.target != "chat":
        from training.scorer_tasks import train_scorer_task

        train_scorer_task(cfg, folder)
        return
    runs = training_runs(cfg, folder)
    name = cfg.training.name or "chat"
    registered, result, built = train_chat(cfg, runs, folder, list(cfg.training.held_out), name)
    counts = {k: len(v) for k, v in built.dataset.items()}
    print(f"salon: trained {registered.ref} on {counts} examples: train loss {result.train_loss:.3f}, "
          f"eval loss {result.eval_loss if result.eval_loss is None else round(result.eval_loss, 3)}, "
          f"{result.tokens_per_second:.0f} tokens/s; use it with model.adapter={registered.ref}")


def adapters_to_evaluate(cfg: DictConfig) -> list[str]:
    registry = registry_of(cfg)
    if cfg.eval.adapters is not None:
        return list(cfg.eval.adapters)
    base = base_name(cfg.model)
    return [m.ref for m in registry.list() if m.kind == "adapter" and m.card.get("base_model") == base
            and m.version == registry.versions(m.name)[-1]]


def evaluate_task(cfg: DictConfig) -> None:
    if cfg.eval.name != "personachat":
        raise UsageError(f"eval={cfg.eval.name!r} is unknown: allowed is personachat")
    path = Path(to_absolute_path(cfg.eval.path))
    dialogues = read_personachat(path, cfg.eval.split)[: cfg.eval.dialogues or None]
    examples = personachat_examples(dialogues, build.build_prompts(cfg), cfg.eval.max_per_dialogue)
    refs = adapters_to_evaluate(cfg)
    plan_cfg = OmegaConf.merge(cfg, {"model": {"adapter": None}})
    from training.swap import AdapterPlan, resolve

    registry, base = registry_of(cfg), base_name(cfg.model)
    found = [resolve(registry, r, "adapter", base, "eval.adapters") for r in refs]
    model = build.build_model(plan_cfg, AdapterPlan(folders={m.ref: str(m.path) for m in found}))
    results = [evaluate_model(model, examples, adapter, cfg.eval.max_new_tokens)
               for adapter in ["", *(m.ref for m in found)]]
    title = f"Persona-Chat {cfg.eval.split}: {len(dialogues)} dialogues, {len(examples)} replies"
    print(write_results(build.run_dir(cfg), results, title))
