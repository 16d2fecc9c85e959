"""Many `python run.py <arguments>` starts for the import cost of one (tests/test_bad_input.py).

A driver process imports Salon's task modules once, then runs each argument list as run.py's
`__main__` in a forked child with its own argv, environment, stdout, stderr and exit code, so a
start costs a fork instead of ~2-5 s of imports on a busy 2-core machine.

    python -m tests.forked_runs cases.json results.json

cases: ``[{"arguments": [...], "env": {...}}, ...]``; results, in the same order:
``[{"returncode": int | None, "stdout": str, "stderr": str, "seconds": float}, ...]``
(``returncode`` None: the child ran past the timeout and was killed with its process group).
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

import yaml

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60.0  # per start: far above a check that fails, far below a run that does work


LAZY_IMPORTS = ("torch", "chromadb")  # imported inside the checks (the model and memory store)


def preload() -> None:
    """Import what run.py and the tasks' `check`s import: Hydra, the task modules, torch, chromadb."""
    modules = ["environment.cli", *LAZY_IMPORTS]
    for path in sorted((ROOT / "conf" / "task").glob("*.yaml")):
        modules.append(yaml.safe_load(path.read_text(encoding="utf-8"))["_target_"].rpartition(".")[0])
    for module in modules:
        importlib.import_module(module)


def _child(arguments: list[str], env: dict[str, str], out: int, err: int) -> NoReturn:
    """Run run.py as `__main__` with ``arguments``; exit as `python run.py` would."""
    code = 1
    try:
        os.setpgid(0, 0)  # anything it starts is killed with it on a timeout
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.environ.update(env)
        sys.argv = ["run.py", *arguments]
        runpy.run_path(str(ROOT / "run.py"), run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_code(code: object) -> int:
    """As Python exits on SystemExit(code): None is 0, a number itself, anything else printed and 1."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def run_case(arguments: list[str], env: dict[str, str], timeout: float = TIMEOUT_S) -> dict[str, Any]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(arguments, env, out.fileno(), err.fileno())
        returncode = _wait(pid, timeout)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return {"returncode": returncode, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace"), "seconds": round(seconds, 2)}


def run_many(cases: list[dict[str, Any]], python: str, env: dict[str, str],
             folder: Path) -> list[dict[str, Any]]:
    """The driver in a fresh process (the test process stays unforked): one result per case."""
    given, taken = folder / "cases.json", folder / "results.json"
    given.write_text(json.dumps(cases), encoding="utf-8")
    done = subprocess.run([python, "-m", "tests.forked_runs", str(given), str(taken)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120 + TIMEOUT_S * len(cases))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(taken.read_text(encoding="utf-8"))


def main(given: str, taken: str) -> None:
    cases = json.loads(Path(given).read_text(encoding="utf-8"))
    preload()
    results = [run_case(case["arguments"], case.get("env", {})) for case in cases]
    Path(taken).write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
