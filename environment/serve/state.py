"""What the app serves: the characters, the run's episodes and graph, the request queue."""

from __future__ import annotations

import ipaddress
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from agents.chat import ChatSettings
from core.errors import is_whole, require
from core.records import Episode
from environment.serve.batching import RequestQueue, Responder
from environment.serve.characters import CharacterDirectory
from environment.store import SQLiteEpisodeStore

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServeSettings:
    """`serve.*` in the config. The API key is ``api_key``, else the variable ``api_key_env``
    names; binding anything but loopback requires one."""

    host: str = "127.0.0.1"
    port: int = 8765
    api_key: str | None = None
    api_key_env: str | None = "SALON_API_KEY"
    batching: bool = True
    max_batch: int = 16
    max_messages: int = 64
    max_new_tokens_limit: int = 256
    remember: bool = True

    def __post_init__(self) -> None:
        require(is_whole(self.port, 0, 65535), "port", "allowed is a port number from 0 to 65535", self.port)
        require(is_whole(self.max_batch, 1), "max_batch", "allowed is a whole number >= 1", self.max_batch)
        require(is_whole(self.max_messages, 1), "max_messages", "allowed is a whole number >= 1",
                self.max_messages)
        require(is_whole(self.max_new_tokens_limit, 1), "max_new_tokens_limit",
                "allowed is a whole number >= 1", self.max_new_tokens_limit)
        for name, flag in (("batching", self.batching), ("remember", self.remember)):
            require(isinstance(flag, bool), name, "allowed is true or false", flag)
        key = self.api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None) or None
        object.__setattr__(self, "api_key", key)
        require(is_loopback(self.host) or bool(key), "host",
                "a non-loopback address needs an API key: set serve.api_key (or the variable named by "
                "serve.api_key_env) so requests need a key", self.host)

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


@dataclass
class ServeState:
    directory: CharacterDirectory
    settings: ServeSettings
    chat: ChatSettings
    seed: int = 0
    responder: Responder = field(init=False)
    queue: RequestQueue = field(init=False)
    _store_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.directory.seed_all()
        self.responder = Responder(self.chat, self.directory.prompts, self.directory.now, self.seed)
        self.queue = RequestQueue(self.responder, self.settings.batch_limit)

    @property
    def batch_sizes(self) -> list[int]:
        """Rows of each batched call the in-process model made so far (a served model batches
        out of sight: none)."""
        return list(getattr(self.directory.model, "batch_sizes", []))

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
