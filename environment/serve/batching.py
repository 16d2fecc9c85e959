"""The server's requests, answered concurrently: each request takes its turn in a worker thread
of its own, and the chat model batches what is pending at once (the in-process model's
micro-batcher, `agents/models/coalesce.py`, the one the independent engine uses; a served model's
continuous batching). At most ``max_in_flight`` requests are answered at once; 1 answers them one
at a time, in arrival order. Each request samples with its own seed, so its seeds do not
depend on the batch it shared (its text can, through batch numerics)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agents.chat import ChatSettings, ReplyStream, remember
from agents.prompting import PromptBuilder
from agents.turns import Sampling, TurnRequest, take_turns
from core.records import Reply


@dataclass
class LiveReply:
    """A streamed request: settled text goes to ``deltas``, a queue of the server's event loop,
    from the worker thread while the reply is generated."""

    stream: ReplyStream
    loop: asyncio.AbstractEventLoop
    deltas: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def follow(self, raw: str) -> None:
        delta = self.stream.feed(raw)
        if delta:
            self.loop.call_soon_threadsafe(self.deltas.put_nowait, delta)


@dataclass(frozen=True)
class Job:
    """One chat request and its sampling settings."""

    request: TurnRequest
    temperature: float | None = None
    max_new_tokens: int | None = None
    store: bool = True
    live: LiveReply | None = None


@dataclass
class Responder:
    """Answers one job (called from many threads at once) and stores a successful exchange."""

    settings: ChatSettings
    prompts: PromptBuilder
    now: float
    seed: int = 0
    _seeds: itertools.count = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._seeds = itertools.count(self.seed)

    def __call__(self, job: Job) -> Reply:
        with self._lock:
            seed = next(self._seeds)
        live = job.live
        [reply] = take_turns([job.request], self.prompts, self.settings.turn, self.now,
                             Sampling(seed, job.temperature, job.max_new_tokens),
                             None if live is None else lambda _, raw: live.follow(raw))
        if job.store:
            with self._lock:  # memory writes one at a time
                remember([(job.request, reply)], self.now, self.settings.memory_importance)
        return reply


class RequestQueue:
    """asyncio front of the blocking responder: start() inside the server's event loop."""

    def __init__(self, answer: Callable[[Job], Reply], max_in_flight: int = 16) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.answer = answer
        self.max_in_flight = max_in_flight
        self._pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="salon-request")

    async def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, job: Job) -> Reply:
        if self._pool is None:
            raise RuntimeError("the request queue is not started")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.answer, job)
