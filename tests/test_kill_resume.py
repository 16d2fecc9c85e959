"""Exact resume after SIGKILL: a sampled 2-round run is killed at several points (inside a
turn, between the critic and the store, while an episode's memories are written, while its
recalls are reinforced), resumed after each kill, and finishes equal to an uninterrupted run:
the same episodes (ids, speakers, texts, scores) and the same memory store, memory by memory."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_py

# the default schedule in process (lockstep) and its batching: a resumed round generates its
# stored episodes again beside the others, so that every batch is as it was
RUN = ["experiment=smoke", "simulation.rounds=2", "simulation.progress=false", "conversation.candidates=2",
       "model.max_new_tokens=24"]
# (kill point, on its n-th time in that process): see tests/kill_at.py. Each round has 2 episodes
# of 2 turns, one batched step per turn, and a resumed round first takes back what its stored
# episodes' commits left in memory. 1: dies before round 0's second insert. 2: re-runs round 0
# (episode 0 again beside episode 1) and dies before its second step. 3: the same, then dies
# halfway through writing episode 0's memories (its commit again). 4: the same, stores episode 1;
# reinforcement updates: the rewind, episodes 0 and 1, then round 1's first episode, halfway
# through which it dies. The last resume re-runs round 1 (episode 0 again) and finishes.
KILLS = [("store", 2), ("turn", 2), ("memory", 1), ("recalls", 4)]
TIMEOUT = 600


def killed_at(point: str, n: int, arguments: list[str]) -> subprocess.CompletedProcess:
    return run_py(point, str(n), *arguments, script="tests/kill_at.py", timeout=TIMEOUT)


def salon(arguments: list[str]) -> subprocess.CompletedProcess:
    return run_py(*arguments, timeout=TIMEOUT)


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
    resumes = []
    for index, (point, n) in enumerate(KILLS):
        arguments = [*RUN, f"hydra.run.dir={killed}"] if index == 0 else [f"resume={killed}"]
        resumes.append(killed_at(point, n, arguments))
    resumes.append(salon([f"resume={killed}"]))
    assert resumes[-1].returncode == 0, resumes[-1].stderr[-3000:]
    return whole, killed, resumes


def test_every_kill_point_was_reached(runs) -> None:
    assert [r.returncode for r in runs[2][:-1]] == [-signal.SIGKILL] * len(KILLS)


def test_resumed_rounds_generated_their_stored_episodes_again_and_the_same(runs) -> None:
    logs = [r.stdout + r.stderr for r in runs[2]]
    replayed = [i for i, text in enumerate(logs) if "stored episodes are generated again" in text]
    assert replayed == [1, 2, 3, 4]  # resumes into round 0 (three times) and into round 1
    assert not any("came out differently" in text for text in logs)


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


# The independent schedule (served models' default) commits each episode as soon as it has
# finished. One episode at a time (concurrency 1), each prompt alone, so the run is exact; the
# society has 3 pairs of 2 turns, and the kill comes inside the third episode's first turn.
ONE_BY_ONE = ["experiment=smoke", "society.size=6", "simulation.progress=false",
              "conversation.schedule=independent", "conversation.concurrency=1", "model.max_batch_size=1",
              "conversation.candidates=1", "model.max_new_tokens=24"]


def stored_rows(folder: Path) -> tuple[list[str], list[int]]:
    import sqlite3

    connection = sqlite3.connect(folder / "episodes.sqlite")
    try:
        ids = [row[0] for row in connection.execute("SELECT id FROM episodes ORDER BY id")]
        done = [row[0] for row in connection.execute("SELECT round FROM rounds WHERE completed = 1")]
    finally:
        connection.close()
    return ids, done


def test_independent_episodes_are_committed_as_they_finish_and_a_kill_keeps_them(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    result = salon([*ONE_BY_ONE, f"hydra.run.dir={whole}"])
    assert result.returncode == 0, result.stderr[-3000:]
    died = killed_at("turn", 5, [*ONE_BY_ONE, f"hydra.run.dir={killed}"])
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    ids, done = stored_rows(killed)
    assert ids == ["r000-e000", "r000-e001"] and done == []  # the round was still open
    assert {m["episode_id"] for _, m in memories(killed).values() if m.get("episode_id")} >= set(ids)
    resumed = salon([f"resume={killed}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert episodes(killed) == episodes(whole)
    assert memories(killed) == memories(whole)
