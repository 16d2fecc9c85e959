"""Shared benchmark helpers: the project's Hydra config outside a Hydra run, a chat model that
logs every `generate` call (time, shapes, padding, sampling state), a timed memory store and a
description of the machine."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as run.py sets it, before torch loads

from omegaconf import DictConfig
from pydantic import PrivateAttr

from agents.models.local import LocalChatModel
from core.records import Recalled

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def bench_config(overrides: Sequence[str]) -> DictConfig:
    """The run config as `python run.py` would compose it (conf/), plus ``overrides``; set
    ``paths.run_dir`` since there is no Hydra run folder here."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=list(overrides))


def log(message: str) -> None:
    """Progress goes to stderr so stdout carries only the result line."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class GenerateCall:
    """One `lm.generate` call as the chat model made it."""

    seconds: float
    batch: int
    prompt_tokens: int           # real (unpadded) prompt tokens
    padded_prompt_tokens: int    # batch x longest prompt
    decode_steps: int            # new positions generated (the longest row)
    completion_tokens: int       # new tokens up to each row's end of sequence
    settings: dict[str, Any]     # every generate kwarg except the input tensors
    rng_state: Any               # torch's global RNG state right before the call


@dataclass
class GenerateLog:
    calls: list[GenerateCall] = field(default_factory=list)

    def total(self, attribute: str) -> float:
        return sum(getattr(c, attribute) for c in self.calls)


def eos_ids(lm: Any, tokenizer: Any) -> set[int]:
    value = lm.generation_config.eos_token_id
    ids = list(value) if isinstance(value, list | tuple) else [] if value is None else [int(value)]
    return set(ids) | {tokenizer.eos_token_id}


def completion_lengths(new_tokens: Any, eos: set[int]) -> list[int]:
    """Tokens per row up to and including the first end of sequence (as the chat model counts)."""
    return [next((i + 1 for i, t in enumerate(row) if t in eos), len(row)) for row in new_tokens.tolist()]


class ProfiledLM:
    """Wraps a causal LM; `generate` is timed and logged, everything else passes through."""

    def __init__(self, lm: Any, eos: set[int], sink: GenerateLog) -> None:
        self._lm = lm
        self._eos = eos
        self.sink = sink

    def generate(self, **kwargs: Any) -> Any:
        import torch

        settings = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
        inputs, mask = kwargs["input_ids"], kwargs["attention_mask"]
        state = torch.get_rng_state()
        started = time.perf_counter()
        output = self._lm.generate(**kwargs)
        seconds = time.perf_counter() - started
        width = inputs.shape[1]
        self.sink.calls.append(GenerateCall(
            seconds, int(inputs.shape[0]), int(mask.sum()), int(inputs.numel()),
            int(output.shape[1] - width), sum(completion_lengths(output[:, width:], self._eos)),
            settings, state))
        return output

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lm, name)


class ProfiledChatModel(LocalChatModel):
    """The local chat model, unchanged, except that its `lm` logs each `generate` call to
    ``generate_log``; `bare_lm` is the underlying model for raw measurements."""

    _profiled: ProfiledLM | None = PrivateAttr(default=None)
    _sink: GenerateLog = PrivateAttr(default_factory=GenerateLog)

    @property
    def bare_lm(self) -> Any:
        return LocalChatModel.lm.fget(self)  # type: ignore[attr-defined]

    @property
    def lm(self) -> Any:
        if self._profiled is None:
            self._profiled = ProfiledLM(self.bare_lm, eos_ids(self.bare_lm, self.tokenizer), self._sink)
        return self._profiled

    def new_log(self) -> GenerateLog:
        """Start logging into a fresh log (the previous one is left to its holder)."""
        self._sink = GenerateLog()
        if self._profiled is not None:
            self._profiled.sink = self._sink
        return self._sink


class TimedMemory:
    """A memory store whose `search_many` (embedding + vector queries + ranking) is timed."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.seconds = 0.0

    def search_many(self, requests: Sequence[tuple[str, str]], k: int, now: float,
                    reinforce: bool = True) -> list[list[Recalled]]:
        started = time.perf_counter()
        try:
            return self._store.search_many(requests, k, now, reinforce)
        finally:
            self.seconds += time.perf_counter() - started

    def search(self, owner: str, query: str, k: int, now: float) -> list[Recalled]:
        return self.search_many([(owner, query)], k, now)[0]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide busy CPU seconds (/proc/stat) and the CPU seconds of this process and of its
    finished children (a benchmark that runs `run.py` must not count it as another process),
    at one moment."""

    wall: float
    busy: float
    own: float

    @classmethod
    def now(cls) -> CpuSample:
        ticks = os.sysconf("SC_CLK_TCK")
        busy = 0.0
        stat = Path("/proc/stat")
        if stat.is_file():
            fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
            busy = (sum(fields[:8]) - fields[3] - fields[4]) / ticks  # all but idle and iowait
        children = os.times()
        return cls(time.perf_counter(), busy,
                   time.process_time() + children.children_user + children.children_system)


def others_cpu_share(start: CpuSample, end: CpuSample) -> float:
    """Share of the machine's CPU capacity that other processes used between two samples
    (0 = the benchmark had the cores to itself; NaN-free 0 where /proc/stat is missing)."""
    capacity = (end.wall - start.wall) * (os.cpu_count() or 1)
    others = (end.busy - start.busy) - (end.own - start.own)
    return max(0.0, others / capacity) if capacity > 0 and end.busy else 0.0


def machine_summary(model: LocalChatModel) -> dict[str, Any]:
    import torch
    import transformers

    return {"model": model.model_name, "dtype": str(model.lm.dtype).removeprefix("torch."),
            "device": str(model.lm.device), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def cpu_flags() -> str:
    """The lscpu flags that decide dtype and kernels (avx2, avx512*, amx)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return " ".join(f for f in line.split() if f.startswith(("avx", "amx", "fma", "f16c")))
