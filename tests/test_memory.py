"""Character memory with the real MiniLM embedder and chromadb on disk: ranking, owners,
forgetting (MemoryBank), persistence and what an episode leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.records import Episode, MemoryRecord, Scene, Turn
from memory.chroma import COLLECTION, ChromaMemoryStore, SalonEmbeddingFunction
from memory.retrieval import Forgetting, RetrievalWeights
from memory.writer import EpisodeMemoryWriter

ANN_MEMORIES = {
    "pets": "I have two dogs named Rex and Max.",
    "food": "My favourite food is spicy ramen.",
    "work": "I work night shifts as a nurse at the city hospital.",
    "swim": "I learned to swim in the sea when I was six.",
}
FORGETTING = Forgetting(enabled=True, initial_strength=3.0, reinforcement=1.0, threshold=0.05)


def open_store(path: Path, embedder, forgetting: Forgetting = FORGETTING) -> ChromaMemoryStore:
    return ChromaMemoryStore(str(path), embedder, RetrievalWeights(), forgetting, candidates=4)


def memory(owner: str, text: str, created: float = 0.0, importance: float = 0.5) -> MemoryRecord:
    return MemoryRecord(owner, text, "seed", importance, created)


@pytest.fixture
def store(tmp_path: Path, embedder) -> ChromaMemoryStore:
    opened = open_store(tmp_path / "memory", embedder)
    opened.add([memory("ann", text) for text in ANN_MEMORIES.values()])
    opened.add([memory("bob", "I have a parrot called Kiwi who sings."),
                memory("bob", "I repair old bicycles in my garage.")])
    return opened


@pytest.mark.parametrize("query, topic", [
    ("Tell me about your pets.", "pets"),
    ("What do you do for a living?", "work"),
    ("What do you like to eat?", "food"),
    ("Did you go to the beach as a child?", "swim"),
])
def test_search_ranks_the_relevant_memory_first(store: ChromaMemoryStore, query: str, topic: str) -> None:
    found = store.search("ann", query, k=3, now=0.0)
    assert len(found) == 3
    assert found[0].text == ANN_MEMORIES[topic]
    assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)
    assert found[0].similarity > found[1].similarity


def test_owners_only_see_their_own_memories(store: ChromaMemoryStore) -> None:
    ann = store.search("ann", "a pet bird that sings", k=10, now=0.0)
    assert {m.text for m in ann} == set(ANN_MEMORIES.values())
    assert all(m.id.startswith("ann:") for m in ann)
    both = store.search_many([("bob", "Tell me about your pets."), ("ann", "Tell me about your pets."),
                              ("nobody", "Tell me about your pets.")], k=1, now=0.0)
    assert [[m.text for m in found] for found in both] == [
        ["I have a parrot called Kiwi who sings."], [ANN_MEMORIES["pets"]], []]
    assert store.count("ann") == 4 and store.count("bob") == 2 and store.count() == 6


def test_adding_the_same_memory_twice_keeps_one(store: ChromaMemoryStore) -> None:
    store.add([memory("ann", ANN_MEMORIES["pets"])])
    assert store.count("ann") == 4


def test_unrecalled_memories_fade_and_recall_reinforces(tmp_path: Path, embedder) -> None:
    store = open_store(tmp_path / "memory", embedder)
    text, query = "I have two dogs named Rex and Max.", "Do you have pets?"
    store.add([memory("kept", text), memory("neglected", text)])

    # At t=5 both are still there (retention exp(-5/3) = 0.19); only "kept" is recalled.
    peek = store.search_many([("neglected", query)], k=3, now=5.0, reinforce=False)
    assert [m.text for m in peek[0]] == [text]
    recalled = store.search("kept", query, k=3, now=5.0)
    assert [m.text for m in recalled] == [text]
    kept_meta = store.memories("kept")[0]
    assert kept_meta["strength"] == pytest.approx(4.0) and kept_meta["last_recalled"] == 5.0
    assert store.memories("neglected")[0]["strength"] == pytest.approx(3.0)  # peeking did not reinforce

    # At t=14: "neglected" has exp(-14/3) = 0.009 < 0.05 and is gone from results;
    # "kept" was reset at t=5 with strength 4: exp(-9/4) = 0.105, still recalled.
    assert store.search("neglected", query, k=3, now=14.0) == []
    assert [m.text for m in store.search("kept", query, k=3, now=14.0)] == [text]
    assert store.memories("kept")[0]["strength"] == pytest.approx(5.0)

    assert store.forget("neglected", now=14.0) == 1
    assert store.count("neglected") == 0
    assert store.forget("kept", now=14.0) == 0 and store.count("kept") == 1


def test_recency_ranks_fresher_memories_higher_when_relevance_ties(tmp_path: Path, embedder) -> None:
    store = open_store(tmp_path / "memory", embedder, Forgetting(enabled=False))
    store.add([MemoryRecord("ann", "I talked with Bob about his dogs.", "summary", 0.5, 0.0),
               MemoryRecord("ann", "I talked with Bob about his dogs.", "summary", 0.5, 8.0)])
    found = store.search_many([("ann", "Bob's dogs")], k=2, now=9.0, reinforce=False)[0]
    assert [m.metadata["created"] for m in found] == [8.0, 0.0]
    assert found[0].similarity == pytest.approx(found[1].similarity, abs=1e-4)


def test_disabled_forgetting_keeps_everything(tmp_path: Path, embedder) -> None:
    store = open_store(tmp_path / "memory", embedder, Forgetting(enabled=False))
    store.add([memory("ann", text) for text in ANN_MEMORIES.values()])
    found = store.search("ann", "Tell me about your pets.", k=10, now=1000.0)
    assert {m.text for m in found} == set(ANN_MEMORIES.values())
    assert found[0].text == ANN_MEMORIES["pets"]
    assert store.forget("ann", now=1e6) == 0 and store.count("ann") == 4


def test_memories_persist_on_disk_with_salons_embedding_function(tmp_path: Path, embedder) -> None:
    import chromadb
    from chromadb.api.client import SharedSystemClient

    folder = tmp_path / "memory"
    first = open_store(folder, embedder)
    first.add([memory("ann", text) for text in ANN_MEMORIES.values()])
    first.search("ann", "Tell me about your pets.", k=1, now=2.0)  # reinforce: strength 4
    SharedSystemClient.clear_system_cache()  # drop chromadb's in-process cache: reopen from disk

    reopened = open_store(folder, embedder)
    assert reopened.count("ann") == 4
    found = reopened.search_many([("ann", "What do you do for a living?")], k=1, now=3.0,
                                 reinforce=False)[0]
    assert [m.text for m in found] == [ANN_MEMORIES["work"]]
    pets = next(m for m in reopened.memories("ann") if m["text"] == ANN_MEMORIES["pets"])
    assert pets["strength"] == pytest.approx(4.0) and pets["last_recalled"] == 2.0
    SharedSystemClient.clear_system_cache()

    # A plain chromadb client (no embedder passed) rebuilds Salon's registered function from
    # the stored config instead of falling back to chromadb's default (a model download).
    client = chromadb.PersistentClient(path=str(folder))
    collection = client.get_collection(COLLECTION)
    stored = collection.configuration_json["embedding_function"]
    assert stored["name"] == SalonEmbeddingFunction.name() == "salon-sentence-transformers"
    assert stored["config"]["path"] == str(embedder.path)
    rebuilt = collection.configuration["embedding_function"]
    assert isinstance(rebuilt, SalonEmbeddingFunction)
    result = collection.query(query_texts=["Do you have any animals?"], n_results=1,
                              where={"owner": "ann"})
    assert result["documents"][0] == [ANN_MEMORIES["pets"]]
    SharedSystemClient.clear_system_cache()


def support_episode() -> Episode:
    return Episode(
        id="r002-e001", round=2, participants=("Ann Berg", "Bob Stone"),
        personas={"Ann Berg": ("i am a nurse.",), "Bob Stone": ("i fix bikes.",)},
        roles={"Ann Berg": "seeker", "Bob Stone": "supporter"},
        turns=(
            Turn("Ann Berg", "I am so tired. My night shifts at the hospital never end."),
            Turn("Bob Stone", "That sounds hard. I have worked nights too. My shop opens at six."),
            Turn("Ann Berg", "", failed=True, error="empty"),
            Turn("Bob Stone", "I repair old bicycles in my garage on weekends. Maybe ride with me?"),
            Turn("Ann Berg", "Yes! I used to cycle to school every day."),
        ),
        model="test", character_ids={"Ann Berg": "istj-001", "Bob Stone": "esfp-002"},
        scene=Scene("the laundromat", "Their machines have twenty minutes to go."))


def test_writer_leaves_a_summary_and_partner_facts_for_each_participant() -> None:
    records = EpisodeMemoryWriter().records(support_episode(), now=2.5)
    ann = [r for r in records if r.owner == "istj-001"]
    bob = [r for r in records if r.owner == "esfp-002"]
    assert len(ann) + len(bob) == len(records)
    assert all(r.episode_id == "r002-e001" and r.created == 2.5 for r in records)

    [ann_summary] = [r for r in ann if r.kind == "summary"]
    assert ann_summary.text.startswith("I talked with Bob Stone at the laundromat; Bob Stone listened")
    assert "I repair old bicycles" in ann_summary.text  # the partner's longest line
    assert [r.text for r in ann if r.kind == "partner_fact"] == [
        "Bob Stone told me: I have worked nights too.",
        "Bob Stone told me: My shop opens at six.",
        "Bob Stone told me: I repair old bicycles in my garage on weekends.",
    ]
    [bob_summary] = [r for r in bob if r.kind == "summary"]
    assert bob_summary.text.startswith("I talked with Ann Berg at the laundromat; I tried to help Ann Berg")
    assert [r.text for r in bob if r.kind == "partner_fact"] == [
        "Ann Berg told me: I am so tired.",
        "Ann Berg told me: My night shifts at the hospital never end.",
        "Ann Berg told me: I used to cycle to school every day.",
    ]
    assert all(0 <= r.importance <= 1 for r in records)


def test_written_memories_are_found_by_their_owner(tmp_path: Path, embedder) -> None:
    store = open_store(tmp_path / "memory", embedder)
    store.add(EpisodeMemoryWriter(max_facts=5).records(support_episode(), now=2.5))
    found = store.search("istj-001", "Does Bob repair bicycles?", k=1, now=3.0)
    assert found[0].text == "Bob Stone told me: I repair old bicycles in my garage on weekends."
    found = store.search("esfp-002", "Ann's job", k=1, now=3.0)
    assert "night shifts" in found[0].text
