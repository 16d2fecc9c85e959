"""Many servers through run.py: `model.base_url` as a list (least-loaded routing, a dead server
retried around, shares in report.md), and memories in a chroma server (`memory.store.mode=http`),
one Salon starts and one the test starts, shared by two runs without mixing them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agents.models.loading import embedded_source
from agents.models.servers import llama_server, llama_server_path
from core.processes import free_port
from memory.chroma import chroma_server
from tests.conftest import run_py as salon

NEED_LLAMA = pytest.mark.skipif(
    not llama_server_path().is_file() and not os.environ.get("SALON_REQUIRE_LLAMA_SERVER"),
    reason="llama-server is not built: make llama-server")
SMOKE = ["experiment=smoke", "simulation.progress=false", "model.max_new_tokens=24"]


def running(fragment: str) -> bool:
    """Whether a process whose command line contains ``fragment`` is running."""
    for entry in (e for e in Path("/proc").iterdir() if e.name.isdigit()):
        try:
            if fragment in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                return True
        except OSError:
            continue
    return False


def episodes_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]


@NEED_LLAMA
def test_requests_spread_over_servers_and_a_dead_one_is_retried_around(tmp_path: Path) -> None:
    source = embedded_source()
    servers = [llama_server(source.folder / str(source.gguf_file), slots=4, log_path=tmp_path / f"s{i}.log")
               for i in range(2)]
    dead = f"http://127.0.0.1:{free_port()}/v1"
    try:
        for server in servers:
            server.start()
        urls = ",".join(f"'{u}'" for u in [f"{servers[0].base_url}/v1", dead, f"{servers[1].base_url}/v1"])
        result = salon("model=openai", f"model.base_url=[{urls}]", *SMOKE,
                       f"hydra.run.dir={tmp_path / 'run'}")
    finally:
        for server in servers:
            server.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    episodes = episodes_of(tmp_path / "run")
    # every episode was spoken; a single turn may fail (every candidate rejected by the cleaner),
    # and which one depends on how the servers batched, which is not reproducible
    assert len(episodes) == 2 and all(any(t["text"] for t in e["turns"]) for e in episodes)
    line = next(x for x in (tmp_path / "run" / "report.md").read_text().splitlines() if "3 servers" in x)
    served = [int(part.split(" served ")[1].split()[0]) for part in line.split("; ")[:3]]
    assert served[0] > 0 and served[2] > 0 and served[1] == 0  # the dead one served nothing
    assert f"{dead} served 0 requests" in line and "retried" in line


def test_memories_in_a_chroma_server_salon_starts_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = salon("memory.store.mode=http", "memory.store.serve=true", *SMOKE, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(episodes_of(run)) == 2
    assert (run / "memory" / "chroma-server.log").is_file()
    assert not running(f"run --path {run / 'memory'}")  # the server Salon started is stopped
    resumed = salon(f"resume={run}", "simulation.rounds=2")  # a new server on the same data
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(episodes_of(run)) == 4


def test_a_run_on_a_shared_chroma_server_keeps_to_its_own_collection(tmp_path: Path) -> None:
    """Another run's memories are already on the server: this run writes its own collection
    and leaves the other untouched."""
    import chromadb
    from chromadb.config import Settings

    server = chroma_server(tmp_path / "chroma").start()
    try:
        client = chromadb.HttpClient(host="127.0.0.1", port=server.port,
                                     settings=Settings(anonymized_telemetry=False))
        other = client.create_collection("memories-another-run")
        other.add(ids=["m1"], embeddings=[[0.1] * 384], documents=["Another run's memory."],
                  metadatas=[{"owner": "p0"}])
        result = salon("memory.store.mode=http", f"memory.store.port={server.port}", *SMOKE,
                       f"hydra.run.dir={tmp_path / 'run'}")
        assert result.returncode == 0, result.stderr[-2000:]
        collections = sorted(c.name for c in client.list_collections())
        assert len(collections) == 2 and all(c.startswith("memories-") for c in collections)
        ours = next(c for c in collections if c != "memories-another-run")
        assert client.get_collection(ours).count() > 0 and other.count() == 1
    finally:
        server.stop()
