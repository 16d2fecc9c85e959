"""Inference servers Salon starts itself, on 127.0.0.1 only (core/processes.py): llama.cpp's
`llama-server` (built by `make llama-server`) and `vllm serve`."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
from collections.abc import Sequence
from pathlib import Path

from core.errors import UsageError
from core.processes import ServerProcess, free_port

log = logging.getLogger(__name__)
LLAMA_CPP_VERSION = "0.3.36"  # the llama-cpp-python sdist whose vendored llama.cpp is built
BUILD_HINT = "make llama-server"  # builds llama.cpp's server from a pinned PyPI sdist (~5 min, 2 cores)
# the CPU flags the native build is tuned to: a machine of another kind builds its own binary
KIND_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "fma", "f16c", "asimd", "sve")


def cache_root() -> Path:
    """Where built servers are kept (the same rule as scripts/build_llama_server.sh)."""
    if os.environ.get("SALON_CACHE"):
        return Path(os.environ["SALON_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "salon"


def cpu_kind() -> str:
    """A short digest of this CPU's instruction-set flags (the build script's rule)."""
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    text = "".join(f"{f}-" for f in sorted(flags & set(KIND_FLAGS)))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def llama_cpp_home() -> Path:
    """This machine's build folder: bin/llama-server, convert_lora_to_gguf.py, gguf-py/."""
    return cache_root() / "llama.cpp" / f"{LLAMA_CPP_VERSION}-{platform.machine()}-{cpu_kind()}"


def llama_server_path(explicit: str | None = None) -> Path:
    """The llama-server to start: ``explicit``, else this machine's build."""
    return Path(explicit).expanduser() if explicit else llama_cpp_home() / "bin" / "llama-server"


def llama_server_binary(explicit: str | None = None) -> Path:
    """`llama_server_path`, checked; one line if it is absent."""
    path = llama_server_path(explicit)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise UsageError(f"llama-server is not built at {path}: run `{BUILD_HINT}`")
    return path


def llama_server(gguf: Path, *, binary: str | None = None, slots: int = 16, context_per_slot: int = 2048,
                 threads: int | None = None, loras: Sequence[Path] = (), alias: str = "salon",
                 extra_args: Sequence[str] = (), log_path: Path | None = None,
                 startup_timeout: float = 120.0) -> ServerProcess:
    """llama-server for ``gguf`` with ``slots`` parallel sequences (continuous batching), its
    prompt cache, and ``loras`` loaded unapplied (a request picks its own by id)."""
    port = free_port()
    command = [str(llama_server_binary(binary)), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
               "-np", str(slots), "-c", str(slots * context_per_slot), "--no-webui", "--alias", alias,
               "-t", str(threads or os.cpu_count() or 1), "--no-slots"]
    for lora in loras:
        command += ["--lora", str(lora)]
    if loras:
        command.append("--lora-init-without-apply")
    return ServerProcess([*command, *extra_args], port, "/health", startup_timeout, log_path)


def vllm_server(model: str, *, adapters: dict[str, str] | None = None, extra_args: Sequence[str] = (),
                log_path: Path | None = None, startup_timeout: float = 600.0) -> ServerProcess:
    """`vllm serve` with automatic prefix caching and each adapter served by its own name."""
    executable = shutil.which("vllm")
    if executable is None:
        raise UsageError("vLLM is not installed: `pip install vllm` on a GPU machine, then model=vllm")
    port = free_port()
    command = [executable, "serve", model, "--host", "127.0.0.1", "--port", str(port),
               "--enable-prefix-caching", "--served-model-name", "salon"]
    if adapters:
        command += ["--enable-lora", "--lora-modules", *(f"{n}={path}" for n, path in adapters.items())]
    return ServerProcess([*command, *extra_args], port, "/health", startup_timeout, log_path,
                         env={"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
