"""The memory selector end to end through run.py: `task=train training.target=memory_selector`
on a stored run (real SQLite, real chromadb memories, real MiniLM training), then a simulation
that re-ranks recall with it (`memory.selector=`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.persona import Persona
from core.records import Episode, MemoryRecord, Scene, Scores, Turn
from memory.chroma import ChromaMemoryStore
from memory.retrieval import Forgetting, RetrievalWeights
from tests.conftest import run_py, write_stored_run

NAMES = ["Ann Lee", "Bob Ray", "Cid Moss", "Dee Park", "Eve Hart", "Fay Cole", "Gus Lund", "Hal Wise"]
TOPICS = ["kayak", "violin", "orchard", "glacier", "lantern", "falcon", "quilt", "harbour", "pottery",
          "marathon", "telescope", "bakery", "canyon", "chess", "saxophone", "vineyard"]
PERSONAS = [Persona(id=f"c{i}", name=n, facts=(f"i like {TOPICS[2 * i]}.", f"i like {TOPICS[2 * i + 1]}."))
            for i, n in enumerate(NAMES)]


def memories_of(index: int) -> list[str]:
    return [f"I once saw a {TOPICS[(2 * index + j) % len(TOPICS)]} on a trip." for j in range(4)]


def episodes(ids: dict[str, list[str]]) -> list[Episode]:
    """Every pair once, four turns; each turn recalls three of the speaker's memories and its
    reply names the topic of one of them (or, on the fourth turn, of none)."""
    found = []
    pairs = [(a, b) for a in range(8) for b in range(a + 1, 8)]
    for number, (a, b) in enumerate(pairs):
        turns = []
        for step in range(4):
            speaker = (a, b)[step % 2]
            recalled = ids[PERSONAS[speaker].id][step % 4:] + ids[PERSONAS[speaker].id][: step % 4]
            topic = TOPICS[(2 * speaker + step % 4 + step // 2) % len(TOPICS)]
            text = f"Speaking of that, the {topic} was wonderful."
            turns.append(Turn(NAMES[speaker], text, memory_ids=tuple(recalled[:3])))
        names = (NAMES[a], NAMES[b])
        found.append(Episode(id=f"r000-e{number:03d}", round=0, participants=names,  # type: ignore[arg-type]
                             personas={n: PERSONAS[NAMES.index(n)].facts for n in names},
                             roles={n: "peer" for n in names}, turns=tuple(turns), model="test",
                             character_ids={n: PERSONAS[NAMES.index(n)].id for n in names},
                             scene=Scene("a cafe", "a quiet morning"),
                             scores=Scores({"naturalness": 3.0}, {"naturalness": ""}, 3.0)))
    return found


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    folder = tmp_path_factory.mktemp("run")
    store = ChromaMemoryStore(str(folder / "memory"), embedder, RetrievalWeights(), Forgetting())
    ids = {}
    for index, persona in enumerate(PERSONAS):
        records = [MemoryRecord(persona.id, text, "seed", 0.8, 0.0) for text in memories_of(index)]
        ids[persona.id] = store.add(records)
    write_stored_run(folder, PERSONAS, episodes(ids))
    return folder


salon = run_py


def test_a_selector_trained_through_run_py_reranks_a_simulation(stored_run: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    trained = salon("task=train", "training.target=memory_selector", f"training.runs=[{stored_run}]",
                    "training.held_out=[c0,c5]", "training.scorer.epochs=1",
                    f"paths.registry_root={registry}", f"hydra.run.dir={tmp_path / 'train'}")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "trained memory-selector:1" in trained.stdout and "heuristic retriever AUC" in trained.stdout
    card = json.loads((registry / "models" / "memory-selector" / "1" / "card.json").read_text())
    assert card["dataset"]["kind"] == "memory_selector" and "heuristic_auc" in card["dataset"]
    assert set(card["dataset"]["characters"]["eval"]) == {"c0", "c5"}
    rows = json.loads((tmp_path / "train" / "dataset" / "card.json").read_text())["counts"]
    assert rows["train"] > 0 and rows["eval"] > 0
    simulated = salon("experiment=smoke", "memory.selector=memory-selector",
                      f"paths.registry_root={registry}", "simulation.progress=false",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert simulated.returncode == 0, simulated.stderr[-2000:]
    lines = (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["turns"] for line in lines)
