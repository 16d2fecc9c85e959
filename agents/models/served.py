"""Models on servers Salon starts: `model=llamacpp` (llama.cpp's `llama-server` with the embedded
GGUF or any GGUF) and `model=vllm` (`vllm serve`, GPU machines), on 127.0.0.1, started on first
use and stopped on exit. Requests go through LangChain's
ChatOpenAI; the server batches concurrent requests (continuous batching over ``slots``) and
keeps each slot's prompt in its cache, so an episode's next turn reads only its new tail.

Best of n is one request with ``n`` choices (the server reads the prompt once). LoRA adapters
(peft folders, e.g. the learning loop's) are converted once with llama.cpp's own
`convert_lora_to_gguf.py`, loaded unapplied, and chosen per request."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.messages import BaseMessage

from agents.models import loading
from agents.models.blocking import Avoid
from agents.models.choices import from_logprobs
from agents.models.copy_penalty import copy_window, dry_fields
from agents.models.gate import RequestGate, in_order
from agents.models.servers import (
    BUILD_HINT,
    LLAMA_CPP_VERSION,
    ServerProcess,
    llama_cpp_home,
    llama_server,
    llama_server_path,
    vllm_server,
)
from agents.models.token_counts import TokenCounter, reply_with_usage
from core.devices import cpu_has_bf16
from core.errors import InvalidValue, SalonError, UsageError, is_number, is_whole, require
from core.records import Reply
from core.rng import per_conversation
from core.seams import OnText

log = logging.getLogger(__name__)


@dataclass
class ServedUsage:
    """What the server reported: requests, prompt tokens (and how many its cache served),
    completion tokens."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0

    @property
    def cache_hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


