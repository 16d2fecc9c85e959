"""Memories in chromadb: one collection, one `owner` per character, our own embedder."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from core.errors import require
from core.processes import ServerProcess, free_port
from core.records import MemoryRecord, RecallCount, Recalled
from core.seams import Embedder
from memory.embedder import SentenceEmbedder
from memory.retrieval import Forgetting, RetrievalWeights, memory_score

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
log = logging.getLogger(__name__)
COLLECTION = "memories"
MODES = ("persistent", "http")


@register_embedding_function
class SalonEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's hook to our embedder; registered so a reopened collection can rebuild it
    without chromadb's default embedder (which would download a model)."""

    def __init__(self, path: str | None = None, embedder: SentenceEmbedder | None = None) -> None:
        self.embedder = embedder or SentenceEmbedder(path)

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder(list(input)))

    @staticmethod
    def name() -> str:
        return "salon-sentence-transformers"

    def get_config(self) -> dict[str, Any]:
        return {"path": str(self.embedder.path)}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SalonEmbeddingFunction:
        return SalonEmbeddingFunction(path=config.get("path"))

    def default_space(self) -> str:
        return "cosine"


def memory_id(record: MemoryRecord) -> str:
    digest = hashlib.sha1(f"{record.kind}|{record.created}|{record.text}".encode()).hexdigest()
    return f"{record.owner}:{digest[:12]}"


def run_collection(prefix: str, path: str) -> str:
    """The collection of the run whose memories live at ``path`` (stable across a resume)."""
    return f"{prefix}-{hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]}"


