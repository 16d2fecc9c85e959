"""`python run.py ...` (and `python tests/kill_at.py ...`) for the tests, started as a fork of
a process that has already imported what run.py's tasks import, so that a start costs a fork
instead of the imports (torch, transformers, sentence-transformers, chromadb, peft, TRL,
datasets: about 8 s of CPU a start on an avx512_bf16 Zen 4, 11.7 s measured on an AVX2 Zen 3).
The suite took 11.6 minutes with warm starts and 17.5 without on the Zen 4 (2026-12-07).

Each pytest worker keeps one such server (`python -m tests.warm_starts`), started on first use.
Its child is a real process with its own pid, process group, argv, environment, working
directory and standard streams, which runs the script as `__main__` and ends as `python script`
ends (threads joined, atexit handlers run; an uncaught exception prints its traceback, exit code
1; SystemExit's code). A test can signal or SIGKILL it like any process.
The server never runs a model, and it checks at start that the imports began no Python
thread. What the imports read from the environment (HF_HUB_OFFLINE, ...) is what run.py sets
anyway; OMP_NUM_THREADS, which libgomp read at the server's import of torch, is applied again.

Protocol, one JSON object a line on the server's stdin, one answer a line on its stdout:
``{"start": {script, arguments, env, cwd, stdin, stdout, stderr}}`` -> ``{"pid": int}``;
``{"wait": pid, "timeout": seconds | null}`` -> ``{"returncode": int | null}`` (null: running).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import yaml

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sentence_transformers", "chromadb", "peft", "trl", "datasets",
         "langchain_openai")
RUN_PY_DEFAULTS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                   "OMP_WAIT_POLICY": "PASSIVE", "ANONYMIZED_TELEMETRY": "False"}


def preload() -> None:
    """Import run.py's modules, every task's module and the heavy libraries; refuse to serve if
    that started a Python thread (a fork would inherit its locks, held or not). The imports do
    start native threads: OpenBLAS's pools (numpy's, scipy's) and pyarrow's jemalloc background
    thread; both libraries register fork handlers (pthread_atfork) for this."""
    for name, value in RUN_PY_DEFAULTS.items():  # set before the imports read them, as run.py does
        os.environ.setdefault(name, value)
    modules = ["hydra", "environment.cli", "environment.runtime", *HEAVY]
    for path in sorted((ROOT / "conf" / "task").glob("*.yaml")):
        modules.append(yaml.safe_load(path.read_text(encoding="utf-8"))["_target_"].rpartition(".")[0])
    for module in modules:
        importlib.import_module(module)
    if threading.active_count() != 1:
        raise RuntimeError(f"the imports started threads, a fork is not safe: {threading.enumerate()}")


def serve() -> None:
    preload()
    answers = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the protocol's pipe
    for line in sys.stdin:
        request = json.loads(line)
        if "start" in request:
            answer = {"pid": fork(request["start"])}
        else:
            answer = {"returncode": wait(request["wait"], request.get("timeout"))}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def fork(request: dict[str, Any]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        become(request)
    return pid


def become(request: dict[str, Any]) -> NoReturn:
    """In the child: take the request's streams, folder, environment and argv, run the script
    as `__main__`, and end as the interpreter ends a script (`finish`)."""
    os.setpgid(0, 0)  # its own group, as a test's kill of the group takes all it started
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as a terminal's `python` has it
    os.chdir(request["cwd"])
    for fd, path, flags in ((0, request["stdin"], os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                            (2, request["stderr"], os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    fresh_streams()
    os.environ.clear()
    os.environ.update(request["env"])
    threads = request["env"].get("OMP_NUM_THREADS")
    if threads:  # libgomp read the variable when the server imported torch
        import torch

        torch.set_num_threads(int(threads))
    sys.argv = [request["script"], *request["arguments"]]
    sys.path[0] = str(Path(request["script"]).resolve().parent)  # as `python script` sets it
    try:
        runpy.run_path(request["script"], run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = exit_code(stop.code)
    except KeyboardInterrupt:
        code = -signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    finish(code)


def finish(code: int) -> NoReturn:
    """What the interpreter does after a script, up to the teardown of its modules, which is
    skipped (over a second with torch loaded, and nothing a test can observe): join the
    threads that are not daemons, run the atexit handlers, flush, exit with ``code`` (an
    uncaught Ctrl-C ends the process by SIGINT, as CPython does)."""
    threading._shutdown()  # type: ignore[attr-defined]  # private: the interpreter's own join
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if code == -signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def exit_code(code: object) -> int:
    """As Python exits on SystemExit(code): None is 0, a number itself, anything else printed and 1."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def fresh_streams() -> None:
    """New stream objects over fds 0-2, as a new interpreter makes them: nothing the server had
    buffered leaks into the child, and nothing of the child's stays in the server's buffers."""
    def stream(fd: int, mode: str, **options: Any) -> io.TextIOWrapper:
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        return io.TextIOWrapper(buffered, encoding=sys.__stdout__.encoding if sys.__stdout__ else "utf-8",
                                **options)

    sys.stdin = sys.__stdin__ = stream(0, "r")
    sys.stdout = sys.__stdout__ = stream(1, "w")
    sys.stderr = sys.__stderr__ = stream(2, "w", errors="backslashreplace", line_buffering=True)


