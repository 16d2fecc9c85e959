"""A child server process on 127.0.0.1: started, checked healthy, stopped on exit, on Ctrl-C and
when Salon is killed (Linux: the child gets SIGTERM when its parent dies, so no server outlives
its run). llama-server, `vllm serve` and `chroma run` are started through it."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import SalonError

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux prctl(PR_SET_PDEATHSIG, SIGTERM): the server ends when Salon does, even on kill -9."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _spawn(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Popen from one long-lived thread. Linux sends the parent-death signal when the *thread*
    that forked the child ends, and servers start lazily from whichever thread first needs them
    (an episode's worker, which ends with its round): a server started there was killed after
    the first round. The spawner thread lives as long as the process."""
    if os.name != "posix":
        return subprocess.Popen(command, **options)
    done: Future[subprocess.Popen[bytes]] = Future()
    _SPAWNS.put((command, options, done))
    _spawner_started()
    return done.result()


_SPAWNS: queue.Queue[tuple[list[str], dict[str, Any], Future[Any]]] = queue.Queue()
_SPAWNER: list[threading.Thread] = []  # the one spawner thread, started on first use
_SPAWNER_LOCK = threading.Lock()


def _spawner_started() -> None:
    with _SPAWNER_LOCK:
        if not _SPAWNER:
            thread = threading.Thread(target=_spawn_forever, name="salon-spawner", daemon=True)
            thread.start()
            _SPAWNER.append(thread)


def _spawn_forever() -> None:
    while True:
        command, options, done = _SPAWNS.get()
        try:
            done.set_result(subprocess.Popen(command, preexec_fn=_die_with_parent, **options))
        except BaseException as error:  # the caller sees it
            done.set_exception(error)


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
            self._process = _spawn(list(self.command), stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env={**os.environ, **self.env})
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
