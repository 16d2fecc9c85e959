"""Interpersonal matching (task=match) with the real MiniLM on the shipped bank; bad input is one
line and exit code 2; with match.chat the seeker talks with the best supporter (real SmolLM2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from agents.bank import load_bank
from core.errors import UsageError
from matching.dispatch import best_supporters, dispatch, format_matches, seeker_from
from matching.scorers import EmbeddingCompatibility, persona_texts
from tests.conftest import ROOT, run_py

BANK = load_bank(ROOT / "agents" / "data" / "bank.jsonl")


def salon(tmp_path: Path, *arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_py(f"hydra.run.dir={tmp_path / 'run'}", *arguments, timeout=timeout)


def test_free_text_seeker_gets_k_best_supporters_best_first(embedder) -> None:
    target = BANK[37]
    seeker = seeker_from(" ".join(target.facts) + f" I work as a {target.job}.", BANK)
    assert not seeker.from_bank and seeker.persona.facts and seeker.persona.name not in {p.name for p in BANK}
    matches = dispatch(seeker, BANK, EmbeddingCompatibility(embedder), k=5)
    assert [m.rank for m in matches] == [1, 2, 3, 4, 5]
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True) and all(1.0 <= s <= 5.0 for s in scores)
    assert matches[0].persona.id == target.id  # their own facts make them the closest persona
    table = format_matches(seeker, matches, "persona-embedding similarity")
    assert len(table.splitlines()) == 7 and target.id in table.splitlines()[2]


def test_bank_id_seeker_is_not_their_own_supporter(embedder) -> None:
    seeker = seeker_from(BANK[3].id, BANK)
    assert seeker.from_bank and seeker.persona == BANK[3]
    matches = dispatch(seeker, BANK, EmbeddingCompatibility(embedder), k=len(BANK))
    assert len(matches) == len(BANK) - 1 and BANK[3].id not in {m.persona.id for m in matches}


def test_best_supporters_of_a_whole_bank_is_one_matrix(embedder) -> None:
    texts = [p.describe() for p in BANK[:24]]
    matrix = EmbeddingCompatibility(embedder).score_matrix(texts, texts)
    best = best_supporters(matrix)
    assert best.shape == (24,) and not np.any(best == np.arange(24))
    one = dispatch(seeker_from(BANK[5].id, BANK[:24]), BANK[:24], EmbeddingCompatibility(embedder), k=1)
    assert one[0].persona.id == BANK[int(best[5])].id


@pytest.mark.parametrize("value", ["", "   ", None])
def test_empty_seeker_is_a_usage_error(value) -> None:
    with pytest.raises(UsageError, match="seeker is empty"):
        seeker_from(value, BANK)


def test_empty_seeker_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = salon(tmp_path, "task=match", "seeker=", timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "seeker is empty" in result.stderr and "Traceback" not in result.stderr


def test_match_chat_talks_with_the_best_supporter(tmp_path: Path, embedder, chat_model, capsys) -> None:
    from hydra import compose, initialize_config_dir

    from environment.tasks.match import run_match

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=match", "seeker=I lost my job last month and I feel lonely.",
                                           "match.k=3", "match.chat=true", "match.turns=2",
                                           f"paths.run_dir={tmp_path}", f"paths.cache_dir={tmp_path}"])
    record = run_match(cfg, embedder, chat_model)
    assert json.loads((tmp_path / "match.json").read_text()) == record
    assert len(record["matches"]) == 3 and record["seeker"]["from_bank"] is False
    best, episode = record["matches"][0], record["episode"]
    assert episode["roles"] == {"Seeker": "seeker", best["name"]: "supporter"}
    assert 1 <= len(episode["turns"]) <= 2 and episode["turns"][0]["speaker"] == "Seeker"
    assert episode["scores"]["overall"] is not None
    printed = capsys.readouterr().out
    assert "salon: conversation" in printed and "Seeker (seeker):" in printed


def test_bank_embeddings_are_kept_on_disk_and_reloaded_without_the_model(tmp_path: Path, embedder) -> None:
    from memory.embedder import SentenceEmbedder

    texts = persona_texts(BANK[:12])
    first = embedder.embed_kept(texts, tmp_path)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npy"]
    np.testing.assert_allclose(first, embedder(texts), atol=1e-6)
    fresh = SentenceEmbedder()  # another process, in effect: an empty in-memory cache
    again = fresh.embed_kept(texts, tmp_path)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(fresh(texts[3:5]), first[3:5])
    assert "model" not in fresh.__dict__, "cached embeddings loaded the model"
    fresh.embed_kept(texts[:6], tmp_path)  # other texts: another file
    assert len(list(tmp_path.glob("*.npy"))) == 2