def chroma_server(folder: Path) -> ServerProcess:
    """`chroma run` on 127.0.0.1 with its data in ``folder``, telemetry off."""
    executable = Path(sys.executable).parent / "chroma"
    command = str(executable) if executable.is_file() else (shutil.which("chroma") or "chroma")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return ServerProcess([command, "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
                         port, "/api/v2/heartbeat", 60.0, folder / "chroma-server.log",
                         env={"ANONYMIZED_TELEMETRY": "False", "CHROMA_TELEMETRY": "False"})


class ChromaMemoryStore:
    """`mode=persistent` keeps the store in ``path`` (the run folder); `mode=http` talks to a
    chroma server (``host``/``port``) so several machines share memories. The client opens on
    first use, so building a store (as the config checks do) touches no disk and no server."""

    def __init__(
        self,
        path: str,
        embedder: Embedder,
        weights: RetrievalWeights,
        forgetting: Forgetting,
        mode: str = "persistent",
        host: str = "127.0.0.1",
        port: int = 8000,
        candidates: int = 4,
        collection: str = COLLECTION,
        serve: bool = False,
    ) -> None:
        require(mode in MODES, "mode", f"allowed is {', '.join(MODES)}", mode)
        require(isinstance(port, int) and 0 < port < 65536, "port", "allowed is a port from 1 to 65535", port)
        require(isinstance(candidates, int) and candidates >= 1, "candidates",
                "allowed is a whole number >= 1", candidates)
        self.path, self.mode, self.host, self.port = path, mode, host, port
        self.embedder = embedder
        self.weights = weights
        self.forgetting = forgetting
        self.candidates = candidates
        self.serve = serve and mode == "http"
        # one server may hold many runs' memories: in http mode each run has its own collection
        self.collection_name = collection if mode == "persistent" else run_collection(collection, path)
        self._server: ServerProcess | None = None
        # episodes advance in their own threads; one at a time through the client and embedder
        self._lock = threading.RLock()

    @cached_property
    def client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if self.serve:
            self._server = chroma_server(Path(self.path)).start()
            self.host, self.port = "127.0.0.1", self._server.port
        if self.mode == "http":
            return chromadb.HttpClient(host=self.host, port=self.port, settings=settings)
        Path(self.path).mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(self.path), settings=settings)

    @cached_property
    def collection(self) -> Any:
        return self.client.get_or_create_collection(
            self.collection_name, embedding_function=SalonEmbeddingFunction(embedder=self.embedder),
            configuration={"hnsw": {"space": "cosine"}})

    def close(self) -> None:
        """Stop the chroma server this store started (if any)."""
        if self._server is not None:
            self._server.stop()

    def add(self, records: Sequence[MemoryRecord]) -> list[str]:
        with self._lock:
            return self._add(records)

    def _add(self, records: Sequence[MemoryRecord]) -> list[str]:
        """Insert the records not stored yet: a stored one keeps its reinforcement (adding the
        memories of a replayed commit again must not reset them)."""
        if not records:
            return []
        ids = [memory_id(r) for r in records]
        present = set(self.collection.get(ids=list(dict.fromkeys(ids)), include=[])["ids"])
        new = {i: r for i, r in zip(ids, records, strict=True) if i not in present}
        if new:
            texts = [r.text for r in new.values()]
            self.collection.add(ids=list(new), documents=texts, embeddings=self.embedder(texts),
                                metadatas=[self._metadata(r) for r in new.values()])
        return ids

    def _metadata(self, record: MemoryRecord) -> dict[str, Any]:
        return {"owner": record.owner, "kind": record.kind, "importance": record.importance,
                "created": record.created, "last_recalled": record.created,
                "strength": self.forgetting.initial_strength, "episode_id": record.episode_id}

    def search(self, owner: str, query: str, k: int, now: float) -> list[Recalled]:
        return self.search_many([(owner, query)], k, now)[0]

    def search_many(
        self, requests: Sequence[tuple[str, str]], k: int, now: float, reinforce: bool = True
    ) -> list[list[Recalled]]:
        """One embedder call for all queries; each result is ranked and filtered by forgetting."""
        with self._lock:
            return self._search_many(requests, k, now, reinforce)

    def _search_many(self, requests: Sequence[tuple[str, str]], k: int, now: float, reinforce: bool
                     ) -> list[list[Recalled]]:
        if not requests or k <= 0:
            return [[] for _ in requests]
        vectors = self.embedder([query for _, query in requests])
        results = [self._rank(owner, vector, k, now) for (owner, _), vector in
                   zip(requests, vectors, strict=True)]
        if reinforce:
            self.reinforce([m for found in results for m in found], now)
        return results

    def _rank(self, owner: str, vector: np.ndarray, k: int, now: float) -> list[Recalled]:
        found = self.collection.query(
            query_embeddings=[vector.tolist()], n_results=k * self.candidates,
            where={"owner": owner}, include=["documents", "metadatas", "distances"])
        ranked = []
        for mid, text, meta, distance in zip(found["ids"][0], found["documents"][0],
                                             found["metadatas"][0], found["distances"][0],
                                             strict=True):
            elapsed = now - float(meta["last_recalled"])
            if self.forgetting.is_forgotten(elapsed, float(meta["strength"])):
                continue
            similarity = 1.0 - float(distance)
            score = memory_score(self.weights, similarity, elapsed, float(meta["importance"]))
            ranked.append(Recalled(mid, text or "", str(meta["kind"]), score, similarity, meta))
        ranked.sort(key=lambda m: m.score, reverse=True)
        return ranked[:k]

    def reinforce(self, recalled: Sequence[Recalled], now: float) -> None:
        """Recalling a memory resets its clock and strengthens it (MemoryBank)."""
        latest = {m.id: m for m in recalled}
        if not latest:
            return
        metadatas = [{**m.metadata, "last_recalled": now,
                      "strength": float(m.metadata["strength"]) + self.forgetting.reinforcement}
                     for m in latest.values()]
        self.collection.update(ids=list(latest), metadatas=metadatas)

    def set_recalls(self, recalls: Mapping[str, RecallCount]) -> None:
        with self._lock:
            stored = self.collection.get(ids=list(recalls), include=["metadatas"]) if recalls else None
            if not stored or not stored["ids"]:
                return
            strength = self.forgetting.initial_strength
            metadatas = [{**meta, "strength": strength + recalls[mid].count * self.forgetting.reinforcement,
                          "last_recalled": max(float(meta["created"]), recalls[mid].last)}
                         for mid, meta in zip(stored["ids"], stored["metadatas"], strict=True)]
            self.collection.update(ids=stored["ids"], metadatas=metadatas)

    def forget(self, owner: str, now: float) -> int:
        """Delete the owner's memories whose retention fell below the threshold."""
        stored = self.collection.get(where={"owner": owner}, include=["metadatas"])
        doomed = [mid for mid, meta in zip(stored["ids"], stored["metadatas"], strict=True)
                  if self.forgetting.is_forgotten(now - float(meta["last_recalled"]),
                                                  float(meta["strength"]))]
        if doomed:
            self.collection.delete(ids=doomed)
        return len(doomed)

    def forget_episodes(self, episode_ids: Sequence[str]) -> None:
        """Drop the memories written for these episodes (used when an episode is re-run)."""
        if episode_ids:
            self.collection.delete(where={"episode_id": {"$in": list(episode_ids)}})

    def count(self, owner: str | None = None) -> int:
        if owner is None:
            return self.collection.count()
        return len(self.collection.get(where={"owner": owner}, include=[])["ids"])

    def memories(self, owner: str) -> list[dict[str, Any]]:
        stored = self.collection.get(where={"owner": owner}, include=["documents", "metadatas"])
        return [{"id": i, "text": t, **m} for i, t, m in
                zip(stored["ids"], stored["documents"], stored["metadatas"], strict=True)]

    def get(self, ids: Sequence[str]) -> dict[str, str]:
        stored = self.collection.get(ids=list(ids), include=["documents"])
        return dict(zip(stored["ids"], stored["documents"], strict=True))
