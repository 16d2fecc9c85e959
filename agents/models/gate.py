"""The requests a served model sends, through one gate: at most ``limit`` in flight over every
caller's threads (more would only wait in the server's queue, where each request's timeout
runs), and a timeout or an unreachable server is one line (`ModelCallFailed`), not the
client's traceback. Used by every model that calls an OpenAI-compatible server through
langchain-openai (`served.py` for servers Salon starts, `remote.py` for one given by URL)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from core.errors import ModelCallFailed

T = TypeVar("T")
U = TypeVar("U")


def in_order(work: Callable[[T], U], items: Sequence[T], limit: int) -> list[U]:
    """``work`` on every item, at most ``limit`` at once (one item runs in the caller's own
    thread); the answers in the items' order."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(limit, len(items))) as pool:
        return list(pool.map(work, items))


class RequestGate:
    def __init__(self, limit: int, timeout: float, server: str = "the server") -> None:
        self.limit, self.timeout, self.server = limit, timeout, server
        self._slots = threading.BoundedSemaphore(limit)

    def send(self, request: Callable[[], T]) -> T:
        """``request()`` once a slot is free; its timeout or connection error as one line."""
        import openai

        with self._slots:
            try:
                return request()
            except openai.APITimeoutError:
                raise ModelCallFailed(
                    f"{self.server} did not answer a request within model.timeout={self.timeout:g} s "
                    f"(up to model.max_concurrency={self.limit} requests in flight): raise "
                    "model.timeout or lower model.max_concurrency") from None
            except openai.APIConnectionError as error:
                raise ModelCallFailed(f"{self.server} cannot be reached ({error})") from None

    def send_all(self, requests: Sequence[Callable[[], T]]) -> list[T]:
        """Every request, concurrently through the gate; answers in order."""
        return in_order(self.send, requests, self.limit)