def wait(pid: int, timeout: float | None) -> int | None:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


class WarmProcess:
    """A started child, as subprocess.Popen offers one: pid, poll(), wait(), send_signal(), kill()."""

    def __init__(self, server: WarmStarts, pid: int, files: tuple[Path, Path, Path]) -> None:
        self.server, self.pid, self.files = server, pid, files  # stdin, stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.wait(0, raising=False)

    def wait(self, timeout: float | None = None, raising: bool = True) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.ask({"wait": self.pid, "timeout": timeout})["returncode"]
        if self.returncode is None and raising:
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
        return self.returncode

    def send_signal(self, number: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, number)

    def kill(self) -> None:
        """SIGKILL to the child's group (it leads its own: all it started); a child that has
        ended is a zombie until `wait` reaps it, so its pid is not anyone else's yet."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    def output(self) -> tuple[str, str]:
        return read_text(self.files[1]), read_text(self.files[2])


def read_text(path: Path) -> str:
    return path.read_bytes().decode(errors="replace").replace("\r\n", "\n")


class WarmStarts:
    """The client: one server process, started on first use, gone when this process's end of
    its stdin closes."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.folder = Path(tempfile.mkdtemp(prefix="salon-warm-"))
        self.process: subprocess.Popen[str] | None = None
        self.count = 0

    def close(self) -> None:
        """End the server (its children live on until they end) and remove its files."""
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        process = self._server()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the warm-start server died: {read_text(self.folder / 'server.log')[-3000:]}")
        return json.loads(line)

    def _server(self) -> subprocess.Popen[str]:
        if self.process is None:
            with (self.folder / "server.log").open("wb") as log:
                self.process = subprocess.Popen(
                    [self.python, "-m", "tests.warm_starts"], cwd=ROOT, env={**os.environ, **RUN_PY_DEFAULTS},
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        return self.process

    def popen(self, script: str | Path, arguments: list[str], env: dict[str, str], cwd: Path = ROOT,
              stdin: str = "") -> WarmProcess:
        """Start ``script`` with ``arguments``; ``stdin`` is what it reads; its stdout and stderr
        go to files (`WarmProcess.output`)."""
        self.count += 1
        given, out, err = (self.folder / f"{self.count}.{name}" for name in ("in", "out", "err"))
        given.write_text(stdin, encoding="utf-8")
        for path in (out, err):
            path.touch()
        request = {"script": str(script), "arguments": [str(a) for a in arguments], "env": dict(env),
                   "cwd": str(cwd), "stdin": str(given), "stdout": str(out), "stderr": str(err)}
        return WarmProcess(self, self.ask({"start": request})["pid"], (given, out, err))

    def run(self, script: str | Path, arguments: list[str], env: dict[str, str], cwd: Path = ROOT,
            timeout: float | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """As subprocess.run([python, script, *arguments], capture_output=True, text=True, ...)."""
        process = self.popen(script, arguments, env, cwd, stdin)
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        except BaseException:  # Ctrl-C of the tests, perhaps mid-answer: the child does not outlive it
            process.kill()
            raise
        stdout, stderr = process.output()
        for path in process.files:
            path.unlink(missing_ok=True)
        return subprocess.CompletedProcess([str(script), *arguments], returncode, stdout, stderr)


if __name__ == "__main__":
    serve()
