"""Token counts when a server reports none: counted with the model's own tokenizer (the chat
template for the prompt, the text and its end token for the reply), or, with no tokenizer at
hand, marked uncounted so the ledger says the counts are missing instead of showing 0."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from agents.models.messages import to_chat
from core.records import Reply


class TokenCounter:
    """Counts with a tokenizer that ``load`` gives on first use."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load, self._tokenizer = load, None
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._load()
            return self._tokenizer

    def prompt(self, messages: Sequence[BaseMessage]) -> int:
        encoded = self.tokenizer.apply_chat_template(to_chat(messages), add_generation_prompt=True,
                                                     tokenize=True)
        return len(encoded["input_ids"] if isinstance(encoded, Mapping) else encoded)

    def reply(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False)) + 1


def reported(usage: Mapping[str, Any] | None) -> bool:
    return bool(usage) and "input_tokens" in usage and "output_tokens" in usage  # type: ignore[operator]


def reply_with_usage(text: str, usage: Mapping[str, Any] | None, messages: Sequence[BaseMessage],
                     counter: TokenCounter | None) -> Reply:
    """The server's counts; else the tokenizer's; else none (``uncounted``)."""
    if reported(usage):
        return Reply(text=text, prompt_tokens=int(usage["input_tokens"]),  # type: ignore[index]
                     completion_tokens=int(usage["output_tokens"]))  # type: ignore[index]
    if counter is not None:
        return Reply(text=text, prompt_tokens=counter.prompt(messages), completion_tokens=counter.reply(text))
    return Reply(text=text, uncounted=1)
