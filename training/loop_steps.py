"""The learning loop's steps (training/tasks/loop.py runs them in order): the warm start, the
training of each generation (turn-level DPO pairs or SFT on kept episodes, continuing the
previous adapter), the Persona-Chat evaluations and the human-vs-Salon discriminator."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.importers import personachat_episodes, personachat_personas
from agents.models.registry import RegisteredModel
from core.records import Episode
from environment import build
from environment.build import AdapterPlan, complete, instantiate, registry_of
from training.datasets import split_characters, split_names
from training.discriminator import discriminator_auc
from training.discriminator import train_discriminator as fit_discriminator
from training.evaluate import evaluate_model, personachat_examples
from training.loop_measures import Generation
from training.pipeline import build_chat_data, train_and_register, training_runs
from training.runs import load_runs
from training.splits import as_range, dialogues
from training.turn_pairs import build_turn_preference_dataset


def fresh(folder: Path) -> Path:
    """An empty ``folder``: what an interrupted step left there is redone, not reused."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def trained_by(loop: Path, step: str) -> str:
    """What a loop writes into the card of the adapter a step trained (``step``: warm_start, gen0...)."""
    return f"{loop.resolve()}#{step}"


def registered_by(cfg: DictConfig, name: str, tag: str) -> RegisteredModel | None:
    """The adapter that the loop step ``tag`` registered before a kill stopped the loop from
    recording it (None: the step has not registered one), so a resume does not train it twice."""
    registry = registry_of(cfg)
    for version in reversed(registry.versions(name)):
        model = registry.verified(f"{name}:{version}")
        if model.card.get("trained_by") == tag:
            return model
    return None


def train_fresh(cfg: DictConfig, folder: Path, name: str) -> tuple[RegisteredModel, dict[str, Any]]:
    """SFT from `training.source` (the warm start: Persona-Chat dev 40-199) into a new adapter."""
    tag = trained_by(folder.parent, folder.name)
    registered = registered_by(cfg, name, tag)
    if registered is None:
        folder = fresh(folder)
        built = build_chat_data(cfg, load_runs(training_runs(cfg, folder)), [])
        registered, _ = train_and_register(cfg, built, folder, name, card_extra={"trained_by": tag})
    return registered, {"examples": registered.card["rows"]["train"],
                        "train_loss": registered.card["metrics"]["train_loss"]}


def train_generation(cfg: DictConfig, folder: Path, generation: Generation, held_out: list[str],
                     name: str) -> None:
    """The next adapter from this generation's episodes (all generations', with
    `loop.cumulative`); held-out characters never train. Records the result in ``generation``."""
    tag = trained_by(folder, f"gen{generation.index}")
    registered = (registered_by(cfg, name, tag)
                  or _train_generation(cfg, folder, generation, held_out, name, tag))
    metrics = registered.card["metrics"]
    generation.dataset = dict(registered.card["rows"])
    generation.train_loss, generation.eval_loss = metrics["train_loss"], metrics["eval_loss"]
    generation.train_tokens_per_second = metrics["train_tokens_per_second"]
    generation.trained_adapter = registered.ref


def _train_generation(cfg: DictConfig, folder: Path, generation: Generation, held_out: list[str], name: str,
                      tag: str) -> RegisteredModel:
    work = fresh(folder / f"gen{generation.index}" / "train")
    runs = [folder / f"gen{i}" for i in range(generation.index + 1)] if cfg.loop.cumulative \
        else [folder / f"gen{generation.index}"]
    data = load_runs(runs)
    method_cfg = OmegaConf.merge(cfg, {"training": {"method": cfg.loop.method}})
    if cfg.loop.method == "dpo":
        rng = np.random.default_rng(cfg.seed)
        split = split_characters(split_names(data), cfg.training.eval_fraction, rng, held_out)
        embedder = build.build_embedder(cfg)
        built = build_turn_preference_dataset(data, build.build_critic(cfg, embedder, None),
                                              build.build_prompts(cfg), split)
    else:
        built = build_chat_data(method_cfg, data, held_out)
    init = registry_of(cfg).verified(generation.adapter).path if generation.adapter else None
    return train_and_register(method_cfg, built, work, name, init, {"trained_by": tag})[0]


