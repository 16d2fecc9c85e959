"""Training datasets from real run folders (SQLite, episodes.jsonl, characters.jsonl, chromadb
with the MiniLM embedder): columns, counts, filters, character splits, errors, save/load."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agents.bank import save_bank
from agents.importers import personachat_episodes, personachat_personas, read_personachat
from agents.persona import Persona
from agents.prompting import PromptBuilder
from core.errors import UsageError
from core.records import Episode, MemoryRecord, Scene, Scores, Turn
from memory.chroma import ChromaMemoryStore
from memory.retrieval import Forgetting, RetrievalWeights
from tests.conftest import PERSONACHAT, write_stored_run
from training.datasets import (
    CharacterSplit,
    EpisodeFilter,
    build_chat_dataset,
    build_compatibility_dataset,
    build_preference_dataset,
    load_saved_dataset,
    save_dataset,
    split_characters,
    split_names,
)
from training.runs import RunData, load_runs
from training.selector_data import build_memory_selector_dataset, filler_words, heuristic_auc, taken_up

PERSONAS = [
    Persona(id="c1", name="Ann Lee", facts=("i have two dogs.", "i work as a nurse."),
            recent_worry="my night shifts are exhausting."),
    Persona(id="c2", name="Bob Ray", facts=("i repair bicycles.", "i love jazz.")),
    Persona(id="c3", name="Cid Moss", facts=("i am a chef.", "i live by the sea.")),
    Persona(id="c4", name="Dee Park", facts=("i paint murals.", "i have a cat.")),
    Persona(id="c5", name="Eve Hart", facts=("i teach math.", "i run marathons.")),
    Persona(id="c6", name="Fay Cole", facts=("i grow tomatoes.", "i play chess.")),
]
BY_NAME = {p.name: p for p in PERSONAS}
SEEDS = {p.id: [f"{p.name} seed memory {i}: {p.facts[i % 2]}" for i in range(3)] for p in PERSONAS}
SUMMARY = "I talked with Bob Ray at a cafe; Bob Ray listened to my worries."
HELD_OUT = ("c3", "c5")


@dataclass(frozen=True)
class Runs:
    a: Path
    b: Path
    memory: dict[str, str]  # label ("c1:0", "c1:summary") -> memory id


def episode(eid: str, round_index: int, roles: dict[str, str], lines: list[tuple[str, str, tuple[str, ...]]],
            overall: float | None) -> Episode:
    names = tuple(roles)
    turns = tuple(Turn(speaker, text, memory_ids=ids, failed=not text, error="" if text else "empty reply")
                  for speaker, text, ids in lines)
    scores = Scores({"naturalness": overall}, {"naturalness": ""}, overall) if overall else None
    return Episode(id=eid, round=round_index, participants=names,  # type: ignore[arg-type]
                   personas={n: BY_NAME[n].facts for n in names}, roles=roles, turns=turns,
                   model="test", character_ids={n: BY_NAME[n].id for n in names},
                   scene=Scene("a cafe", "a rainy afternoon"), scores=scores)


def run_a_episodes(m: dict[str, str]) -> list[Episode]:
    return [
        episode("r000-e000", 0, {"Ann Lee": "seeker", "Bob Ray": "supporter"}, [
            ("Ann Lee", "My night shifts leave me exhausted.", (m["c1:0"], m["c1:1"])),
            ("Bob Ray", "That sounds hard. Do you get rest days?", (m["c2:0"],)),
            ("Ann Lee", "One a week, and I walk my dogs then.", (m["c1:2"], "c1:forgotten00")),
            ("Bob Ray", "Maybe ask for shifts grouped together.", ())], 4.5),
        episode("r000-e001", 0, {"Cid Moss": "peer", "Dee Park": "peer"}, [
            ("Cid Moss", "Hello, I cook at a seaside restaurant.", (m["c3:0"],)),
            ("Dee Park", "I paint murals downtown.", (m["c4:0"],)),
            ("Cid Moss", "", ())], 2.0),
        episode("r001-e000", 1, {"Ann Lee": "seeker", "Eve Hart": "supporter"}, [
            ("Ann Lee", "I still feel tired all the time.", (m["c1:summary"],)),
            ("Eve Hart", "Running helped me with stress.", (m["c5:0"],))], 3.0),
        episode("r001-e001", 1, {"Bob Ray": "peer", "Fay Cole": "peer"}, [
            ("Bob Ray", "I fixed three bikes today.", ()),
            ("Fay Cole", "My tomatoes finally turned red.", (m["c6:0"],))], 3.8),
    ]


def run_b_episodes() -> list[Episode]:
    return [
        episode("r000-e000", 0, {"Ann Lee": "seeker", "Bob Ray": "supporter"}, [
            ("Ann Lee", "Work is fine I guess.", ()), ("Bob Ray", "Ok.", ()),
            ("Ann Lee", "Whatever.", ()), ("Bob Ray", "Sure.", ())], 2.0),
        episode("r000-e001", 0, {"Cid Moss": "peer", "Dee Park": "peer"}, [
            ("Cid Moss", "Hi! I just baked fresh bread by the sea.", ()),
            ("Dee Park", "Lovely, I am painting the harbour.", ())], 4.0),
        episode("r001-e000", 1, {"Eve Hart": "peer", "Fay Cole": "peer"}, [
            ("Eve Hart", "I ran ten miles this morning.", ()),
            ("Fay Cole", "I would rather play chess.", ())], None),
    ]


def write_memories(folder: Path, embedder) -> dict[str, str]:
    store = ChromaMemoryStore(str(folder), embedder, RetrievalWeights(), Forgetting())
    labels, records = [], []
    for owner, texts in SEEDS.items():
        labels += [f"{owner}:{i}" for i in range(len(texts))]
        records += [MemoryRecord(owner, text, "seed", 0.8, 0.0) for text in texts]
    labels.append("c1:summary")
    records.append(MemoryRecord("c1", SUMMARY, "summary", 0.5, 0.5, "r000-e000"))
    return dict(zip(labels, store.add(records), strict=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, embedder) -> Runs:
    """Run A: SQLite, characters.jsonl, chromadb memories. Run B: episodes.jsonl only."""
    root = tmp_path_factory.mktemp("runs")
    a, b = root / "sweep" / "run-a", root / "sweep" / "run-b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    memory = write_memories(a / "memory", embedder)
    write_stored_run(a, PERSONAS, run_a_episodes(memory))
    lines = [json.dumps(e.to_dict()) for e in run_b_episodes()]
    (b / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return Runs(a, b, memory)


@pytest.fixture(scope="module")
def data(runs: Runs, embedder) -> RunData:
    return load_runs([runs.a, runs.b], embedder=embedder)


@pytest.fixture(scope="module")
def split(data: RunData) -> CharacterSplit:
    return split_characters(split_names(data), 0.3, np.random.default_rng(0), held_out=HELD_OUT)


def characters(built) -> dict[str, set[str]]:
    return {name: set(part["character"]) for name, part in built.dataset.items()}


# ---------------------------------------------------------------- loading


def test_load_runs_tags_episodes_and_reads_personas_and_memories(data: RunData, runs: Runs) -> None:
    assert [r.name for r in data.runs] == ["run-a", "run-b"]
    assert len(data.episodes) == 7
    assert "run-a/r000-e000" in {e.id for e in data.episodes}
    assert "run-b/r000-e000" in {e.id for e in data.episodes}
    assert all(e.id.startswith(e.meta["run"] + "/") for e in data.episodes)
    assert data.characters() == ["c1", "c2", "c3", "c4", "c5", "c6"]
    first = data.episodes[0]
    assert data.persona(first, "Ann Lee") == PERSONAS[0]
    run_a = data.runs[0]
    assert run_a.memories[runs.memory["c1:summary"]].text == SUMMARY
    assert run_a.memories[runs.memory["c1:summary"]].created == 0.5
    assert len(run_a.memories) == 19
    assert data.runs[1].memories == {}  # run B has no memory folder
    assert data.runs[1].personas["Eve Hart"].facts == BY_NAME["Eve Hart"].facts  # from the episodes


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path: Path, runs: Runs) -> None:
    with pytest.raises(UsageError, match="is not a run folder: it holds no episodes") as caught:
        load_runs([runs.a, tmp_path])
    assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="not found"):
        load_runs([tmp_path / "missing"])


def test_same_folder_names_in_different_sweeps_stay_apart(tmp_path: Path, runs: Runs) -> None:
    other = tmp_path / "other" / "run-b"
    other.mkdir(parents=True)
    (other / "episodes.jsonl").write_text((runs.b / "episodes.jsonl").read_text())
    loaded = load_runs([runs.b, other])
    assert [r.name for r in loaded.runs] == ["sweep/run-b", "other/run-b"]
    assert len({e.id for e in loaded.episodes}) == 6


# ---------------------------------------------------------------- chat


def test_chat_dataset_rebuilds_what_the_speaker_saw(data: RunData, split: CharacterSplit, runs: Runs) -> None:
    built = build_chat_dataset(data, EpisodeFilter(), PromptBuilder(), split)
    assert built.dataset["train"].num_rows == 14
    assert built.dataset["eval"].num_rows == 4  # Cid 2 (one turn failed), Eve 2
    wanted = {"messages", "episode_id", "character", "role", "overall"}
    assert set(built.dataset["train"].column_names) >= wanted
    row = next(r for r in built.dataset["train"] if r["episode_id"] == "run-a/r000-e000" and r["turn"] == 2)
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    system = row["messages"][0]["content"]
    assert "i have two dogs." in system and SEEDS["c1"][2] in system  # persona and the recalled memory
    assert SEEDS["c1"][0] not in system  # memories recalled for another turn are not shown
    assert row["messages"][-1] == {"role": "assistant", "content": "One a week, and I walk my dogs then."}
    assert row["messages"][-2]["content"] == "That sounds hard. Do you get rest days?"
    assert (row["character"], row["role"], row["overall"]) == ("c1", "seeker", 4.5)
    assert built.card["warnings"] == {"prompts rebuilt without memories deleted since (forgetting)": 1}
    unscored = [r for r in built.dataset["eval"] if r["episode_id"] == "run-b/r001-e000"]
    assert [r["overall"] for r in unscored] == [None]


def test_no_character_is_in_both_splits(data: RunData, split: CharacterSplit) -> None:
    builders = [
        build_chat_dataset(data, EpisodeFilter(), PromptBuilder(), split),
        build_preference_dataset(data, EpisodeFilter(), PromptBuilder(), split),
        build_memory_selector_dataset(data, split),
    ]
    for built in builders:
        found = characters(built)
        assert found["eval"] <= set(HELD_OUT) and not found["train"] & set(HELD_OUT), built.card["kind"]
    compatibility = build_compatibility_dataset(data, split).dataset
    train = set(compatibility["train"]["a"]) | set(compatibility["train"]["b"])
    assert not train & set(HELD_OUT)


@pytest.mark.parametrize("rule, train, evaluation", [
    (EpisodeFilter(min_overall=3.5), 7, 1),  # r000-e000 (A), r001-e001 (A), r000-e001 (B)
    (EpisodeFilter(top_fraction=0.2), 5, 1),  # the best 2 of 6 scored episodes
    (EpisodeFilter(roles=("supporter",)), 4, 1),
    (EpisodeFilter(roles=("seeker", "supporter"), min_overall=4.0), 4, 0),
])
def test_chat_filters(data: RunData, split: CharacterSplit, rule: EpisodeFilter, train: int,
                      evaluation: int) -> None:
    if evaluation == 0:
        with pytest.raises(UsageError, match="the eval split has no chat examples"):
            build_chat_dataset(data, rule, PromptBuilder(), split)
        return
    built = build_chat_dataset(data, rule, PromptBuilder(), split)
    assert (built.dataset["train"].num_rows, built.dataset["eval"].num_rows) == (train, evaluation)
    if rule.min_overall:
        assert min(built.dataset["train"]["overall"]) >= rule.min_overall
    if rule.roles:
        assert set(built.dataset["train"]["role"]) <= set(rule.roles)
    assert built.card["filter"]["min_overall"] == rule.min_overall


def test_one_characters_data_is_split_by_partner(data: RunData) -> None:
    rule = EpisodeFilter(character="c1")
    names = split_names(data, rule)
    assert "c1" not in names
    split = split_characters(names, 0.2, np.random.default_rng(0), held_out=("c5",))
    built = build_chat_dataset(data, rule, PromptBuilder(), split)
    assert set(built.dataset["train"]["character"]) == set(built.dataset["eval"]["character"]) == {"c1"}
    assert built.dataset["eval"]["episode_id"] == ["run-a/r001-e000"]  # Ann with Eve (held out)
    assert built.dataset["train"].num_rows == 4
    assert built.card["settings"]["split_by"] == "partner"


@pytest.mark.parametrize("rule, message", [
    (EpisodeFilter(min_overall=5.0), r"training.min_overall=5.0 left no episodes .*try a lower"),
    (EpisodeFilter(roles=("interviewer",)), r"training.roles=\['interviewer'\] left no turns .*seeker"),
    (EpisodeFilter(character="nobody"), r"training.character=nobody has no kept turns"),
])
def test_a_filter_that_empties_the_dataset_says_which(data: RunData, split: CharacterSplit,
                                                     rule: EpisodeFilter, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_chat_dataset(data, rule, PromptBuilder(), split)


def test_bad_filter_values_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"training\.top_fraction"):
        EpisodeFilter(top_fraction=0.0)
    with pytest.raises(UsageError, match=r"training\.roles"):
        EpisodeFilter(roles=("king",))


# ---------------------------------------------------------------- splits


def test_split_characters_is_disjoint_seeded_and_needs_held_out_characters() -> None:
    names = [f"c{i}" for i in range(10)]
    first = split_characters(names, 0.3, np.random.default_rng(7))
    again = split_characters(reversed(names), 0.3, np.random.default_rng(7))
    assert first == again and len(first.eval) == 3 and not first.train & first.eval
    assert first.train | first.eval == set(names)
    with pytest.raises(UsageError, match="the dataset has no held-out characters: "):
        split_characters(names, 0.0, np.random.default_rng(0))
    with pytest.raises(UsageError, match="unknown characters"):
        split_characters(names, 0.3, np.random.default_rng(0), held_out=("zed",))
    with pytest.raises(UsageError, match="every character is held out"):
        split_characters(["a", "b"], 0.3, np.random.default_rng(0), held_out=("a", "b"))


# ---------------------------------------------------------------- preference, memory, compatibility


def test_preference_pairs_the_better_scored_reply_with_the_worse(data: RunData,
                                                                  split: CharacterSplit) -> None:
    built = build_preference_dataset(data, EpisodeFilter(), PromptBuilder(), split)
    assert (built.dataset["train"].num_rows, built.dataset["eval"].num_rows) == (5, 1)
    for row in [*built.dataset["train"], *built.dataset["eval"]]:
        assert row["chosen_overall"] - row["rejected_overall"] >= 0.5
        assert row["prompt"][0]["role"] == "system" and row["prompt"][-1]["role"] == "user"
        assert len(row["chosen"]) == len(row["rejected"]) == 1
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
    ann = [r for r in built.dataset["train"] if r["character"] == "c1"]
    assert [r["chosen"][0]["content"] for r in ann] == ["My night shifts leave me exhausted.",
                                                        "One a week, and I walk my dogs then."]
    assert [r["rejected"][0]["content"] for r in ann] == ["Work is fine I guess.", "Whatever."]
    cid = built.dataset["eval"][0]
    assert (cid["episode_id"], cid["rejected_episode_id"]) == ("run-b/r000-e001", "run-a/r000-e001")


def test_preference_without_pairs_says_what_is_needed(data: RunData, split: CharacterSplit) -> None:
    with pytest.raises(UsageError, match="no preference pairs"):
        build_preference_dataset(data, EpisodeFilter(), PromptBuilder(), split, min_margin=3.0)


def test_memory_selector_trains_on_the_served_query_with_uptake_labels(data: RunData, split: CharacterSplit,
                                                                        runs: Runs) -> None:
    built = build_memory_selector_dataset(data, split)
    rows = [*built.dataset["train"], *built.dataset["eval"]]
    assert len(rows) == 9 and built.dataset["eval"].num_rows == 2  # recalled memories only; Cid, Eve
    assert built.card["dropped"] == {"recalled memories deleted since (forgetting)": 1}
    taken = {(r["episode_id"], r["memory"]) for r in rows if r["label"]}
    assert taken == {("run-a/r000-e000", SEEDS["c1"][2]),  # "... walk my dogs" uses "i have two dogs"
                     ("run-a/r000-e001", SEEDS["c4"][0]),  # "I paint murals downtown."
                     ("run-a/r001-e001", SEEDS["c6"][0])}  # "My tomatoes finally turned red."
    opening = next(r for r in rows if r["episode_id"] == "run-a/r000-e000" and r["rank"] == 1)
    assert opening["history"] == "Meeting Bob Ray at a cafe. my night shifts are exhausting."
    assert opening["memory"] == SEEDS["c1"][1] and opening["label"] == 0  # recalled, not taken up
    answer = next(r for r in rows if r["memory"] == SEEDS["c2"][0])
    assert answer["history"] == "My night shifts leave me exhausted."  # the partner's last line
    assert math.isnan(built.card["heuristic_auc"])  # the eval rows hold no uptake: one class


def test_uptake_ignores_words_the_partner_or_a_name_supplied() -> None:
    assert taken_up("I love jazz too!", "Bob Ray told me about jazz.", "Do you like music?", ["Bob Ray"])
    assert not taken_up("I love jazz too!", "Bob Ray told me about jazz.", "I love jazz.", ["Bob Ray"])
    assert not taken_up("Hi Bob, how are you?", "I met Bob Ray at a cafe.", "Hello.", ["Bob Ray", "Ann"])
    assert not taken_up("I love jazz too!", "Bob Ray told me about jazz.", "Hi.", ["Bob Ray"],
                        filler_words([(f"c{i}", "jazz is fun") for i in range(5)] + [("c9", "no")]))
    assert heuristic_auc({"label": [1, 0, 1, 0], "rank": [0, 1, 0, 2]}) == 1.0


def test_compatibility_pairs_personas_with_the_episode_score(data: RunData, split: CharacterSplit) -> None:
    built = build_compatibility_dataset(data, split)
    train, evaluation = built.dataset["train"], built.dataset["eval"]
    assert (train.num_rows, evaluation.num_rows) == (3, 3)
    assert built.card["dropped"] == {"episode without scores": 1,
                                     "mixed train/eval pair: kept in eval only": 3}
    row = next(r for r in train if r["episode_id"] == "run-a/r000-e000")
    assert (row["a"], row["b"], row["a_role"], row["score"]) == ("c1", "c2", "seeker", 4.5)
    assert row["persona_a"] == PERSONAS[0].describe()
    assert set(built.card["characters"]["eval"]) >= set(HELD_OUT)


# ---------------------------------------------------------------- saving


def test_save_and_load_round_trip_with_card(tmp_path: Path, data: RunData, split: CharacterSplit) -> None:
    built = build_chat_dataset(data, EpisodeFilter(min_overall=3.5), PromptBuilder(), split)
    folder = save_dataset(built.dataset, tmp_path / "chat", built.card)
    loaded, card = load_saved_dataset(folder)
    assert loaded["train"][0] == built.dataset["train"][0]
    assert card["counts"] == {"train": 7, "eval": 1}
    assert card["characters"]["eval"] == ["c3"]
    assert card["filter"]["min_overall"] == 3.5 and card["kind"] == "chat"
    assert [r["name"] for r in card["runs"]] == ["run-a", "run-b"] and card["created"]
    readme = (folder / "README.md").read_text()
    assert "# Salon dataset: chat" in readme and "| train | 7 |" in readme and "run-a" in readme
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    with pytest.raises(UsageError, match="already exists"):
        save_dataset(built.dataset, folder, built.card)


@pytest.mark.skipif(not PERSONACHAT.is_file(), reason="Persona-Chat data not present")
def test_personachat_dialogues_become_chat_examples(tmp_path: Path) -> None:
    dialogues = read_personachat(PERSONACHAT, "dev")[:6]
    personas = personachat_personas(dialogues)
    episodes = personachat_episodes(dialogues, personas)
    save_bank(personas, tmp_path / "characters.jsonl")
    (tmp_path / "episodes.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in episodes))
    data = load_runs([tmp_path])
    split = split_characters(split_names(data), 0.25, np.random.default_rng(0))
    built = build_chat_dataset(data, EpisodeFilter(), PromptBuilder(), split)
    assert sum(d.num_rows for d in built.dataset.values()) == sum(len(e.turns) for e in episodes)
    for row in built.dataset["train"]:
        roles = [m["role"] for m in row["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant"
        assert all(a != b for a, b in itertools.pairwise(roles[1:]))  # user/assistant alternate
    with pytest.raises(UsageError, match="no episode has scores"):
        build_chat_dataset(data, EpisodeFilter(min_overall=3.0), PromptBuilder(), split)
