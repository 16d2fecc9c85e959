"""Token streaming out of a batched `generate`: each row's text so far, as it grows.

transformers' `TextStreamer`/`TextIteratorStreamer` take batch size 1 only; this streamer
keeps one token list per row of the batch, so a server can stream every request of a shared
batched call to its own client."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from core.seams import OnText


class RowStreamer:
    """Calls ``on_text(offset + row, text)`` whenever a row's decoded text changes; a row stops
    at its first end-of-sequence token. The first `put` is the prompt and is skipped.

    `generate` only calls `put` and `end` (the `BaseStreamer` contract); not subclassing it keeps
    transformers out of this module's imports, so `run.py` can check arguments before loading it."""

    def __init__(self, tokenizer: Any, on_text: OnText, offset: int, eos_ids: Collection[int]) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.offset = offset
        self.eos_ids = set(eos_ids)
        self.rows: list[list[int]] | None = None
        self.finished: list[bool] = []
        self.texts: list[str] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()
        if self.rows is None:
            self.rows = [[] for _ in tokens]
            self.finished = [False] * len(tokens)
            self.texts = [""] * len(tokens)
        for row, token in enumerate(tokens):
            if self.finished[row]:
                continue
            if token in self.eos_ids:
                self.finished[row] = True
                continue
            self.rows[row].append(token)
            self._emit(row)

    def _emit(self, row: int) -> None:
        assert self.rows is not None
        text = self.tokenizer.decode(self.rows[row], skip_special_tokens=True).strip()
        if text != self.texts[row]:
            self.texts[row] = text
            self.on_text(self.offset + row, text)

    def end(self) -> None:
        """Nothing is held back: every change was reported when it happened."""
