"""What the app serves: the characters, the run's episodes and graph, the batch queue."""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from agents.chat import ChatSettings
from core.errors import UsageError, require
from core.records import Episode
from environment.serve.batching import BatchQueue, Responder
from environment.serve.characters import CharacterDirectory
from environment.store import SQLiteEpisodeStore

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServeSettings:
    """`serve.*` in the config."""

    host: str = "127.0.0.1"
    port: int = 8765
    api_key: str | None = None
    batching: bool = True
    max_batch: int = 16
    max_wait_ms: float = 15.0
    max_messages: int = 64
    max_new_tokens_limit: int = 256
    remember: bool = True

    def __post_init__(self) -> None:
        require(isinstance(self.port, int) and 0 <= self.port <= 65535, "serve.port",
                "a port number from 0 to 65535", self.port)
        require(isinstance(self.max_batch, int) and self.max_batch >= 1, "serve.max_batch",
                "a whole number >= 1", self.max_batch)
        require(self.max_wait_ms >= 0, "serve.max_wait_ms", "a number >= 0", self.max_wait_ms)
        require(self.max_messages >= 1 and self.max_new_tokens_limit >= 1, "serve.max_messages",
                "max_messages and max_new_tokens_limit >= 1", self.max_messages)
        if not is_loopback(self.host) and not self.api_key:
            raise UsageError(f"serve.host={self.host} is not a loopback address: set serve.api_key "
                             "(or the variable named by serve.api_key_env) so requests need a key")

    @property
    def batch_limit(self) -> int:
        return self.max_batch if self.batching else 1


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_settings(cfg: DictConfig, environ: dict[str, str]) -> ServeSettings:
    s = cfg.serve
    key = s.api_key or (environ.get(s.api_key_env) if s.api_key_env else None) or None
    return ServeSettings(host=str(s.host), port=s.port, api_key=key, batching=bool(s.batching),
                         max_batch=s.max_batch, max_wait_ms=float(s.max_wait_ms), max_messages=s.max_messages,
                         max_new_tokens_limit=s.max_new_tokens_limit, remember=bool(s.remember))


@dataclass
class ServeState:
    directory: CharacterDirectory
    settings: ServeSettings
    chat: ChatSettings
    seed: int = 0
    responder: Responder = field(init=False)
    queue: BatchQueue = field(init=False)
    _store_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.directory.seed_all()
        self.responder = Responder(self.chat, self.directory.now, self.seed)
        self.queue = BatchQueue(self.responder, self.settings.batch_limit, self.settings.max_wait_ms / 1000)

    @property
    def run_folder(self) -> Path | None:
        return self.directory.run_folder

    def episodes(self) -> list[Episode]:
        """The run's stored episodes (none for a bank)."""
        folder = self.run_folder
        if folder is None or not (folder / "episodes.sqlite").is_file():
            return []
        with self._store_lock:
            store = SQLiteEpisodeStore(folder / "episodes.sqlite")
            try:
                return store.episodes()
            finally:
                store.close()
