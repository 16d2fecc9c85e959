"""The SQLite episode store: atomic appends, export, round checkpoints for resume, metadata."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from core.records import Episode, Scene, Scores, Turn
from environment.store import SQLiteEpisodeStore

pytestmark = pytest.mark.fast


def make_episode(eid: str, round_index: int = 0, overall: float | None = 3.5) -> Episode:
    scores = None if overall is None else Scores(
        {"mood_improved": math.nan, "naturalness": overall}, {"mood_improved": "n/a", "naturalness": "ok"},
        overall)
    return Episode(
        id=eid, round=round_index, participants=("Ann", "Bob"),
        personas={"Ann": ("i bake bread.",), "Bob": ("i fix bikes.",)},
        roles={"Ann": "peer", "Bob": "peer"},
        turns=(Turn("Ann", "Hello, I bake bread. Ünïcode ✓.", ("m1",), 100, 12),
               Turn("Bob", "", failed=True, error="empty"), Turn("Bob", "I fix bikes.", (), 101, 5)),
        model="test-model", character_ids={"Ann": "a-1", "Bob": "b-1"},
        scene=Scene("a bookshop", "Both reached for the same book."), stop_reason="max_turns",
        scores=scores)


@pytest.fixture
def store(tmp_path: Path):
    opened = SQLiteEpisodeStore(tmp_path / "run" / "episodes.sqlite")
    yield opened
    opened.close()


def test_append_then_read_back_equal_episodes(store: SQLiteEpisodeStore) -> None:
    episodes = [make_episode("r001-e000", 1), make_episode("r000-e001", 0, None),
                make_episode("r000-e000", 0)]
    for episode in episodes:
        store.append(episode)
    assert store.count() == 3 and store.ids() == {e.id for e in episodes}
    back = store.episodes()
    assert [e.id for e in back] == ["r000-e000", "r000-e001", "r001-e000"]  # by round, then id
    assert [e.to_dict() for e in back] == [e.to_dict() for e in sorted(episodes, key=lambda e: e.id)]
    assert [e.id for e in store.episodes(round_index=0)] == ["r000-e000", "r000-e001"]
    assert store.episodes(round_index=5) == []


def test_duplicate_id_is_rejected_and_the_first_is_kept(store: SQLiteEpisodeStore) -> None:
    store.append(make_episode("e1", overall=2.0))
    with pytest.raises(sqlite3.IntegrityError):
        store.append(make_episode("e1", overall=5.0))
    assert store.count() == 1 and store.episodes()[0].scores.overall == 2.0
    assert not store.connection.in_transaction  # the failed append was rolled back
    store.append(make_episode("e2"))
    assert store.ids() == {"e1", "e2"}


def test_a_failing_append_leaves_nothing_behind(store: SQLiteEpisodeStore) -> None:
    broken = Episode(**{**make_episode("bad").__dict__, "meta": {"not json": object()}})
    with pytest.raises(TypeError):
        store.append(broken)
    assert store.count() == 0 and not store.connection.in_transaction
    store.append(make_episode("good"))
    assert store.ids() == {"good"}


def test_appended_episodes_are_committed_for_other_readers(store: SQLiteEpisodeStore) -> None:
    store.append(make_episode("e1"))
    # A second connection (as another process would open it) sees the row right away.
    other = sqlite3.connect(store.path)
    try:
        rows = other.execute("SELECT id, round, overall, body FROM episodes").fetchall()
    finally:
        other.close()
    assert [(r[0], r[1], r[2]) for r in rows] == [("e1", 0, 3.5)]
    assert json.loads(rows[0][3])["id"] == "e1"


def test_export_jsonl_lines_parse_back_to_equal_episodes(store: SQLiteEpisodeStore, tmp_path: Path) -> None:
    episodes = [make_episode(f"r{r:03d}-e{i:03d}", r) for r in (1, 0) for i in (1, 0)]
    for episode in episodes:
        store.append(episode)
    target = tmp_path / "run" / "episodes.jsonl"
    assert store.export_jsonl(target) == 4
    lines = target.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
    parsed = [Episode.from_dict(json.loads(line)) for line in lines]
    assert [e.id for e in parsed] == ["r000-e000", "r000-e001", "r001-e000", "r001-e001"]
    by_id = {e.id: e for e in episodes}
    assert all(p.to_dict() == by_id[p.id].to_dict() for p in parsed)
    assert parsed[0].turns[0].text == "Hello, I bake bread. Ünïcode ✓."
    assert sorted(p.name for p in target.parent.iterdir() if p.suffix == ".tmp") == []


def test_export_replaces_the_old_file_and_cleans_up_on_failure(store: SQLiteEpisodeStore,
                                                               tmp_path: Path) -> None:
    target = tmp_path / "run" / "episodes.jsonl"
    target.write_text("stale\n")
    assert store.export_jsonl(target) == 0 and target.read_text() == ""
    blocked = tmp_path / "run" / "a-folder"
    blocked.mkdir()
    (blocked / "inside").write_text("x")
    store.append(make_episode("e1"))
    with pytest.raises(OSError):
        store.export_jsonl(blocked)  # cannot rename a file over a non-empty folder
    assert [p.name for p in blocked.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_round_bookkeeping(store: SQLiteEpisodeStore) -> None:
    assert store.completed_rounds() == 0
    store.begin_round(0)
    store.begin_round(0)  # a second begin is harmless
    assert store.completed_rounds() == 0  # begun, not complete
    store.complete_round(0)
    store.begin_round(1)
    assert store.completed_rounds() == 1
    store.begin_round(2)
    store.complete_round(2)  # round 1 is missing: round 2 does not count yet
    assert store.completed_rounds() == 1
    store.complete_round(1)
    assert store.completed_rounds() == 3
    store.complete_round(7)  # never begun: nothing to complete
    assert store.completed_rounds() == 3


def test_meta_and_everything_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "episodes.sqlite"
    first = SQLiteEpisodeStore(path)
    assert first.get_meta("seeded") is None and first.get_meta("seeded", "no") == "no"
    first.set_meta("seeded", "1")
    first.set_meta("wall_seconds", "1.5")
    first.set_meta("wall_seconds", "2.5")
    first.append(make_episode("e1"))
    first.begin_round(0)
    first.complete_round(0)
    first.close()

    second = SQLiteEpisodeStore(path)
    try:
        assert second.get_meta("seeded") == "1" and second.get_meta("wall_seconds") == "2.5"
        assert second.ids() == {"e1"} and second.completed_rounds() == 1
    finally:
        second.close()
