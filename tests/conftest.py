"""Shared fixtures. Heavy parts (the embedded chat model, MiniLM) load once per session."""

from __future__ import annotations

import atexit
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.warm_starts import WarmStarts

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning made
# torch steps 2-15x slower (measured); on an idle machine it costs nothing measurable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# Under pytest-xdist each worker (and the run.py processes its tests start) gets its share of the
# cores, not all of them: two smoke runs side by side on 2 cores took 51.6 s with one thread each
# and 58.8 s with two (measured, AVX2 machine). Set before anything imports torch.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PERSONACHAT = SHARED_DATA / "personachat" / "valid_both_original_no_cands.txt"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON if VENV_PYTHON.is_file() else sys.executable)


def salon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, offline, with ``extra``."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", **(extra or {})}


@functools.cache
def warm_starts() -> WarmStarts:
    """This worker's warm-start server (tests/warm_starts.py), started on first use."""
    server = WarmStarts(PYTHON)
    atexit.register(server.close)
    return server


def run_py(*arguments: str, timeout: float = 600, env: dict[str, str] | None = None, script: str = "run.py",
           stdin: str = "") -> subprocess.CompletedProcess:
    """`python <script> <arguments>` from the repo root, offline, output captured; ``env`` adds
    variables, ``stdin`` is what it reads. A warm start: the fork of a process that has made
    run.py's imports already (tests/warm_starts.py), so a start costs no imports."""
    return warm_starts().run(ROOT / script, list(arguments), salon_env(env), ROOT, timeout, stdin)


def cold_run_py(*arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python run.py <arguments>` in a new interpreter, as a user starts it."""
    return subprocess.run([PYTHON, "run.py", *arguments], cwd=ROOT, env=salon_env(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model cache: the user's (reused across runs) unless SALON_CACHE says otherwise."""
    configured = os.environ.get("SALON_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "salon"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def embedder():
    from memory.embedder import SentenceEmbedder

    return SentenceEmbedder()


@pytest.fixture(scope="session")
def chat_model(cache_dir: Path):
    from agents.models.local import LocalChatModel

    return LocalChatModel(cache_dir=str(cache_dir), temperature=0.0)


@pytest.fixture(scope="session")
def contradiction_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding the critic's contradiction scorer, trained for real on Persona-Chat
    dev 40-199 (a quarter of an epoch: held-out AUC 0.99+ already) through run.py."""
    root = tmp_path_factory.mktemp("registry")
    result = run_py("task=train", "training.target=contradiction", "training.personachat_dialogues=[40,200]",
                    "training.scorer.epochs=0.25", f"paths.registry_root={root}",
                    f"hydra.run.dir={root / 'run'}", timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained contradiction:1" in result.stdout
    return root


def write_stored_run(folder: Path, personas: list, episodes: list) -> None:
    """A run folder as a simulation leaves it (its memories already in ``folder/memory``):
    characters.jsonl, config.yaml and the episodes in SQLite."""
    from agents.bank import save_bank
    from environment.store import SQLiteEpisodeStore

    save_bank(personas, folder / "characters.jsonl")
    (folder / "config.yaml").write_text("seed: 0\n")
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    try:
        for episode in episodes:
            store.append(episode)
    finally:
        store.close()


# The slowest files first: `make test` hands whole files to its workers (--dist loadfile) in
# collection order, so one that starts last sets the suite's wall time (longest job first).
SLOWEST_FIRST = ("test_learning_loop.py", "test_kill_resume.py", "test_llamacpp.py", "test_simulation.py",
                 "test_many_servers.py", "test_critic_validity.py", "test_serve_api.py", "test_budget.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
