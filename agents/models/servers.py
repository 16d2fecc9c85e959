"""Inference servers Salon starts itself: llama.cpp's `llama-server` and `vllm serve`, on
127.0.0.1 only, one child process each, stopped on exit, on Ctrl-C and when Salon is killed
(Linux: the child gets SIGTERM when its parent dies, so no server outlives its run)."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import SalonError, UsageError

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux prctl(PR_SET_PDEATHSIG, SIGTERM): the server ends when Salon does, even on kill -9."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class ServerProcess:
    """A server started with ``command`` (which must listen on 127.0.0.1:``port``), healthy
    when ``health_path`` answers 200; its output goes to ``log_path``."""

    command: Sequence[str]
    port: int
    health_path: str = "/health"
    startup_timeout: float = 120.0
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        if self._process is not None:
            return self
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="salon-server-", suffix=".log")[1])
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                list(self.command), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, preexec_fn=_die_with_parent if os.name == "posix" else None)
        atexit.register(self.stop)
        self._wait_healthy()
        log.info("server on %s (pid %d, log %s)", self.base_url, self._process.pid, self.log_path)
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                self.stop()
                raise SalonError(f"{Path(self.command[0]).name} exited at start (code "
                                 f"{self._process.returncode}): {self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                    self.base_url + self.health_path, timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise SalonError(f"{Path(self.command[0]).name} was not healthy within {self.startup_timeout:.0f} s: "
                         f"{self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
        command += ["--enable-lora", "--lora-modules", *(f"{name}={path}" for name, path in adapters.items())]
    return ServerProcess([*command, *extra_args], port, "/health", startup_timeout, log_path)
