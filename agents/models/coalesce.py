"""Concurrent calls from many threads merged into one batched call (a micro-batcher).

When episodes advance independently, each asks for its own turn from its own thread; an
in-process model is fastest when those requests share one batched `generate`. The first caller
of an idle model gathers company while calls keep arriving (each within ``quiet`` seconds of
the last, at most ``max_wait`` in all, at most ``max_rows`` rows); callers that arrive while a
batch runs form the next one. Only calls with the same key (the sampling settings that one
`generate` must share) are merged. The leader-follower pattern keeps it free of a background
thread: whoever waits while the model is idle runs the next batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class _Job:
    key: Hashable
    rows: Sequence[Any]
    result: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    finished: bool = False


class Coalescer:
    """``submit(key, rows)`` returns ``run(key, rows of every merged call)``'s results for
    its own rows (``run`` returns one result per row, in order)."""

    def __init__(self, run: Callable[[Hashable, list[Any]], list[Any]], quiet: float = 0.02,
                 max_wait: float = 0.25, max_rows: int = 64) -> None:
        self.run = run
        self.quiet = quiet
        self.max_wait = max_wait
        self.max_rows = max_rows
        self.batch_sizes: list[int] = []
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._arrived = 0.0
        self._busy = False

    def submit(self, key: Hashable, rows: Sequence[Any]) -> list[Any]:
        job = _Job(key, rows)
        with self._cond:
            self._pending.append(job)
            self._arrived = time.monotonic()
            self._cond.notify_all()
            while not job.finished:
                if self._busy:
                    self._cond.wait()
                else:
                    self._lead()
        if job.error is not None:
            raise job.error
        return job.result

    def _lead(self) -> None:
        """Gather, run one batch outside the lock, hand out its results (called with the lock)."""
        self._busy = True
        self._gather()
        batch = self._take()
        self._cond.release()
        try:
            self._execute(batch)
        finally:
            self._cond.acquire()
            self._busy = False
            for job in batch:
                job.finished = True
            self._cond.notify_all()

    def _gather(self) -> None:
        started = time.monotonic()
        while sum(len(j.rows) for j in self._pending) < self.max_rows:
            now = time.monotonic()
            wait = min(self._arrived + self.quiet, started + self.max_wait) - now
            if wait <= 0:
                return
            self._cond.wait(wait)

    def _take(self) -> list[_Job]:
        """The pending jobs with the first one's key, up to ``max_rows`` rows (at least one job)."""
        key, batch, rows = self._pending[0].key, [], 0
        for job in list(self._pending):
            if job.key == key and (not batch or rows + len(job.rows) <= self.max_rows):
                batch.append(job)
                rows += len(job.rows)
                self._pending.remove(job)
        return batch

    def _execute(self, batch: list[_Job]) -> None:
        self.batch_sizes.append(sum(len(j.rows) for j in batch))
        try:
            results = self.run(batch[0].key, [row for job in batch for row in job.rows])
        except BaseException as error:  # every caller of the batch sees the failure
            for job in batch:
                job.error = error
            return
        start = 0
        for job in batch:
            job.result = results[start:start + len(job.rows)]
            start += len(job.rows)