def persona_chat(cfg: DictConfig, adapter: str, plan: AdapterPlan, rows: range, per_dialogue: int
                 ) -> tuple[float, float]:
    """Perplexity and F1 of next-utterance prediction on Persona-Chat dialogues ``rows``."""
    found = dialogues(Path(to_absolute_path(cfg.eval.path)), rows)
    examples = personachat_examples(found, build.build_prompts(cfg), per_dialogue)
    base_cfg = OmegaConf.merge(build.scoring_model_config(cfg), {"model": {"adapter": None}})
    result = evaluate_model(build.build_model(base_cfg, plan), examples, adapter, cfg.eval.max_new_tokens)
    return result.perplexity, result.f1


def human_episodes(cfg: DictConfig, rows: range) -> list[Episode]:
    found = dialogues(Path(to_absolute_path(cfg.eval.path)), rows)
    return personachat_episodes(found, personachat_personas(found))


def train_discriminator(cfg: DictConfig, folder: Path, state: dict[str, Any]) -> str:
    """Trained once, on Persona-Chat dialogues `loop.discriminator_dialogues` (human) against the
    generation-0 episodes without a held-out character (Salon); frozen afterwards."""
    salon = [e for e in _all_episodes(folder / "gen0")
             if not set(e.character_ids.values()) & set(state["held_out"])]
    human = human_episodes(cfg, as_range(cfg.loop.discriminator_dialogues, "loop.discriminator_dialogues"))
    output = fresh(folder / "discriminator") / "scorer"
    settings = complete(instantiate(cfg.training.scorer, "training.scorer"), "training.scorer",
                        output=str(output), task="classification")
    trained = fit_discriminator(human, salon, settings, cfg.seed)
    state["discriminator_info"] = {"human": len(human), "salon": len(salon), "metrics": trained.metrics,
                                   "baseline_metrics": trained.baseline_metrics}
    return str(trained.path)


def _all_episodes(run: Path) -> list[Episode]:
    from environment.store import SQLiteEpisodeStore

    store = SQLiteEpisodeStore(run / "episodes.sqlite")
    try:
        return store.episodes()
    finally:
        store.close()


def discriminate(cfg: DictConfig, path: str, held_out: Sequence[Episode]) -> float:
    """The frozen discriminator's AUC at telling held-out characters' dialogues (Salon) from
    human test dialogues (`loop.test_dialogues`): 0.5 = human-like."""
    if not held_out:
        return float("nan")
    human = human_episodes(cfg, as_range(cfg.loop.test_dialogues, "loop.test_dialogues"))
    return discriminator_auc(Path(path), held_out, human)


def test_evaluation(cfg: DictConfig, folder: Path, state: dict[str, Any], save: Callable[[], None]) -> None:
    """Persona-Chat test perplexity and F1 (`loop.test_dialogues`, read only here) for the base
    model, generation 0's model and the last generation's, each once."""
    generations = state["generations"]
    models = {"base": "", "generation 0": generations[0].adapter,
              f"generation {len(generations) - 1}": generations[-1].adapter}
    rows = as_range(cfg.loop.test_dialogues, "loop.test_dialogues")
    for label, adapter in models.items():
        if label in state["test"]:
            continue
        folder_of = str(registry_of(cfg).verified(adapter).path) if adapter else ""
        plan = AdapterPlan(folders={adapter: folder_of} if adapter else {})
        ppl, f1 = persona_chat(cfg, adapter, plan, rows, cfg.loop.test_per_dialogue)
        state["test"][label] = {"adapter": adapter or "base", "perplexity": ppl, "f1": f1}
        save()
