"""Sampling with one seeded generator per row, as a logits processor.

transformers' `generate(do_sample=True)` draws every row of a batch from torch's one global
generator, so a row's reply depends on which other rows share its batch. When episodes advance
independently, the rows a batch holds depend on timing; a generator per row (seeded by the
row's own seed) makes each reply depend on its own seed only. The processor applies temperature
and top-p like transformers' warpers, draws the token, and leaves only it possible, so
`generate` runs greedy (`do_sample=False`) around it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from core.rng import per_conversation


class RowSampler:
    """Draws each row's next token from its own generator; must be the last processor."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: Any) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            probabilities = _top_p(probabilities, self.top_p)
        chosen = torch.stack([torch.multinomial(row, 1, generator=g)[0]
                              for row, g in zip(probabilities, self.generators, strict=True)])
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(1, chosen[:, None], 0.0)


def _top_p(probabilities: torch.Tensor, top_p: float) -> torch.Tensor:
    """The smallest set of tokens whose probability reaches ``top_p`` (always at least one),
    renormalised; the same rule as transformers' TopPLogitsWarper."""
    ordered, order = torch.sort(probabilities, descending=True, dim=-1)
    before = ordered.cumsum(dim=-1) - ordered
    ordered = ordered.masked_fill(before >= top_p, 0.0)
    kept = torch.zeros_like(probabilities).scatter_(1, order, ordered)
    return kept / kept.sum(dim=-1, keepdim=True)


def conversation_seeds(seeds: int | Sequence[int] | None, conversations: int) -> list[int]:
    """One seed per conversation (`core.rng.per_conversation`), fresh random ones where none
    was given."""
    return [int(torch.randint(0, 2**31 - 1, ())) if s is None else s
            for s in per_conversation(seeds, conversations)]


def row_seeds(seeds: Sequence[int], candidates: int) -> list[int]:
    """A seed per generated row (conversation-major, ``candidates`` rows each): candidate k of a
    conversation adds k * 7919, a prime, so it rarely meets another conversation's seed."""
    return [(s + 7919 * k) % (2**63 - 1) for s in seeds for k in range(candidates)]
