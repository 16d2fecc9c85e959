"""Any OpenAI-compatible server through langchain-openai, with concurrent requests per batch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

from agents.models.choices import from_logprobs
from agents.models.gate import RequestGate
from agents.models.pool import ServerPool
from agents.models.token_counts import TokenCounter, reply_with_usage
from core.errors import UsageError, is_number, is_whole, require
from core.records import Reply
from core.rng import per_conversation
from core.seams import OnText


class OpenAICompatibleChat(ChatOpenAI):
    """ChatOpenAI whose turns and critic calls (`complete`, `choice_probabilities`) go through one
    gate: at most ``max_concurrency`` requests in flight over every caller's threads, a timeout or
    connection failure as one line. `batch` (LangChain's) runs ``max_concurrency`` at once."""

    max_concurrency: int = 16
    tokenizer_path: str | None = None  # counts the tokens of replies that come without usage
    _counter: TokenCounter | None = PrivateAttr(default=None)
    _gate: RequestGate = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        timeout = self.request_timeout if isinstance(self.request_timeout, int | float) else 0
        self._gate = RequestGate(self.max_concurrency, float(timeout),
                                 f"the server at {self.openai_api_base}")
        if self.tokenizer_path:
            self._counter = TokenCounter(lambda: _tokenizer(str(self.tokenizer_path)))

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if config is None:
            config = {"max_concurrency": self.max_concurrency}
        return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)

    def complete(self, conversations: Sequence[Sequence[BaseMessage]], *,
                 seed: int | Sequence[int] | None = None, adapters: Sequence[str] | None = None,
                 temperature: float | None = None, max_new_tokens: int | None = None,
                 on_text: OnText | None = None, candidates: int = 1, avoid: Sequence[Any] | None = None,
                 block_ngrams: int = 4) -> list[Reply]:
        """Concurrent requests; the server answers each whole (``on_text`` is not called).
        Adapters are chosen server-side by model name (``model.model``), not per row. A row's
        ``n`` candidates are n requests with its seed s, s+1, ... (the server's prefix cache
        serves the shared prompt). An OpenAI-compatible server cannot forbid n-grams, so
        ``avoid`` is left to the turn scorer, which ranks copies last."""
        if adapters and any(adapters):
            raise UsageError("a served model takes no per-row adapters: serve the adapter under "
                             "its own model name and set model.model to it")
        overrides: dict[str, Any] = {}
        if temperature is not None:
            overrides["temperature"] = temperature
        if max_new_tokens is not None:
            overrides |= {"max_tokens": max_new_tokens, "extra_body": {"max_tokens": max_new_tokens}}
        rows = [list(c) for c in conversations for _ in range(candidates)]
        # LangChain's batch sends every input with the same call arguments; each row and
        # candidate needs its own seed (core.rng.per_conversation), so each has its own binding
        seeds = per_conversation(seed, len(conversations))
        bound = [self.bind(**overrides, **({} if s is None else {"seed": int(s) + k}))
                 for s in seeds for k in range(candidates)]
        answers = self._gate.send_all([partial(model.invoke, row)
                                       for model, row in zip(bound, rows, strict=True)])
        return [reply_with_usage(str(m.content), m.usage_metadata, row, self._counter)
                for m, row in zip(answers, rows, strict=True)]

    def choice_probabilities(self, conversations: Sequence[Sequence[BaseMessage]],
                             choices: Sequence[str]) -> np.ndarray:
        """From the server's `logprobs` of the first reply token (top 20 alternatives)."""
        if not conversations:
            return np.zeros((0, len(choices)))
        bound = self.bind(logprobs=True, top_logprobs=20, max_tokens=1)
        messages = self._gate.send_all([partial(bound.invoke, list(c)) for c in conversations])
        return np.array([from_logprobs(m.response_metadata.get("logprobs"), choices) for m in messages])

    def reply_losses(self, conversations: Sequence[Sequence[BaseMessage]], replies: Sequence[str],
                     adapter: str | None = None) -> list[tuple[float, int]]:
        raise UsageError("perplexity needs the log-likelihood of given replies, which an "
                         "OpenAI-compatible chat endpoint does not return; evaluate with model=local")

    def label(self, adapter: str | None = None) -> str:
        return f"{self.model_name}+{adapter}" if adapter else str(self.model_name)


def _tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def openai_compatible(
    base_url: str | Sequence[str],
    model: str = "default",
    api_key_env: str = "OPENAI_API_KEY",
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    max_concurrency: int = 16,
    timeout: float = 120,
    tokenizer: str | None = None,
) -> OpenAICompatibleChat | ServerPool:
    """One server, or a pool when ``base_url`` lists several (agents/models/pool.py).
    ``tokenizer``: a Hugging Face tokenizer folder of the served model, which counts the tokens
    of replies that come without usage (without it their counts are reported missing)."""
    urls = [base_url] if isinstance(base_url, str) else [str(u) for u in base_url]
    require(bool(urls) and all(u.startswith(("http://", "https://")) for u in urls), "base_url",
            "allowed is an http(s) URL or a list of them", base_url if isinstance(base_url, str) else urls)
    require(tokenizer is None or (Path(str(tokenizer)).expanduser() / "tokenizer_config.json").is_file(),
            "tokenizer", "allowed is null or a Hugging Face tokenizer folder (with tokenizer_config.json)",
            tokenizer)
    settings = {"model": model, "api_key_env": api_key_env, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "max_concurrency": max_concurrency, "timeout": timeout,
                "tokenizer": str(Path(str(tokenizer)).expanduser()) if tokenizer else None}
    if len(urls) == 1:
        return _one_server(urls[0], **settings)
    # in a pool a failed request goes to the next server at once, not after the client's own retries
    return ServerPool([(u, _one_server(u, **settings, max_retries=0)) for u in urls], max_concurrency)


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _one_server(base_url: str, model: str, api_key_env: str, max_new_tokens: int, temperature: float,
                max_concurrency: int, timeout: float, tokenizer: str | None = None, max_retries: int = 2
                ) -> OpenAICompatibleChat:
    require(is_whole(max_new_tokens, 1, 4096), "max_new_tokens", "allowed is a whole number from 1 to 4096",
            max_new_tokens)
    require(is_number(temperature, 0, 5), "temperature", "allowed is a number from 0 to 5", temperature)
    require(is_whole(max_concurrency, 1), "max_concurrency", "allowed is a whole number >= 1",
            max_concurrency)
    # ChatOpenAI's max_tokens goes out as max_completion_tokens, which some servers
    # (llama.cpp) ignore; the plain max_tokens rides along in the body for them.
    key = os.environ.get(api_key_env)
    # a loopback server (llama.cpp, vLLM started by hand) may need no key; any other host does
    require(bool(key) or is_loopback(base_url), "api_key_env",
            f"the variable {api_key_env} is not set; a server that is not on 127.0.0.1/localhost needs "
            "its key there", api_key_env)
    return OpenAICompatibleChat(
        base_url=base_url, model=model, api_key=key or "not-needed",
        max_tokens=max_new_tokens, temperature=temperature, timeout=timeout,
        max_concurrency=max_concurrency, extra_body={"max_tokens": max_new_tokens},
        stream_usage=True, max_retries=max_retries, tokenizer_path=tokenizer)
