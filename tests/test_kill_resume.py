"""Exact resume after SIGKILL: a sampled 2-round run is killed at several points (inside a
turn, between the critic and the store, while an episode's memories are written, while its
recalls are reinforced), resumed after each kill, and finishes equal to an uninterrupted run:
the same episodes (ids, speakers, texts, scores) and the same memory store, memory by memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT

# each prompt alone (model.max_batch_size=1), so generation does not depend on the batch (README,
# Reproducibility); independent episodes, whose kill points are counted below
RUN = ["experiment=smoke", "simulation.rounds=2", "simulation.progress=false", "conversation.candidates=2",
       "model.max_batch_size=1", "conversation.schedule=independent"]
# (kill point, on its n-th time in that process): see tests/kill_at.py. Round 0 has 2 episodes of
# 2 turns, so turn 3 is inside round 0; the 2nd insert is round 0's second episode; the resume
# after that re-runs only that episode and dies halfway through writing its memories; the next
# one replays both stored episodes (2 reinforcement updates), runs round 1 and dies halfway
# through round 1's first reinforcement; the last resume finishes.
KILLS = [("turn", 3), ("store", 2), ("memory", 1), ("recalls", 3)]
TIMEOUT = 600


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def killed_at(point: str, n: int, arguments: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(ROOT / "tests" / "kill_at.py"), point, str(n), *arguments], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=TIMEOUT)


def salon(arguments: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "run.py", *arguments], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=TIMEOUT)


def episodes(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]


def memories(folder: Path) -> dict[str, tuple]:
    import chromadb
    from chromadb.api.client import SharedSystemClient

    client = chromadb.PersistentClient(path=str(folder / "memory"))
    try:
        found = client.get_collection("memories").get(include=["documents", "metadatas"])
    finally:
        SharedSystemClient.clear_system_cache()
    return {i: (d, m) for i, d, m in zip(found["ids"], found["documents"], found["metadatas"], strict=True)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[int]]:
    whole, killed = tmp_path_factory.mktemp("whole") / "run", tmp_path_factory.mktemp("killed") / "run"
    result = salon([*RUN, f"hydra.run.dir={whole}"])
    assert result.returncode == 0, result.stderr[-3000:]
    codes = []
    for index, (point, n) in enumerate(KILLS):
        arguments = [*RUN, f"hydra.run.dir={killed}"] if index == 0 else [f"resume={killed}"]
        codes.append(killed_at(point, n, arguments).returncode)
    result = salon([f"resume={killed}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return whole, killed, codes


def test_every_kill_point_was_reached(runs) -> None:
    assert runs[2] == [-signal.SIGKILL] * len(KILLS)


def test_the_killed_and_resumed_run_equals_the_uninterrupted_one(runs) -> None:
    whole, killed, _ = runs
    expected, found = episodes(whole), episodes(killed)
    assert [e["id"] for e in found] == [e["id"] for e in expected] == \
        ["r000-e000", "r000-e001", "r001-e000", "r001-e001"]
    for mine, theirs in zip(found, expected, strict=True):
        said = [(t["speaker"], t["text"]) for t in mine["turns"]]
        assert said == [(t["speaker"], t["text"]) for t in theirs["turns"]]
        assert mine == theirs  # everything: roles, scene, recalled memories, tokens, scores


def test_the_memory_store_equals_the_uninterrupted_one(runs) -> None:
    whole, killed, _ = runs
    expected, found = memories(whole), memories(killed)
    assert found == expected
    reinforced = [m for _, m in expected.values() if m["strength"] > 3.0]
    assert reinforced, "no memory was recalled and reinforced: the test would not see a double reinforcement"
