"""Which characters a chat, an interview or the server talks to: a run's society (``run=``,
with the run's chromadb memory) or a bank (with a chat memory folder of its own)."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.bank import load_bank
from agents.character import Character
from agents.persona import ATTRIBUTE_CHOICES, Attributes, Persona
from agents.prompting import PromptBuilder
from core.errors import InvalidValue, UsageError
from core.records import MemoryRecord
from environment import build
from environment.store import SQLiteEpisodeStore
from environment.validation import MEMORY_CHECKS, check_values


class UnknownCharacter(LookupError):
    """No character (or more than one) answers to the given name or id."""


@dataclass
class CharacterDirectory:
    """Personas by id, sharing one memory store, chat model and prompt builder. Characters are
    built on first use; a character without memories gets its persona's seed memories then."""

    personas: list[Persona]
    memory: Any
    model: Any
    prompts: PromptBuilder
    now: float = 0.0
    seed_importance: float = 0.8
    run_folder: Path | None = None
    adapter: str = ""
    _built: dict[str, Character] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def find(self, key: str) -> Persona:
        return find_persona(self.personas, key)

    def by_id(self, character_id: str) -> Character:
        """Exactly this id (the API's `character/<id>` names), built and seeded on first use."""
        persona = next((p for p in self.personas if p.id == character_id), None)
        if persona is None:
            raise UnknownCharacter(f"no character with id {character_id!r}")
        with self._lock:
            if persona.id not in self._built:
                self._seed(persona)
                self._built[persona.id] = Character(persona, self.memory, self.model, adapter=self.adapter)
            return self._built[persona.id]

    def seed_all(self) -> int:
        """Give every character without memories its seed memories now (a server does this at
        start, so that no request writes memories before its reply succeeds)."""
        with self._lock:
            missing = [p for p in self.personas if p.memories and self.memory.count(p.id) == 0]
            records = [MemoryRecord(p.id, text, "seed", self.seed_importance, 0.0)
                       for p in missing for text in p.memories]
            return len(self.memory.add(records)) if records else 0

    def character(self, key: str) -> Character:
        return self.by_id(self.find(key).id)

    def chosen(self, key: str) -> Character:
        """`character=<key>` for a task: an unknown or ambiguous key is a one-line UsageError."""
        try:
            return self.character(key)
        except UnknownCharacter as error:
            raise UsageError(str(error).strip('"')) from None

    def _seed(self, persona: Persona) -> None:
        if persona.memories and self.memory.count(persona.id) == 0:
            self.memory.add([MemoryRecord(persona.id, text, "seed", self.seed_importance, 0.0)
                             for text in persona.memories])


def find_persona(personas: list[Persona], key: str) -> Persona:
    """By id, then by name (any case), then by a unique part of a name or id."""
    wanted = key.strip().casefold()
    for match in ([p for p in personas if p.id == key.strip()],
                  [p for p in personas if p.name.casefold() == wanted],
                  [p for p in personas if wanted in p.name.casefold() or wanted in p.id.casefold()]):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            names = ", ".join(f"{p.name} ({p.id})" for p in match[:6])
            raise UnknownCharacter(f"{key!r} matches several characters: {names}")
    sample = ", ".join(f"{p.name} ({p.id})" for p in personas[:6])
    raise UnknownCharacter(f"no character {key!r}; for example: {sample}")


def check_character(cfg: DictConfig) -> None:
    """`character=<key>` names exactly one character of the source (one line if not)."""
    try:
        find_persona(source_of(cfg)[0], character_key(cfg))
    except UnknownCharacter as error:
        raise UsageError(str(error).strip('"')) from None


def character_key(cfg: DictConfig) -> str:
    """`character=<name or id>`, or `character.id=<...>` next to `character.attributes.*`."""
    value = cfg.get("character")
    key = value.get("id") if isinstance(value, DictConfig) else value
    if key is None or not str(key).strip():
        raise UsageError("character is missing: give character=<name or id> (from the bank, or from "
                         "a run's society with run=<run folder>)")
    return str(key)


def character_attributes(cfg: DictConfig) -> Attributes:
    """`character.attributes.*` (MIRACLE), checked against the allowed values."""
    value = cfg.get("character")
    if not isinstance(value, DictConfig) or value.get("attributes") is None:
        return Attributes()
    given = {k: str(v) for k, v in OmegaConf.to_container(value.attributes).items() if v}
    unknown = sorted(set(given) - set(ATTRIBUTE_CHOICES))
    if unknown:
        raise UsageError(f"character.attributes.{unknown[0]} is unknown: allowed are "
                         f"{', '.join(ATTRIBUTE_CHOICES)}")
    try:
        return Attributes(**given)
    except InvalidValue as error:
        raise error.at("character.attributes") from None


def source_of(cfg: DictConfig) -> tuple[list[Persona], Path, Path | None]:
    """(personas, memory folder, run folder): a run's society, or the bank with a chat folder."""
    if cfg.get("run"):
        folder = Path(to_absolute_path(str(cfg.run)))
        saved = folder / "characters.jsonl"
        if not saved.is_file():
            raise UsageError(f"run={cfg.run}: no Salon run there (missing characters.jsonl); give the "
                             "folder of a simulation run, or leave run out to use the bank")
        return load_bank(saved), folder, folder
    bank = build.bank_path(cfg)
    digest = hashlib.sha1(str(bank.resolve()).encode()).hexdigest()[:8]
    return load_bank(bank), Path(to_absolute_path(cfg.paths.chat_memory)) / f"{bank.stem}-{digest}", None


def run_clock(run_folder: Path | None) -> float:
    """Memory time for chats: the number of completed rounds of the run (0 for a bank)."""
    if run_folder is None or not (run_folder / "episodes.sqlite").is_file():
        return 0.0
    store = SQLiteEpisodeStore(run_folder / "episodes.sqlite")
    try:
        return float(store.completed_rounds())
    finally:
        store.close()


def check_source(cfg: DictConfig) -> None:
    """Everything `open_directory` needs, built the cheap way (nothing loads): the characters'
    source, their attributes, adapters, model, embedder and memory store."""
    source_of(cfg)
    character_attributes(cfg)
    check_values(cfg, MEMORY_CHECKS)
    build.build_model(cfg)
    embedder = build.build_embedder(cfg)
    build.instantiate(cfg.memory.store, "memory.store", embedder=embedder, path="")
    build.build_prompts(cfg)


def open_directory(cfg: DictConfig, model: Any = None, embedder: Any = None) -> CharacterDirectory:
    """The characters of ``run=`` or the bank, with `character.attributes.*` applied to them."""
    personas, memory_folder, run_folder = source_of(cfg)
    attributes = character_attributes(cfg)
    personas = [p.with_attributes(attributes) for p in personas]
    plan = build.adapter_plan(cfg)
    embedder = embedder or build.build_embedder(cfg)
    model = model or build.build_model(cfg, plan)
    return CharacterDirectory(
        personas, build.build_memory(cfg, embedder, memory_folder), model, build.build_prompts(cfg),
        now=run_clock(run_folder), seed_importance=cfg.memory.seed_importance, run_folder=run_folder,
        adapter=plan.default)
