"""Logged runs as training material: their episodes, personas and memories, read from each run
folder (SQLite, characters.jsonl, chromadb), with checks that the runs can be combined."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.bank import load_bank
from agents.persona import MAX_FACTS, Persona, PersonaError
from core.errors import UsageError
from core.records import Episode
from environment.store import SQLiteEpisodeStore


@dataclass(frozen=True)
class Memory:
    """One stored memory of a character (``owner`` is its persona id), at simulation time ``created``."""

    id: str
    owner: str
    text: str
    kind: str
    created: float


@dataclass(frozen=True)
class Run:
    """One run folder. Episode ids are ``<run name>/<id>`` and ``meta["run"]`` names the run."""

    name: str
    path: str
    episodes: tuple[Episode, ...]
    personas: dict[str, Persona]  # by character name, as they were in this run
    memories: dict[str, Memory]  # by memory id (the ids in Turn.memory_ids)


@dataclass(frozen=True)
class RunData:
    """Episodes of one or more runs with the personas and memory texts needed to rebuild prompts."""

    runs: tuple[Run, ...]
    _by_name: dict[str, Run] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {run.name: run for run in self.runs})

    @property
    def episodes(self) -> tuple[Episode, ...]:
        return tuple(e for run in self.runs for e in run.episodes)

    def run_of(self, episode: Episode) -> Run:
        return self._by_name[episode.meta["run"]]

    def persona(self, episode: Episode, name: str) -> Persona:
        return self.run_of(episode).personas[name]

    def characters(self) -> list[str]:
        """Persona ids of everyone who took part in an episode, sorted."""
        return sorted({character_id(e, name) for e in self.episodes for name in e.participants})


def character_id(episode: Episode, name: str) -> str:
    """A speaker's identity across runs: its persona id (the name when none is recorded)."""
    return episode.character_ids.get(name, name)


def load_runs(run_dirs: Sequence[Path], embedder: Any = None) -> RunData:
    """Read run folders (episodes from SQLite, else episodes.jsonl; characters.jsonl; memory texts
    from ``memory/``). ``embedder`` opens chromadb; default: the bundled MiniLM, never loaded."""
    if not run_dirs:
        raise UsageError("no run folders given: name at least one folder holding episodes.sqlite")
    folders = [Path(d).expanduser().resolve() for d in run_dirs]
    if len(set(folders)) != len(folders):
        raise UsageError(f"a run folder is given twice: {', '.join(map(str, folders))}")
    for folder in folders:
        check_run(folder)
    names = _run_names(folders)
    runs = tuple(_load_run(name, folder, embedder) for name, folder in zip(names, folders, strict=True))
    _check_identities(runs)
    return RunData(runs)


def check_run(folder: Path) -> None:
    """A UsageError unless ``folder`` holds a run's episodes."""
    if not folder.is_dir():
        problem = "not a folder" if folder.exists() else "not found"
        raise UsageError(f"{folder} is not a run folder: {problem}")
    if not (folder / "episodes.sqlite").is_file() and not (folder / "episodes.jsonl").is_file():
        raise UsageError(f"{folder} is not a run folder: it holds no episodes.sqlite or episodes.jsonl")


def _run_names(folders: list[Path]) -> list[str]:
    """The shortest trailing paths that tell the folders apart (sweeps reuse folder names)."""
    for depth in range(1, max(len(f.parts) for f in folders) + 1):
        names = ["/".join(f.parts[-depth:]) for f in folders]
        if len(set(names)) == len(names):
            return names
    return [str(f) for f in folders]


def _load_run(name: str, folder: Path, embedder: Any) -> Run:
    episodes = tuple(_tag(e, name) for e in _read_episodes(folder))
    personas = _read_personas(folder)
    for episode in episodes:
        for speaker in episode.participants:
            if speaker not in personas:
                personas[speaker] = _persona_from_episode(episode, speaker, name)
    owners = sorted({p.id for p in personas.values()})
    memories = _read_memories(folder / "memory", owners, embedder) if (folder / "memory").is_dir() else {}
    return Run(name, str(folder), episodes, personas, memories)


def _read_episodes(folder: Path) -> list[Episode]:
    if (folder / "episodes.sqlite").is_file():
        try:
            store = SQLiteEpisodeStore(folder / "episodes.sqlite")
            try:
                return store.episodes()
            finally:
                store.close()
        except sqlite3.DatabaseError as error:
            path = folder / "episodes.sqlite"
            raise UsageError(f"{path}: not a readable episode store ({error})") from error
    episodes = []
    path = folder / "episodes.jsonl"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                episodes.append(Episode.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as error:
                raise UsageError(f"{path}, line {number}: not an episode ({error})") from error
    return episodes


def _tag(episode: Episode, run: str) -> Episode:
    meta = {**episode.meta, "run": run, "source_id": episode.id}
    return replace(episode, id=f"{run}/{episode.id}", meta=meta)


def _read_personas(folder: Path) -> dict[str, Persona]:
    path = folder / "characters.jsonl"
    return {p.name: p for p in load_bank(path)} if path.is_file() else {}


def _persona_from_episode(episode: Episode, name: str, run: str) -> Persona:
    """A persona from the facts an episode recorded, for runs without characters.jsonl."""
    facts = tuple(episode.personas.get(name, ()))[:MAX_FACTS]
    try:
        return Persona(id=character_id(episode, name), name=name, facts=facts, source=f"episode:{run}")
    except PersonaError as error:
        raise UsageError(f"run {run}: episode {episode.id} records no usable persona for {name} "
                         f"and characters.jsonl does not list them ({error})") from error


def _read_memories(path: Path, owners: Sequence[str], embedder: Any) -> dict[str, Memory]:
    from memory.chroma import ChromaMemoryStore
    from memory.embedder import SentenceEmbedder
    from memory.retrieval import Forgetting, RetrievalWeights

    store = ChromaMemoryStore(str(path), embedder or SentenceEmbedder(), RetrievalWeights(), Forgetting())
    return {m["id"]: Memory(m["id"], owner, m["text"] or "", str(m.get("kind", "")),
                            float(m.get("created", 0.0)))
            for owner in owners for m in store.memories(owner)}


def _check_identities(runs: Sequence[Run]) -> None:
    """One persona id must be one character (same name and facts) in every run."""
    seen: dict[str, tuple[Persona, str]] = {}
    for run in runs:
        for persona in run.personas.values():
            first, where = seen.setdefault(persona.id, (persona, run.name))
            if (first.name, first.facts) != (persona.name, persona.facts):
                raise UsageError(f"persona id {persona.id!r} is two different characters: {first.name} in "
                                 f"run {where}, {persona.name} in run {run.name}; use runs from one bank")
