"""Any OpenAI-compatible server through langchain-openai, with concurrent requests per batch."""

from __future__ import annotations

import os
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_openai import ChatOpenAI


class OpenAICompatibleChat(ChatOpenAI):
    """ChatOpenAI whose `batch` runs up to ``max_concurrency`` requests at once by default
    (one round's episodes go out together, as the local backend batches them)."""

    max_concurrency: int = 16

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        kwargs.pop("adapters", None)  # adapters are chosen server-side by model name
        if config is None:
            config = {"max_concurrency": self.max_concurrency}
        return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)


def openai_compatible(
    base_url: str,
    model: str = "default",
    api_key_env: str = "OPENAI_API_KEY",
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    max_concurrency: int = 16,
    timeout: float = 120,
) -> OpenAICompatibleChat:
    # ChatOpenAI's max_tokens goes out as max_completion_tokens, which some servers
    # (llama.cpp) ignore; the plain max_tokens rides along in the body for them.
    return OpenAICompatibleChat(
        base_url=base_url, model=model, api_key=os.environ.get(api_key_env) or "not-needed",
        max_tokens=max_new_tokens, temperature=temperature, timeout=timeout,
        max_concurrency=max_concurrency, extra_body={"max_tokens": max_new_tokens},
        stream_usage=True)
