"""Probabilities of fixed answer tokens (e.g. '1'..'5') from any supported chat model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage


def choice_probabilities(
    model: BaseChatModel, conversations: Sequence[Sequence[BaseMessage]], choices: Sequence[str]
) -> np.ndarray:
    """Local models read the next-token distribution; OpenAI-compatible servers report it
    through `logprobs` (choices missing from the top alternatives count as 0)."""
    if hasattr(model, "choice_probabilities"):
        return np.asarray(model.choice_probabilities(conversations, choices))
    bound = model.bind(logprobs=True, top_logprobs=20, max_tokens=1)
    messages = bound.batch([list(c) for c in conversations])
    return np.array([_from_logprobs(m.response_metadata.get("logprobs"), choices) for m in messages])


def _from_logprobs(logprobs: dict | None, choices: Sequence[str]) -> list[float]:
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
