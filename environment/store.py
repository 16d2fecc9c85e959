"""The episode store (core.seams.EpisodeStore): SQLite in the run folder, one transaction per
episode."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from core.files import atomic_file
from core.records import Episode

SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    id TEXT PRIMARY KEY,
    round INTEGER NOT NULL,
    overall REAL,
    body TEXT NOT NULL,
    stored_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX IF NOT EXISTS episodes_round ON episodes(round);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,
    rng_state TEXT NOT NULL,  -- '{}' since the RNG tree; kept for older run folders
    completed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SQLiteEpisodeStore:
    """Episodes (JSON bodies), per-round RNG checkpoints for resume, and run metadata."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.executescript(SCHEMA)

    def close(self) -> None:
        self.connection.close()

    def append(self, episode: Episode) -> None:
        """Store one episode atomically; a second episode with the same id is an error."""
        overall = episode.scores.overall if episode.scores and episode.scores.rated else None
        with self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.execute(
                "INSERT INTO episodes (id, round, overall, body) VALUES (?, ?, ?, ?)",
                (episode.id, episode.round, overall, json.dumps(episode.to_dict())))

    def ids(self) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT id FROM episodes")}

    def episodes(self, round_index: int | None = None) -> list[Episode]:
        return list(self.iter_episodes(round_index))

    def iter_episodes(self, round_index: int | None = None) -> Iterator[Episode]:
        query, args = "SELECT body FROM episodes ORDER BY round, id", ()
        if round_index is not None:
            query, args = "SELECT body FROM episodes WHERE round = ? ORDER BY id", (round_index,)
        for (body,) in self.connection.execute(query, args):
            yield Episode.from_dict(json.loads(body))

    def count(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM episodes").fetchone()[0])

    def export_jsonl(self, path: Path) -> int:
        """Write every episode as one JSON line, atomically (temp file, then rename)."""
        count = 0
        with atomic_file(path) as handle:
            for (body,) in self.connection.execute("SELECT body FROM episodes ORDER BY round, id"):
                handle.write(body + "\n")
                count += 1
        return count

    def begin_round(self, round_index: int) -> None:
        """Record that a round has started, once. (Its randomness needs no checkpoint: each
        round draws from its own streams of the RNG tree, core/rng.py.)"""
        with self.connection:
            self.connection.execute("INSERT OR IGNORE INTO rounds (round, rng_state) VALUES (?, '{}')",
                                    (round_index,))

    def complete_round(self, round_index: int) -> None:
        with self.connection:
            self.connection.execute("UPDATE rounds SET completed = 1 WHERE round = ?", (round_index,))

    def completed_rounds(self) -> int:
        """How many rounds, counted from 0, are complete (the next round to run)."""
        rows = self.connection.execute("SELECT round FROM rounds WHERE completed = 1 ORDER BY round")
        done = 0
        for (index,) in rows:
            if index != done:
                break
            done += 1
        return done

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.connection:
            self.connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
