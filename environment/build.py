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
from environment.records import Scene
from environment.society import EncounterSettings
from memory.embedder import SentenceEmbedder

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


def build_model(cfg: DictConfig) -> Any:
    return instantiate(cfg.model)


def build_memory(cfg: DictConfig, embedder: SentenceEmbedder, folder: Path) -> Any:
    return instantiate(cfg.memory.store, embedder=embedder, path=str(folder / "memory"))


def build_critic(cfg: DictConfig, embedder: SentenceEmbedder, model: Any) -> Critic:
    return instantiate(cfg.critic)(embedder=embedder, model=model)


def build_prompts(cfg: DictConfig) -> PromptBuilder:
    directory = to_absolute_path(cfg.conversation.prompts_dir) if cfg.conversation.prompts_dir else None
    return PromptBuilder(directory, history_window=cfg.conversation.history_window)


def build_characters(personas: list[Persona], memory: Any, model: Any, prompts: PromptBuilder
                     ) -> list[Character]:
    return [Character(p, memory, model, prompts) for p in personas]


def build_engine(cfg: DictConfig, progress: bool = True) -> ConversationEngine:
    conversation = cfg.conversation
    rules = StopRules(conversation.max_turns, conversation.min_turns, conversation.stop_on_goodbye,
                      conversation.repetition_threshold)
    return ConversationEngine(rules, conversation.memory_k, conversation.retries,
                              conversation.max_sentences, progress=progress)


def encounter_settings(cfg: DictConfig) -> EncounterSettings:
    scenes = [Scene(s.location, s.status) for s in cfg.society.scenes] if cfg.society.use_scenes else []
    return EncounterSettings(cfg.society.support_share, tuple(scenes))
