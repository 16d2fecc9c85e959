"""Many servers behind one chat model (`model.base_url` as a list): each request goes to the
least-loaded server (fewest requests in flight, then fewest served), a failed request is retried
on another server, and every server's share is counted for the run report."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from langchain_core.messages import BaseMessage

from agents.models.gate import in_order
from core.errors import ModelCallFailed
from core.records import Reply
from core.rng import per_conversation
from core.seams import ChatModel, OnText

T = TypeVar("T")


@dataclass
class Member:
    url: str
    model: ChatModel
    in_flight: int = 0
    served: int = 0
    failed: int = 0
    failing: int = 0  # failures since its last success: a failing server is tried last


class AllServersFailed(ModelCallFailed):
    """Every server refused one request; carries the last error."""


class ServerPool:
    """A ChatModel over several servers of the same model."""

    def __init__(self, members: Sequence[tuple[str, ChatModel]], max_concurrency: int = 16) -> None:
        if not members:
            raise ValueError("a server pool needs at least one server")
        self.members = [Member(url, model) for url, model in members]
        self.max_concurrency = max_concurrency
        self.retried = 0
        self._lock = threading.Lock()

    def _pick(self, tried: set[int]) -> int:
        with self._lock:
            free = [i for i in range(len(self.members)) if i not in tried]
            chosen = min(free, key=lambda i: (self.members[i].failing > 0, self.members[i].in_flight,
                                              self.members[i].served))
            self.members[chosen].in_flight += 1
            return chosen

    def _call(self, work: Callable[[ChatModel], T]) -> T:
        """``work`` on the least-loaded server; on failure, on the next one not yet tried."""
        tried: set[int] = set()
        while True:
            index = self._pick(tried)
            member = self.members[index]
            try:
                result = work(member.model)
            except Exception as error:  # a server down or failing: the next one is tried
                with self._lock:
                    member.in_flight -= 1
                    member.failed += 1
                    member.failing += 1
                tried.add(index)
                if len(tried) == len(self.members):
                    raise AllServersFailed(f"all {len(tried)} servers failed; last: {error}") from error
                with self._lock:
                    self.retried += 1
                continue
            with self._lock:
                member.in_flight -= 1
                member.served += 1
                member.failing = 0
            return result

    def _each(self, items: Sequence[Any], work: Callable[[Any], list[T]]) -> list[T]:
        return [r for part in in_order(work, items, self.max_concurrency) for r in part]

    def complete(self, conversations: Sequence[Sequence[BaseMessage]], *,
                 seed: int | Sequence[int] | None = None, adapters: Sequence[str] | None = None,
                 temperature: float | None = None, max_new_tokens: int | None = None,
                 on_text: OnText | None = None, candidates: int = 1, avoid: Sequence[Any] | None = None,
                 block_ngrams: int = 4) -> list[Reply]:
        """Each conversation is its own request (its candidates together), routed on its own."""
        seeds = per_conversation(seed, len(conversations))

        def one(row: tuple[Sequence[BaseMessage], int | None]) -> list[Reply]:
            return self._call(lambda m: m.complete(
                [row[0]], seed=row[1], temperature=temperature, max_new_tokens=max_new_tokens,
                candidates=candidates, block_ngrams=block_ngrams))

        if adapters and any(adapters):
            raise ValueError("a pool of OpenAI-compatible servers takes no per-row adapters")
        return self._each(list(zip(conversations, seeds, strict=True)), one)

    def choice_probabilities(self, conversations: Sequence[Sequence[BaseMessage]],
                             choices: Sequence[str]) -> np.ndarray:
        rows = self._each(list(conversations), lambda c: list(self._call(
            lambda m: m.choice_probabilities([c], choices))))
        return np.array(rows) if rows else np.zeros((0, len(choices)))

    def reply_losses(self, conversations: Sequence[Sequence[BaseMessage]], replies: Sequence[str],
                     adapter: str | None = None) -> list[tuple[float, int]]:
        return self.members[0].model.reply_losses(conversations, replies, adapter)

    def label(self, adapter: str | None = None) -> str:
        return self.members[0].model.label(adapter)

    def serving(self) -> str:
        """One line for the run report: which server served how much."""
        shares = "; ".join(f"{m.url} served {m.served} requests ({m.failed} failed)" for m in self.members)
        return f"{len(self.members)} servers, least-loaded first: {shares}; {self.retried} requests retried"
