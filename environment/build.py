"""Building the run's parts from config with Hydra's `instantiate` (shared by all tasks)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig

from agents.bank import load_bank, select_characters
from agents.character import Character
from agents.critic import Critic
from agents.persona import Persona
from agents.prompting import PromptBuilder
from environment.engine import ConversationEngine, StopRules
from core.records import Scene
from environment.society import EncounterSettings
from memory.embedder import SentenceEmbedder
from training.swap import AdapterPlan, adapter_plan

log = logging.getLogger(__name__)
SHIPPED_BANK = Path(__file__).resolve().parents[1] / "agents" / "data" / "bank.jsonl"


def run_dir(cfg: DictConfig) -> Path:
    path = Path(cfg.paths.run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def bank_path(cfg: DictConfig) -> Path:
    return Path(to_absolute_path(cfg.society.bank)) if cfg.society.bank else SHIPPED_BANK


def choose_personas(cfg: DictConfig, rng: np.random.Generator) -> list[Persona]:
    bank = load_bank(bank_path(cfg))
    attributes = {k: v for k, v in cfg.society.attributes.items() if v}
    chosen = select_characters(bank, cfg.society.size, rng)
    return [p.with_attributes(**attributes) for p in chosen] if attributes else chosen


def build_embedder(cfg: DictConfig) -> SentenceEmbedder:
    return instantiate(cfg.embedder)


def build_model(cfg: DictConfig, plan: AdapterPlan | None = None) -> Any:
    """The chat model, with every adapter the plan names loaded onto it (peft multi-adapter)."""
    plan = plan or adapter_plan(cfg)
    if not plan.folders:
        return instantiate(cfg.model, **({"adapter": ""} if "adapter" in cfg.model else {}))
    return instantiate(cfg.model, adapters=plan.folders, adapter=plan.default)


def build_memory(cfg: DictConfig, embedder: SentenceEmbedder, folder: Path) -> Any:
    """The memory store; with `memory.selector=<registered scorer>` a trained selector
    re-ranks a larger candidate set."""
    store = instantiate(cfg.memory.store, embedder=embedder, path=str(folder / "memory"))
    if not cfg.memory.selector:
        return store
    from memory.selector import MemorySelector, SelectedMemory
    from training.scorers import MINILM_NAME
    from training.swap import registry_of, resolve

    found = resolve(registry_of(cfg), cfg.memory.selector, "scorer", MINILM_NAME, "memory.selector")
    return SelectedMemory(store, MemorySelector(str(found.path)), cfg.memory.selector_fetch)


def build_critic(cfg: DictConfig, embedder: SentenceEmbedder, model: Any) -> Critic:
    return instantiate(cfg.critic)(embedder=embedder, model=model)


def build_prompts(cfg: DictConfig) -> PromptBuilder:
    directory = to_absolute_path(cfg.conversation.prompts_dir) if cfg.conversation.prompts_dir else None
    return PromptBuilder(directory, history_window=cfg.conversation.history_window)


def build_characters(personas: list[Persona], memory: Any, model: Any, prompts: PromptBuilder,
                     plan: AdapterPlan | None = None, rng: np.random.Generator | None = None
                     ) -> list[Character]:
    """Characters speak with the plan's default adapter; a cohort (a share of them, drawn with
    ``rng``) with the cohort adapter instead; per-role adapters apply on top."""
    plan = plan or AdapterPlan()
    cohort: set[int] = set()
    if plan.cohort and rng is not None:
        size = round(plan.cohort_share * len(personas))
        cohort = {int(i) for i in rng.choice(len(personas), size=size, replace=False)}
    return [Character(p, memory, model, prompts, adapter=plan.cohort if i in cohort else plan.default,
                      cohort="adapter" if i in cohort else "base", role_adapters=dict(plan.roles))
            for i, p in enumerate(personas)]


def build_engine(cfg: DictConfig, progress: bool = True) -> ConversationEngine:
    conversation = cfg.conversation
    rules = StopRules(conversation.max_turns, conversation.min_turns, conversation.stop_on_goodbye,
                      conversation.repetition_threshold)
    return ConversationEngine(rules, conversation.memory_k, conversation.retries,
                              conversation.max_sentences, progress=progress)


def encounter_settings(cfg: DictConfig) -> EncounterSettings:
    scenes = [Scene(s.location, s.status) for s in cfg.society.scenes] if cfg.society.use_scenes else []
    return EncounterSettings(cfg.society.support_share, tuple(scenes))
