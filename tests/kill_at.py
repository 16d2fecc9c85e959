"""`python tests/kill_at.py <point> <n> <run.py arguments>`: run.py in this process, which
kills itself with SIGKILL (no cleanup of any kind) at the n-th time it reaches ``point``:

- ``turn``: inside a turn, before the model is asked;
- ``store``: after the critic, before an episode's SQLite insert;
- ``memory``: halfway through writing an episode's memories into chromadb;
- ``recalls``: halfway through setting the reinforcement of an episode's recalls;
- ``registered``: right after a model is registered (before the loop records it).

A test harness, not part of Salon: it patches Salon's functions from outside."""

from __future__ import annotations

import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def counter(n: int) -> Callable[[], bool]:
    calls = [0]

    def reached() -> bool:
        calls[0] += 1
        return calls[0] == n

    return reached


def install(point: str, n: int) -> None:
    reached = counter(n)
    if point == "turn":
        import environment.engine as engine

        original = engine.take_turns

        def take_turns(*args: Any, **kwargs: Any) -> Any:
            if reached():
                die()
            return original(*args, **kwargs)

        engine.take_turns = take_turns
    elif point == "store":
        from environment.store import SQLiteEpisodeStore

        append = SQLiteEpisodeStore.append

        def append_or_die(self: SQLiteEpisodeStore, episode: Any) -> None:
            if reached():
                die()
            append(self, episode)

        SQLiteEpisodeStore.append = append_or_die  # type: ignore[method-assign]
    elif point == "registered":
        from training.registry import ModelRegistry

        register = ModelRegistry.register

        def register_then_die(self: ModelRegistry, *args: Any, **kwargs: Any) -> Any:
            registered = register(self, *args, **kwargs)
            if reached():
                die()
            return registered

        ModelRegistry.register = register_then_die  # type: ignore[method-assign]
    elif point in ("memory", "recalls"):
        install_collection_kill(point, reached)
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def install_collection_kill(point: str, reached: Callable[[], bool]) -> None:
    """Wrap chromadb's Collection.add (episode memories) or .update (reinforcement): write
    the first half of the rows, then die."""
    from chromadb.api.models.Collection import Collection

    name = "add" if point == "memory" else "update"
    original = getattr(Collection, name)

    def half_then_die(self: Any, ids: list[str], **kwargs: Any) -> Any:
        episode_rows = point == "recalls" or any(m.get("episode_id") for m in kwargs.get("metadatas") or [])
        if episode_rows and reached():
            half = max(1, len(ids) // 2)
            original(self, ids=ids[:half], **{k: v[:half] for k, v in kwargs.items() if v is not None})
            die()
        return original(self, ids=ids, **kwargs)

    setattr(Collection, name, half_then_die)


if __name__ == "__main__":
    point, count, *arguments = sys.argv[1:]
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    install(point, int(count))
    sys.argv = [str(ROOT / "run.py"), *arguments]
    runpy.run_path(str(ROOT / "run.py"), run_name="__main__")
