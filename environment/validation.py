"""Config checks that run before any model loads: one line naming the key and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from core.errors import UsageError

Check = tuple[str, Callable[[Any], bool], str]


def is_int(low: int, high: int | None = None) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low and (
            high is None or value <= high)
    return check


def is_number(low: float, high: float | None = None) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and value >= low and (
            high is None or value <= high)
    return check


SIMULATION_CHECKS: list[Check] = [
    ("society.size", is_int(2), "a whole number >= 2"),
    ("simulation.rounds", is_int(1), "a whole number >= 1"),
    ("seed", is_int(0), "a whole number >= 0"),
    ("society.support_share", is_number(0, 1), "a number from 0 to 1"),
    ("conversation.max_turns", is_int(1, 200), "a whole number from 1 to 200"),
    ("conversation.min_turns", is_int(1, 200), "a whole number from 1 to 200"),
    ("conversation.retries", is_int(0, 10), "a whole number from 0 to 10"),
    ("conversation.memory_k", is_int(0, 50), "a whole number from 0 to 50"),
    ("conversation.history_window", is_int(1, 200), "a whole number from 1 to 200"),
    ("model.max_new_tokens", is_int(1, 4096), "a whole number from 1 to 4096"),
    ("model.temperature", is_number(0, 5), "a number from 0 to 5"),
]


def check(cfg: DictConfig, checks: list[Check]) -> None:
    for key, valid, allowed in checks:
        value = OmegaConf.select(cfg, key, default=None)
        if value is None and key.startswith("model."):
            continue  # backends differ in their options
        if not valid(value):
            raise UsageError(f"{key}={value!r} is invalid: allowed is {allowed}")


def check_simulation(cfg: DictConfig) -> None:
    check(cfg, SIMULATION_CHECKS)
    if cfg.conversation.min_turns > cfg.conversation.max_turns:
        raise UsageError(f"conversation.min_turns={cfg.conversation.min_turns} is invalid: "
                         f"allowed is at most conversation.max_turns={cfg.conversation.max_turns}")
