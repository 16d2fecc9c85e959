"""Which device and dtype to compute on, chosen by config (never hard-coded): 'auto' picks a
GPU where there is one and bfloat16 where the hardware computes it natively."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICES = "auto, cpu, cuda, cuda:<n> or mps"


DTYPES = ("auto", "bfloat16", "float16", "float32")


def is_device(value: object) -> bool:
    return isinstance(value, str) and bool(DEVICE.fullmatch(value))


def resolve_device(device: str) -> str:
    """'auto' picks CUDA, then Apple MPS, then CPU; anything else is passed to torch as is."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:  # -> torch.dtype
    """'auto': bfloat16 where the hardware computes it natively, else float16/float32."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (avx512_bf16 or AMX): ~2x faster than
    float32 there; elsewhere bfloat16 is emulated and slower."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return "avx512_bf16" in flags or "amx_bf16" in flags