class ServedChat:
    """A ChatModel (core/seams.py) over a server this object starts (on first use) and stops;
    subclasses say how to launch it (`_launch`) and how a request picks an adapter (`_route`)."""

    server_name = "server"

    def __init__(self, max_new_tokens: int = 48, temperature: float = 0.5, top_p: float = 0.9,
                 repetition_penalty: float = 1.2, adapters: dict[str, str] | None = None,
                 adapter: str | None = None, cache_dir: str = ".cache/salon", timeout: float = 120,
                 startup_timeout: float = 120, max_concurrency: int = 64, log_dir: str | None = None) -> None:
        require(is_whole(max_new_tokens, 1, 4096), "max_new_tokens",
                "allowed is a whole number from 1 to 4096", max_new_tokens)
        require(is_number(temperature, 0, 5), "temperature", "allowed is a number from 0 to 5", temperature)
        require(is_number(top_p, 0, 1) and top_p > 0, "top_p", "allowed is a number in (0, 1]", top_p)
        require(is_whole(max_concurrency, 1), "max_concurrency", "allowed is a whole number >= 1",
                max_concurrency)
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.top_p, self.repetition_penalty = top_p, repetition_penalty
        self.adapters, self.adapter = dict(adapters or {}), adapter
        if adapter and adapter not in self.adapters:
            raise InvalidValue("adapter", "allowed is one of the loaded adapters", adapter)
        self.cache_dir, self.timeout, self.startup_timeout = cache_dir, timeout, startup_timeout
        self.max_concurrency, self.log_dir = max_concurrency, log_dir
        self._gate = RequestGate(max_concurrency, timeout, self.server_name)
        self.usage = ServedUsage()
        self._lock = threading.Lock()
        self._server: ServerProcess | None = None
        self._chat: Any = None
        self._counter = TokenCounter(self._load_tokenizer)

    def _launch(self, log_path: Path | None) -> ServerProcess:
        raise NotImplementedError

    def _log_path(self) -> Path | None:
        if not self.log_dir:
            return None
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        return Path(self.log_dir) / f"{self.server_name}.log"

    def start(self) -> ServedChat:
        """Start the server (once; later calls return at once)."""
        with self._lock:
            if self._chat is None:
                self._start()
        return self

    def _start(self) -> None:
        from langchain_openai import ChatOpenAI

        self._server = self._launch(self._log_path()).start()
        self._chat = ChatOpenAI(base_url=f"{self._server.base_url}/v1", api_key="loopback", model="salon",
                                timeout=self.timeout, max_retries=1)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._chat = None

    @property
    def base_url(self) -> str:
        self.start()
        assert self._server is not None
        return self._server.base_url

    def describe(self) -> str:
        return self.server_name

    def serving(self) -> str:
        """One line for the run report: the server and what its prompt cache saved."""
        u = self.usage
        return (f"{self.describe()} on 127.0.0.1: {u.requests} requests in this session, the prompt "
                f"cache served {u.cached_tokens} of {u.prompt_tokens} prompt tokens ({u.cache_hit_rate:.0%})")

    # -- the ChatModel seam -----------------------------------------------------------------
    def label(self, adapter: str | None = None) -> str:
        chosen = (self.adapter or "") if adapter is None else adapter
        return f"{self.model_name}+{chosen}" if chosen else self.model_name

    @property
    def model_name(self) -> str:
        raise NotImplementedError

    def complete(self, conversations: Sequence[Sequence[BaseMessage]], *,
                 seed: int | Sequence[int] | None = None, adapters: Sequence[str] | None = None,
                 temperature: float | None = None, max_new_tokens: int | None = None,
                 on_text: OnText | None = None, candidates: int = 1, avoid: Sequence[Any] | None = None,
                 block_ngrams: int = 4) -> list[Reply]:
        """One request per conversation (``candidates`` choices each, the prompt read once),
        up to ``max_concurrency`` in flight at once (over every caller). A server cannot forbid
        n-grams: ``avoid`` becomes what the server offers against copying (`_no_copy`), and the
        turn ranker ranks copies last. ``on_text`` is not called."""
        self.start()
        count = len(conversations)
        seeds = per_conversation(seed, count)
        names = list(adapters) if adapters is not None else [self.adapter or ""] * count
        body = {"max_tokens": max_new_tokens or self.max_new_tokens, "top_p": self.top_p,
                "repeat_penalty": self.repetition_penalty, "cache_prompt": True,
                "temperature": self.temperature if temperature is None else temperature}
        avoids = list(avoid) if avoid is not None else [None] * count
        jobs = [(list(c), s, n, a) for c, s, n, a in zip(conversations, seeds, names, avoids, strict=True)]
        # an episode's own turn (one job) goes out from the episode's own thread
        answers = in_order(lambda job: self._request(*job, body, candidates, block_ngrams), jobs,
                           self.max_concurrency)
        return [reply for replies in answers for reply in replies]

    def _request(self, messages: list[BaseMessage], seed: int | None, adapter: str, avoid: Avoid | None,
                 body: dict[str, Any], candidates: int, block_ngrams: int) -> list[Reply]:
        route, extra = self._payload(messages, seed, adapter, avoid, body, block_ngrams)
        result = self._gate.send(
            lambda: self._chat.generate([messages], n=candidates, extra_body=extra, **route))
        generations = result.generations[0]
        usage = generations[0].message.usage_metadata or {}
        cached = int((usage.get("input_token_details") or {}).get("cache_read") or 0)
        # the server's usage covers the first choice only (the prompt was read once); the model's
        # tokenizer counts the other choices' replies
        texts = [str(g.message.content).strip() for g in generations]
        replies = [reply_with_usage(texts[0], usage, messages, self._counter)]
        replies += [Reply(text=t, completion_tokens=self._counter.reply(t)) for t in texts[1:]]
        prompt = replies[0].prompt_tokens
        with self._lock:
            self.usage.requests += 1
            self.usage.prompt_tokens += prompt
            self.usage.cached_tokens += cached
            self.usage.completion_tokens += sum(r.completion_tokens for r in replies)
        return replies

    def _payload(self, messages: list[BaseMessage], seed: int | None, adapter: str, avoid: Avoid | None,
                 body: dict[str, Any], block_ngrams: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """A request's call arguments (the adapter's route) and body: the sampling settings, the
        adapter's fields, what the server offers against copying ``avoid``, the seed."""
        route, fields = self._route(adapter)
        no_copy = self._no_copy(messages, avoid, int(body["max_tokens"]), block_ngrams) if avoid else {}
        extra = {**body, **fields, **no_copy}
        if seed is not None:
            extra["seed"] = int(seed)
        return route, extra

    def count_tokens(self, text: str) -> int:
        """The tokens of a reply by the model's tokenizer (the server counts only its first choice)."""
        return self._counter.reply(text)

    def _load_tokenizer(self) -> Any:
        raise NotImplementedError

    def _no_copy(self, messages: list[BaseMessage], avoid: Avoid, reply_tokens: int,
                 block_ngrams: int) -> dict[str, Any]:
        """Request fields against copying ``avoid``'s texts; none by default."""
        return {}

    def _route(self, adapter: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """How a request asks for ``adapter``: (call arguments, body fields)."""
        raise NotImplementedError

    def _known(self, adapter: str) -> None:
        if adapter and adapter not in self.adapters:
            raise ValueError(f"unknown adapter {adapter!r}; loaded: {sorted(self.adapters)}")

    def choice_probabilities(self, conversations: Sequence[Sequence[BaseMessage]],
                             choices: Sequence[str]) -> np.ndarray:
        """From the server's `logprobs` of the first reply token (top 20 alternatives)."""
        self.start()
        if not conversations:
            return np.zeros((0, len(choices)))
        route, fields = self._route(self.adapter or "")
        bound = self._chat.bind(logprobs=True, top_logprobs=20, max_tokens=1,
                                extra_body={"max_tokens": 1, **fields}, **route)
        messages = self._gate.send_all([partial(bound.invoke, list(c)) for c in conversations])
        return np.array([from_logprobs(m.response_metadata.get("logprobs"), choices) for m in messages])

    def reply_losses(self, conversations: Sequence[Sequence[BaseMessage]], replies: Sequence[str],
                     adapter: str | None = None) -> list[tuple[float, int]]:
        raise UsageError("perplexity needs the log-likelihood of given replies, which a server's chat "
                         "endpoint does not return; evaluate with model=local (the same weights)")


class LlamaCppChat(ServedChat):
    """`model=llamacpp`: llama-server with a GGUF (the embedded one by default)."""

    server_name = "llama-server"

    def __init__(self, path: str | None = None, binary: str | None = None, slots: int = 16,
                 context_per_slot: int = 2048, threads: int | None = None, extra_args: Sequence[str] = (),
                 quantize: str | None = "auto", dry_multiplier: float = 3.0, **settings: Any) -> None:
        require(path is None or str(path).endswith(".gguf"), "path", "allowed is a .gguf file or null "
                "(the embedded SmolLM2 GGUF)", path)
        require(quantize is None or quantize == "auto" or quantize in GGUF_TYPES, "quantize",
                f"allowed is auto, null or one of {', '.join(GGUF_TYPES)}", quantize)
        require(is_whole(slots, 1, 512), "slots", "allowed is a whole number from 1 to 512", slots)
        require(is_whole(context_per_slot, 256, 131072), "context_per_slot",
                "allowed is a whole number from 256 to 131072", context_per_slot)
        require(is_number(dry_multiplier, 0, 100), "dry_multiplier",
                "allowed is a number from 0 (off) to 100", dry_multiplier)
        server = llama_server_path(binary)  # a missing server stops the run before it starts
        require(server.is_file() and os.access(server, os.X_OK), "binary",
                f"no llama-server at {server}: build it with `{BUILD_HINT}`", binary)
        super().__init__(**settings)
        self.path, self.binary, self.slots, self.context_per_slot = path, binary, slots, context_per_slot
        self.threads, self.extra_args = threads, [str(a) for a in extra_args]
        self.dry_multiplier = float(dry_multiplier)
        self.quantize = (None if path else auto_weight_type()) if quantize == "auto" else quantize

    def _served_gguf(self) -> Path:
        """The GGUF llama-server loads: ``gguf``, re-quantized to ``quantize`` if one is set
        (once; llama-quantize runs the first time)."""
        if not self.gguf.is_file():
            raise UsageError(f"model.path={self.gguf} is not a file: allowed is a .gguf file")
        if not self.quantize:
            return self.gguf
        return requantized(self.gguf, self.quantize, Path(self.cache_dir).expanduser())

    @property
    def gguf(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        source = loading.embedded_source()
        return source.folder / str(source.gguf_file)

    @property
    def model_name(self) -> str:
        return loading.EMBEDDED_NAME if not self.path else Path(self.path).stem

    def describe(self) -> str:
        weights = f", weights as {self.quantize}" if self.quantize else ""
        return f"llama-server (llama.cpp {LLAMA_CPP_VERSION}), {self.slots} slots{weights}"

    def _launch(self, log_path: Path | None) -> ServerProcess:
        gguf = self._served_gguf()
        cache = Path(self.cache_dir).expanduser()
        loras = [convert_adapter(Path(f), self._base_folder(), cache) for f in self.adapters.values()]
        return llama_server(gguf, binary=self.binary, slots=self.slots,
                            context_per_slot=self.context_per_slot, threads=self.threads, loras=loras,
                            extra_args=self.extra_args, log_path=log_path,
                            startup_timeout=self.startup_timeout)

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        if self.path:
            return AutoTokenizer.from_pretrained(self.gguf.parent, gguf_file=self.gguf.name)
        return AutoTokenizer.from_pretrained(self._base_folder())

    def _no_copy(self, messages: list[BaseMessage], avoid: Avoid, reply_tokens: int,
                 block_ngrams: int) -> dict[str, Any]:
        """llama.cpp's DRY sampler over the prompt from the first text to avoid on (`copy_penalty.py`)."""
        if self.dry_multiplier <= 0 or block_ngrams < 2:
            return {}
        window = copy_window(self._counter.tokenizer, messages, avoid)
        return dry_fields(window, reply_tokens, block_ngrams, self.dry_multiplier)

    def _base_folder(self) -> Path:
        """A Hugging Face folder of the base model (its config is what the converter needs)."""
        if self.path:
            raise UsageError("adapters with model=llamacpp need the embedded base model (model.path=null)")
        return loading.cached_folder(loading.embedded_source(), Path(self.cache_dir).expanduser()).folder

    def _route(self, adapter: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """llama-server takes every loaded adapter's scale in the body: 1 for the one asked for."""
        self._known(adapter)
        return {}, {"lora": [{"id": i, "scale": 1.0 if name == adapter else 0.0}
                             for i, name in enumerate(self.adapters)]}


def convert_adapter(folder: Path, base: Path, cache: Path) -> Path:
    """A peft LoRA folder as GGUF, by llama.cpp's own converter; kept in ``cache`` under the
    digest of its weights, so each adapter version is converted once and the registry folder is
    never written to."""
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise UsageError(f"{folder} has no adapter_model.safetensors: only peft LoRA adapters can be served")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:24]
    target = cache / "llama.cpp-adapters" / f"{digest}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    home = llama_cpp_home()
    script = home / "convert_lora_to_gguf.py"
    if not script.is_file():
        raise UsageError(f"llama.cpp's LoRA converter is missing at {script}: run `make llama-server`")
    staging = target.with_suffix(".partial")
    done = subprocess.run([sys.executable, str(script), "--base", str(base), "--outtype", "f16",
                           "--outfile", str(staging), str(folder)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(home / "gguf-py"), "PATH": "/usr/bin:/bin",
                               "HF_HUB_OFFLINE": "1"}, check=False)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise SalonError(f"converting the adapter {folder} to GGUF failed: {tail}")
    staging.replace(target)
    return target


def auto_weight_type() -> str:
    """What `model.quantize=auto` serves the embedded Q4_1 GGUF as: BF16 where the CPU computes it
    natively, F32 elsewhere. Both hold the Q4_1 weights exactly (the in-process model's numbers),
    and llama.cpp's batched float matrix kernels beat its Q8_0 integer ones on the society's
    many-sequence batches (bench/README.md: 64.0 s against 88.4 s for Q8_0 on an AVX2 CPU)."""
    return "BF16" if cpu_has_bf16() else "F32"


GGUF_TYPES = ("F32", "Q8_0", "BF16", "F16", "Q6_K", "Q5_K_M", "Q5_1", "Q5_0", "Q4_K_M", "Q4_1", "Q4_0")


def requantized(gguf: Path, kind: str, cache: Path) -> Path:
    """``gguf`` with its weights as ``kind``, by llama.cpp's own llama-quantize (built beside
    llama-server); made once and kept in ``cache`` under the source's name, size and kind."""
    stat = gguf.stat()
    target = cache / "llama.cpp-models" / f"{gguf.stem}-{stat.st_size}-{kind}.gguf"
    if target.is_file():
        return target
    tool = llama_cpp_home() / "bin" / "llama-quantize"
    if not tool.is_file():
        raise UsageError(f"llama-quantize is not built at {tool}: run `{BUILD_HINT}` (or model.quantize=null "
                         "serves the GGUF as it is)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(".partial")
    log.info("re-quantizing %s to %s (once; kept in %s)", gguf.name, kind, target.parent)
    done = subprocess.run([str(tool), "--allow-requantize", str(gguf), str(staging), kind,
                           str(os.cpu_count() or 1)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise SalonError(f"re-quantizing {gguf} to {kind} failed: {tail}")
    staging.replace(target)
    return target


class VllmChat(ServedChat):
    """`model=vllm`: `vllm serve` (GPU machines) with automatic prefix caching; adapters are
    served by name (`--enable-lora --lora-modules`) and a request picks one by its model name."""

    server_name = "vllm"

    def __init__(self, path: str, extra_args: Sequence[str] = (), **settings: Any) -> None:
        require(bool(path), "path", "allowed is a Hugging Face model folder (or a cached hub name)", path)
        require(shutil.which("vllm") is not None, "path",
                "vLLM is not installed here: `pip install vllm` on a GPU machine, then model=vllm", path)
        super().__init__(**settings)
        self.path, self.extra_args = str(path), list(extra_args)

    @property
    def model_name(self) -> str:
        return Path(self.path).name

    def _names(self) -> dict[str, str]:
        """Adapter -> served name (registry refs hold ':' and '.', which vLLM names may not)."""
        return {ref: re.sub(r"[^A-Za-z0-9_-]", "-", ref) for ref in self.adapters}

    def _launch(self, log_path: Path | None) -> ServerProcess:
        served = {self._names()[ref]: folder for ref, folder in self.adapters.items()}
        return vllm_server(self.path, adapters=served, extra_args=self.extra_args, log_path=log_path,
                           startup_timeout=self.startup_timeout)

    def _route(self, adapter: str) -> tuple[dict[str, Any], dict[str, Any]]:
        self._known(adapter)
        return ({"model": self._names()[adapter]} if adapter else {}), {}

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path)
