"""One queue in front of the chat model: concurrent requests are grouped into one batched
`generate` (the engine's batching: `agents.turns.take_turns` -> one `complete` call on a list).

The first request of a batch waits up to ``max_wait`` seconds for company; while a batch is
being generated, new requests gather for the next one. ``max_batch=1`` turns batching off
(requests are answered one at a time, in arrival order)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agents.chat import ChatSettings, ReplyStream, remember
from agents.prompting import PromptBuilder
from agents.turns import Sampling, TurnRequest, take_turns
from core.records import Reply


@dataclass
class LiveReply:
    """A streamed request: settled text goes to ``deltas``, a queue of the server's event loop,
    from the worker thread while the batch is generated."""

    stream: ReplyStream
    loop: asyncio.AbstractEventLoop
    deltas: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def follow(self, raw: str) -> None:
        delta = self.stream.feed(raw)
        if delta:
            self.loop.call_soon_threadsafe(self.deltas.put_nowait, delta)


@dataclass(frozen=True)
class Job:
    """One chat request and its sampling settings (a batch is split by these)."""

    request: TurnRequest
    temperature: float | None = None
    max_new_tokens: int | None = None
    store: bool = True
    live: LiveReply | None = None

    @property
    def sampling(self) -> tuple[float | None, int | None]:
        return (self.temperature, self.max_new_tokens)


@dataclass
class Responder:
    """Answers a batch of jobs in a worker thread and stores the successful exchanges."""

    settings: ChatSettings
    prompts: PromptBuilder
    now: float
    seed: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    _seeds: itertools.count = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._seeds = itertools.count(self.seed)

    def __call__(self, jobs: Sequence[Job]) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(jobs)
        groups: dict[tuple[float | None, int | None], list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault(job.sampling, []).append(index)
        for (temperature, max_new_tokens), indices in groups.items():
            with self._lock:
                seed = next(self._seeds)
                self.batch_sizes.append(len(indices))
            answered = take_turns([jobs[i].request for i in indices], self.prompts, self.settings.turn,
                                  self.now, Sampling(seed, temperature, max_new_tokens),
                                  _follower([jobs[i].live for i in indices]))
            remember([(jobs[i].request, r) for i, r in zip(indices, answered, strict=True) if jobs[i].store],
                     self.now, self.settings.memory_importance)
            for i, reply in zip(indices, answered, strict=True):
                replies[i] = reply
        return [r for r in replies if r is not None]


def _follower(lives: Sequence[LiveReply | None]) -> Callable[[int, str], None] | None:
    """Routes a batch's streamed text to the requests that asked for streaming."""
    if not any(lives):
        return None

    def follow(index: int, raw: str) -> None:
        live = lives[index]
        if live is not None:
            live.follow(raw)

    return follow


class BatchQueue:
    """asyncio front of a blocking batch function; start() inside the server's event loop."""

    def __init__(self, answer: Callable[[Sequence[Job]], list[Reply]], max_batch: int = 16,
                 max_wait: float = 0.015) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self.answer = answer
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Reply]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def submit(self, job: Job) -> Reply:
        if self._queue is None:
            raise RuntimeError("the batch queue is not started")
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        await self._queue.put((job, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            await self._gather(batch)
            try:
                replies = await asyncio.to_thread(self.answer, [job for job, _ in batch])
            except Exception as error:  # the server keeps running; each caller sees the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), reply in zip(batch, replies, strict=True):
                if not future.done():  # a caller that went away has cancelled its future
                    future.set_result(reply)

    async def _gather(self, batch: list[tuple[Job, asyncio.Future[Reply]]]) -> None:
        assert self._queue is not None
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                batch.append(self._queue.get_nowait() if remaining <= 0 else
                             await asyncio.wait_for(self._queue.get(), remaining))
            except (asyncio.QueueEmpty, TimeoutError):
                return
