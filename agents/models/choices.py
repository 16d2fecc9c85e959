"""Scores from the probabilities of fixed answer tokens (e.g. '1'..'5'): the judge reads its
number from them, so every model gives a valid one (no free-text parsing)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def from_logprobs(logprobs: dict | None, choices: Sequence[str]) -> list[float]:
    """Choice probabilities from an OpenAI-style `logprobs` field (first token's top
    alternatives); a choice missing from the alternatives counts as 0."""
    found = dict.fromkeys(choices, 0.0)
    content = (logprobs or {}).get("content") or []
    for option in content[0].get("top_logprobs", []) if content else []:
        token = str(option.get("token", "")).strip()
        if token in found:
            found[token] += math.exp(float(option["logprob"]))
    return [found[c] for c in choices]


def expected_score(probabilities: np.ndarray, scale: Sequence[float]) -> tuple[float, float]:
    """The expected value over the scale given choice probabilities, and the probability mass
    the model put on the choices at all (NaN value when it put none)."""
    mass = float(probabilities.sum())
    if mass <= 0:
        return math.nan, 0.0
    return float(np.dot(probabilities / mass, scale)), mass
