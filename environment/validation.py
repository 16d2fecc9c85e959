"""Checks of top-level settings that build no object (`seed`, `simulation.rounds`, ...): one line
naming the key and what is allowed. Settings that build an object are checked by its
constructor, through `environment.build.instantiate`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from core.errors import is_number, is_whole, require

Check = tuple[str, Callable[[Any], bool], str]


def whole(low: int, high: int | None = None) -> Callable[[Any], bool]:
    return lambda value: is_whole(value, low, high)


def number(low: float, high: float | None = None) -> Callable[[Any], bool]:
    return lambda value: is_number(value, low, high)


def boolean(value: Any) -> bool:
    return isinstance(value, bool)


MEMORY_CHECKS: list[Check] = [
    ("memory.seed_importance", number(0.0, 1.0), "a number from 0 to 1"),
    ("memory.selector_fetch", whole(1), "a whole number >= 1"),
]

RUN_CHECKS: list[Check] = [
    ("seed", whole(0), "a whole number >= 0"),
    ("simulation.rounds", whole(1), "a whole number >= 1"),
    ("simulation.progress", boolean, "true or false"),
    *MEMORY_CHECKS,
]


def check_values(cfg: DictConfig, checks: list[Check]) -> None:
    for key, valid, allowed in checks:
        value = OmegaConf.select(cfg, key, default=None)
        require(valid(value), key, f"allowed is {allowed}", value)
