"""No copying on llama-server: its DRY sampler ("don't repeat yourself") over the prompt's tail.

The in-process model forbids a reply to continue any n-gram of what it must not copy (the
episode's lines, the recalled memories, the instructions; `blocking.py`). A server takes no
logits processor, but llama.cpp's DRY sampler penalises a token that would extend a sequence
already in the last ``dry_penalty_last_n`` tokens of the context. The prompt puts the persona
first, so a window that starts at the first text to avoid after the persona facts covers what
the blocker covers and leaves the speaker free to use its own facts. The penalty is soft (a
logit minus ``multiplier * base ** (match - allowed)``), so the turn ranker still ranks copies
last."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from agents.models.blocking import Avoid
from agents.models.messages import to_chat


def window_start(prompt: str, avoid: Avoid) -> int | None:
    """Where in ``prompt`` the first text to avoid begins, after the last allowed text (the
    speaker's persona facts) first appears; None if no text to avoid is in the prompt."""
    after = max((prompt.find(t) + len(t) for t in avoid.allowed if t and t in prompt), default=0)
    starts = [i for t in avoid.texts if t and (i := prompt.find(t, after)) >= 0]
    return min(starts) if starts else None


def copy_window(tokenizer: Any, messages: Sequence[BaseMessage], avoid: Avoid) -> int:
    """The tokens from the first text to avoid to the end of the rendered prompt (0: none)."""
    prompt = tokenizer.apply_chat_template(to_chat(messages), add_generation_prompt=True, tokenize=False)
    start = window_start(prompt, avoid)
    if start is None:
        return 0
    return len(tokenizer.encode(prompt[start:], add_special_tokens=False))


def dry_fields(window: int, reply_tokens: int, block_ngrams: int, multiplier: float,
               base: float = 1.75) -> dict[str, Any]:
    """llama-server's request fields: a token that would make an n-gram (``block_ngrams``) of
    the last ``window`` prompt tokens is penalised by ``multiplier``, longer copies exponentially
    more. DRY's window is the context's last tokens, so it slides as the reply grows: it is made
    ``reply_tokens`` longer to keep the whole tail in it to the reply's end (the reply's first
    tokens then also see that many tokens before the tail, the persona's last lines). Only a
    newline breaks a match (llama.cpp's default also breaks on ':', '"' and '*')."""
    if window <= 0 or multiplier <= 0 or block_ngrams < 2:
        return {}
    return {"dry_multiplier": multiplier, "dry_base": base, "dry_allowed_length": block_ngrams - 1,
            "dry_penalty_last_n": window + reply_tokens, "dry_sequence_breakers": ["\n"]}
