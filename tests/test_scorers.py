"""Cross-encoder scorers on the real MiniLM: training, saving, resuming, the memory selector and
the compatibility scorers. Trainings are a few steps on tiny synthetic data (CPU is shared)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from safetensors import safe_open
from transformers import TrainerCallback

from core.errors import UsageError
from core.files import PICKLE_SUFFIXES
from core.records import Recalled
from matching.scorers import EmbeddingCompatibility, TrainedCompatibility
from memory.crossencoder import SCORER_FILE, CrossEncoder, ScorerInfo
from memory.embedder import bundled_minilm_path
from memory.selector import SELECTOR_KEY, MemorySelector
from training.scorers import (
    CHECKPOINTS,
    CrossEncoderConfig,
    task_metrics,
    train_cross_encoder,
)

TOPICS = {
    "cooking": ["I baked bread with rye flour.", "My soup needed more salt.",
                "I roast vegetables on Sundays.", "I tried a new pasta recipe tonight."],
    "football": ["Our team scored in the last minute.", "I play midfield on Saturdays.",
                 "The referee missed a clear foul.", "We lost the derby on penalties."],
    "music": ["I practise piano every evening.", "The concert was loud and joyful.",
              "I learned a new guitar chord.", "Our choir sings at the church fair."],
    "garden": ["My tomatoes finally turned red.", "I planted roses by the fence.",
               "Slugs ate my lettuce again.", "I dug a new bed for the carrots."],
}


def selector_pairs(histories: range, memory_index: int) -> Dataset:
    """(history, memory, 1 if they share a topic): the memory is another line of a topic."""
    rows: dict[str, list] = {"history": [], "memory": [], "relevant": []}
    for topic, lines in TOPICS.items():
        for h in histories:
            for other, other_lines in TOPICS.items():
                rows["history"].append(lines[h])
                rows["memory"].append(other_lines[(h + memory_index) % 4])
                rows["relevant"].append(int(topic == other))
    return Dataset.from_dict(rows)


def compatibility_pairs(hobbies: list[str]) -> Dataset:
    """Seeker/supporter texts scored 5 when they share a hobby, 3 when the supporter listens
    for a living, else 1: a signal a cross-encoder can learn."""
    rows: dict[str, list] = {"seeker": [], "supporter": [], "score": []}
    for i, hobby in enumerate(hobbies):
        for j, other in enumerate(hobbies):
            listener = (i + j) % 2 == 0
            job = "a counsellor" if listener else "an accountant"
            rows["seeker"].append(f"I feel stuck lately. I love {hobby}.")
            rows["supporter"].append(f"I work as {job}. I enjoy {other}.")
            rows["score"].append(5.0 if hobby == other else 3.0 if listener else 1.0)
    return Dataset.from_dict(rows)


def tiny_config(output: Path, **overrides) -> CrossEncoderConfig:
    values = {"output": str(output), "epochs": 2, "batch_size": 8, "max_length": 32,
              "learning_rate": 1e-4, "device": "cpu", "seed": 0}
    return CrossEncoderConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def selector_run(tmp_path_factory, embedder):
    output = tmp_path_factory.mktemp("selector")
    started = time.perf_counter()
    config = tiny_config(output, batch_size=16, learning_rate=2e-4)
    result = train_cross_encoder(config, selector_pairs(range(3), 1), selector_pairs(range(3, 4), 2),
                                 "history", "memory", "relevant", embedder=embedder)
    print(f"selector training: {time.perf_counter() - started:.1f} s, {result.metrics}, "
          f"baseline {result.baseline_metrics}")
    return result


@pytest.fixture(scope="module")
def compatibility_run(tmp_path_factory, embedder):
    output = tmp_path_factory.mktemp("compatibility")
    train = compatibility_pairs(["chess", "hiking", "baking", "painting", "cycling"])
    held_out = compatibility_pairs(["fishing", "knitting", "chess"])
    result = train_cross_encoder(tiny_config(output, task="regression"), train, held_out,
                                 "seeker", "supporter", "score", embedder=embedder)
    return result, held_out


def test_saved_folder_is_safetensors_only(selector_run):
    files = [p for p in selector_run.path.rglob("*") if p.is_file()]
    assert (selector_run.path / "model.safetensors").is_file()
    assert (selector_run.path / SCORER_FILE).is_file()
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    assert not (selector_run.path / CHECKPOINTS).exists()  # deleted after a finished run
    info = json.loads((selector_run.path / SCORER_FILE).read_text())
    assert info["task"] == "classification"
    assert (info["text_a"], info["text_b"], info["label"]) == ("history", "memory", "relevant")


def test_selector_metrics_and_weights_changed(selector_run):
    assert set(selector_run.metrics) == set(selector_run.baseline_metrics) == {"auc", "n"}
    assert selector_run.metrics["auc"] > 0.5
    assert selector_run.global_step == 6  # 48 pairs / 16 per step x 2 epochs
    key = "encoder.layer.0.attention.self.query.weight"
    with safe_open(str(bundled_minilm_path() / "model.safetensors"), "np") as base, \
            safe_open(str(selector_run.path / "model.safetensors"), "np") as trained:
        trained_key = next(k for k in trained.keys() if k.endswith(key))  # noqa: SIM118
        assert base.get_tensor(key).shape == trained.get_tensor(trained_key).shape
        assert not np.allclose(base.get_tensor(key), trained.get_tensor(trained_key))


def test_reloading_gives_the_same_predictions(compatibility_run):
    result, held_out = compatibility_run
    scorer = CrossEncoder.load(result.path, device="cpu")
    predicted = scorer.predict(held_out["seeker"], held_out["supporter"])
    assert np.all((predicted >= 1.0) & (predicted <= 5.0))
    again = task_metrics("regression", predicted, np.asarray(held_out["score"]))
    assert set(result.metrics) == set(result.baseline_metrics) == {"spearman", "mse", "n"}
    assert again == pytest.approx(result.metrics, abs=1e-5)  # metrics were taken before saving
    assert np.array_equal(predicted, CrossEncoder.load(result.path, device="cpu").predict(
        held_out["seeker"], held_out["supporter"]))


class StepLog(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_training_resumes_from_its_checkpoint(tmp_path, embedder):
    train, held_out = selector_pairs(range(1), 1), selector_pairs(range(3, 4), 2)  # 16 pairs
    first, second = StepLog(), StepLog()
    config = tiny_config(tmp_path, epochs=1, keep_checkpoints=True)
    run = train_cross_encoder(config, train, held_out, "history", "memory", "relevant",
                              embedder=embedder, callbacks=[first])
    assert first.steps == [1, 2] and run.global_step == 2 and run.resumed_from_step == 0
    assert (tmp_path / CHECKPOINTS / "checkpoint-2" / "trainer_state.json").is_file()
    longer = tiny_config(tmp_path, epochs=2, keep_checkpoints=True)
    run = train_cross_encoder(longer, train, held_out, "history", "memory", "relevant",
                              embedder=embedder, callbacks=[second])
    assert second.steps == [3, 4]  # continued after step 2 instead of starting over
    assert run.global_step == 4 and run.resumed_from_step == 2
    state = json.loads((tmp_path / CHECKPOINTS / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    with pytest.raises(UsageError, match="different training"):
        train_cross_encoder(longer, train.rename_column("relevant", "label"),
                            held_out.rename_column("relevant", "label"), "history", "memory", "label")


@pytest.mark.parametrize(("train", "held_out", "task", "message"), [
    ({"a": [], "b": [], "y": []}, {"a": ["x"] * 3, "b": ["y"] * 3, "y": [0, 1, 0]}, "classification",
     "train set is empty"),
    ({"a": ["x"], "b": ["y"], "y": [1]}, {"a": ["x"] * 3, "b": ["y"] * 3, "y": [1, 1, 1]},
     "classification", "only one class"),
    ({"a": ["x"], "b": ["y"], "y": [1]}, {"a": ["x"] * 2, "b": ["y"] * 2, "y": [0, 1]}, "classification",
     "at least 3"),
    ({"a": ["x"], "b": ["y"], "y": [2]}, {"a": ["x"] * 3, "b": ["y"] * 3, "y": [0, 1, 0]},
     "classification", "labels 0 or 1"),
    ({"a": ["x"], "b": ["y"], "y": [9.0]}, {"a": ["x"] * 3, "b": ["y"] * 3, "y": [1.0, 2.0, 5.0]},
     "regression", r"within \[1.0, 5.0\]"),
    ({"a": ["x"], "c": ["y"], "y": [1]}, {"a": ["x"] * 3, "b": ["y"] * 3, "y": [0, 1, 0]},
     "classification", "no column 'b'"),
])
def test_unusable_data_is_refused_before_training(tmp_path, train, held_out, task, message):
    config = tiny_config(tmp_path / "out", task=task)
    with pytest.raises(UsageError, match=message):
        train_cross_encoder(config, Dataset.from_dict(train), Dataset.from_dict(held_out), "a", "b", "y")
    assert not (tmp_path / "out").exists()


def test_bad_config_is_refused():
    with pytest.raises(UsageError, match="task"):
        CrossEncoderConfig(output="x", task="ranking")
    with pytest.raises(UsageError, match="base"):
        train_cross_encoder(CrossEncoderConfig(output="x", base="/nonexistent/model"),
                            Dataset.from_dict({"a": ["x"], "b": ["y"], "y": [1]}),
                            Dataset.from_dict({"a": ["x"] * 3, "b": ["y"] * 3, "y": [0, 1, 0]}),
                            "a", "b", "y")


def test_selector_ranks_and_reranks(selector_run):
    selector = MemorySelector(str(selector_run.path), device="cpu")
    memories = ["Our striker hit the post twice.", "I bake cakes for my neighbours.",
                "My violin needs new strings.", "The roses need pruning."]
    probabilities = selector.rank("I made bread and soup for dinner.", memories)
    assert len(probabilities) == 4 and all(0.0 <= p <= 1.0 for p in probabilities)
    assert probabilities == selector.rank("I made bread and soup for dinner.", memories)
    recalled = [Recalled(id=f"m{i}", text=t, kind="fact", score=1.0 - i / 10, similarity=0.5)
                for i, t in enumerate(memories)]
    kept = selector.rerank("I made bread and soup for dinner.", recalled, k=3)
    expected = [recalled[i].id for i in np.argsort(-np.asarray(probabilities), kind="stable")[:3]]
    assert [m.id for m in kept] == expected
    assert [m.metadata[SELECTOR_KEY] for m in kept] == sorted(probabilities, reverse=True)[:3]
    assert [m.score for m in kept] == [recalled[int(m.id[1:])].score for m in kept]
    assert selector.rank("anything", []) == []


def write_info(folder: Path, **values) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fields = {"task": "classification", "text_a": "a", "text_b": "b", "label": "y",
              "base": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 32, **values}
    (folder / SCORER_FILE).write_text(json.dumps(asdict(ScorerInfo(**fields))))
    return folder


def test_selector_refuses_wrong_folders(tmp_path, compatibility_run):
    with pytest.raises(UsageError, match="not a Salon scorer"):
        MemorySelector(str(tmp_path))
    with pytest.raises(UsageError, match="regression scorer"):
        MemorySelector(str(compatibility_run[0].path))
    with pytest.raises(UsageError, match="trained on 'bert-base-uncased'"):
        MemorySelector(str(write_info(tmp_path / "other", base="bert-base-uncased")))
    with pytest.raises(UsageError, match="classification scorer"):
        TrainedCompatibility(str(write_info(tmp_path / "cls")))


def test_embedding_matrix_equals_pairwise_scores(embedder):
    from agents.bank import load_bank
    from matching.scorers import persona_texts

    bank = load_bank(Path(__file__).resolve().parents[1] / "agents" / "data" / "bank.jsonl")
    seekers, supporters = persona_texts(bank[:5]), persona_texts(bank[5:9])
    scorer = EmbeddingCompatibility(embedder)
    matrix = scorer.score_matrix(seekers, supporters)
    assert matrix.shape == (5, 4)
    rows, columns = np.indices(matrix.shape)
    pairwise = scorer.score_pairs([seekers[i] for i in rows.ravel()],
                                  [supporters[j] for j in columns.ravel()])
    assert np.allclose(matrix.ravel(), pairwise, atol=1e-5)
    assert np.all((matrix >= 1.0) & (matrix <= 5.0))


def test_embedding_matrix_of_1024_by_1024_is_one_product():
    """The O(n²) part only (a stand-in embedder of unit vectors): embedding a persona is
    per-persona work the real embedder caches; the matrix must not cost per pair."""
    rng = np.random.default_rng(0)
    vectors: dict[str, np.ndarray] = {}

    def stand_in(texts: list[str]) -> np.ndarray:
        for text in texts:
            if text not in vectors:
                vector = rng.normal(size=384).astype(np.float32)
                vectors[text] = vector / np.linalg.norm(vector)
        return np.stack([vectors[t] for t in texts])

    seekers, supporters = [f"seeker {i}" for i in range(1024)], [f"supporter {i}" for i in range(1024)]
    started = time.perf_counter()
    matrix = EmbeddingCompatibility(stand_in).score_matrix(seekers, supporters)
    assert time.perf_counter() - started < 10.0
    assert matrix.shape == (1024, 1024)


def test_trained_compatibility_shortlists_large_matrices(compatibility_run, embedder):
    result, held_out = compatibility_run
    seekers, supporters = sorted(set(held_out["seeker"])), sorted(set(held_out["supporter"]))
    scorer = TrainedCompatibility(str(result.path), embedder=embedder, shortlist=2,
                                  device="cpu", dtype="float32")
    matrix = scorer.score_matrix(seekers, supporters)
    assert matrix.shape == (len(seekers), len(supporters))
    assert np.all(np.isfinite(matrix).sum(axis=1) == 2)
    similarity = EmbeddingCompatibility(embedder).cosine_matrix(seekers, supporters)
    for row, finite in enumerate(np.isfinite(matrix)):
        assert set(np.flatnonzero(finite)) == set(np.argsort(-similarity[row])[:2])
    rows, columns = np.nonzero(np.isfinite(matrix))
    pairwise = scorer.score_pairs([seekers[i] for i in rows], [supporters[j] for j in columns])
    assert np.allclose(matrix[rows, columns], pairwise, atol=1e-5)
    full = TrainedCompatibility(str(result.path), embedder=embedder, device="cpu")
    assert np.all(np.isfinite(full.score_matrix(seekers, supporters)))  # 6 supporters <= shortlist 32
