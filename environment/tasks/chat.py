"""`task=chat character=<name or id> [run=<run folder>]`: talk to a character in the terminal."""

from __future__ import annotations

from omegaconf import DictConfig

from agents.chat import ChatSession, run_terminal
from environment.build import instantiate
from environment.serve.characters import character_key, check_character, check_source, open_directory


def check(cfg: DictConfig) -> None:
    """A character is named, its source opens, and the chat settings build."""
    check_source(cfg)
    check_character(cfg)
    instantiate(cfg.chat, "chat")


def run(cfg: DictConfig) -> None:
    key = character_key(cfg)
    directory = open_directory(cfg)
    character = directory.chosen(key)
    session = ChatSession(character, instantiate(cfg.chat, "chat"), directory.prompts, directory.now,
                          seed=cfg.seed)
    run_terminal(session)
