"""Tokens, cost and a budget: a ledger per model from the turns spoken (prompt and completion
tokens, and cost where `simulation.budget.prices` gives the model's price), and the check that
stops a run at the budget (`simulation.budget.tokens` / `.usd`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from core.errors import is_number, is_whole, require
from core.records import Episode, Turn


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    uncounted: int = 0  # model calls whose tokens are missing from the counts (the server sent no usage)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def ledger(turns: Iterable[Turn]) -> dict[str, Usage]:
    """Tokens per base model (a turn's model without its adapter), in order of first use."""
    counts: dict[str, list[int]] = {}
    for turn in turns:
        row = counts.setdefault((turn.model or "unknown").split("+")[0], [0, 0, 0])
        row[0] += turn.prompt_tokens
        row[1] += turn.completion_tokens
        row[2] += turn.uncounted
    return {model: Usage(*row) for model, row in counts.items()}


def episode_turns(episodes: Iterable[Episode]) -> list[Turn]:
    return [t for e in episodes for t in e.turns]


class BudgetReached(Exception):
    """The budget is spent; carries the episodes of the round that had finished."""

    def __init__(self, reason: str, finished: Sequence[Episode] = ()) -> None:
        super().__init__(reason)
        self.reason, self.finished = reason, list(finished)


@dataclass(frozen=True)
class Budget:
    """`simulation.budget`: the most tokens (prompt + completion) and US dollars a run may
    spend; ``prices`` maps a model name to [USD per million prompt tokens, per million
    completion tokens] (a model without a price costs 0)."""

    tokens: int | None = None
    usd: float | None = None
    prices: Mapping[str, Sequence[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.tokens is None or is_whole(self.tokens, 1), "tokens",
                "allowed is a whole number >= 1 or null (no limit)", self.tokens)
        require(self.usd is None or (is_number(self.usd, 0) and self.usd > 0), "usd",
                "allowed is a number > 0 or null (no limit)", self.usd)
        for model, price in self.prices.items():
            require(len(price) == 2 and all(is_number(p, 0) for p in price), f"prices.{model}",
                    "allowed is [USD per million prompt tokens, USD per million completion tokens]",
                    list(price))

    def cost(self, usage: Mapping[str, Usage]) -> float:
        total = 0.0
        for model, used in usage.items():
            prompt, completion = self.prices.get(model, (0.0, 0.0))
            total += (used.prompt_tokens * prompt + used.completion_tokens * completion) / 1e6
        return total

    def exceeded(self, usage: Mapping[str, Usage]) -> str:
        """'' while within the budget, else one line saying what was spent."""
        tokens = sum(u.tokens for u in usage.values())
        if self.tokens is not None and tokens >= self.tokens:
            return f"the token budget is spent: {tokens:,} of simulation.budget.tokens={self.tokens:,}"
        cost = self.cost(usage)
        if self.usd is not None and cost >= self.usd:
            return f"the cost budget is spent: ${cost:.4f} of simulation.budget.usd={self.usd:g}"
        return ""
