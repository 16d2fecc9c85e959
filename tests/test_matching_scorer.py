"""Trained compatibility scorers in matching: a tiny real MiniLM regression scorer in a real
registry drives the compatibility and bandit policies and dispatch; a scorer trained on another
base (or a model of another kind) is refused with one line before any model loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from hydra import compose, initialize_config_dir

from agents.bank import load_bank
from core.errors import UsageError
from environment.build import build_policy
from environment.tasks.simulate import check as check_simulation
from matching.bandit import BanditPairing
from matching.compatibility import CompatibilityPairing, build_scorer, symmetric_expectation
from matching.dispatch import dispatch, seeker_from
from matching.features import mbti_overlap
from matching.scorers import TrainedCompatibility, persona_texts
from tests.conftest import ROOT, run_py
from tests.test_matching_policies import members, play
from training.registry import ModelRegistry
from training.scorers import CrossEncoderConfig, read_scorer_info, train_cross_encoder

BANK = load_bank(ROOT / "agents" / "data" / "bank.jsonl")


def overlap_pairs(indices: list[int]) -> Dataset:
    """(persona A, persona B, 1 + 4 x shared MBTI letters / 4): a signal to learn quickly."""
    personas = [BANK[i] for i in indices]
    overlap = mbti_overlap(personas)
    texts = persona_texts(personas)
    pairs = [(i, j) for i in range(len(indices)) for j in range(len(indices)) if i != j]
    return Dataset.from_dict({"a": [texts[i] for i, _ in pairs], "b": [texts[j] for _, j in pairs],
                              "score": [1.0 + 4.0 * overlap[i, j] for i, j in pairs]})


@pytest.fixture(scope="module")
def registry(tmp_path_factory, embedder) -> Path:
    root = tmp_path_factory.mktemp("registry")
    config = CrossEncoderConfig(output=str(root / "trained"), task="regression", epochs=1, batch_size=8,
                                max_length=64, learning_rate=1e-4, device="cpu", seed=0)
    trained = train_cross_encoder(config, overlap_pairs([0, 4, 8, 12, 16]),
                                  overlap_pairs([40, 44, 48]), "a", "b", "score",
                                  embedder=embedder)
    models = ModelRegistry(root)
    base = read_scorer_info(trained.path).base
    models.register("compatibility", "scorer", trained.path, {"base_model": base, "task": "regression"})
    models.register("foreign", "scorer", trained.path, {"base_model": "bert-base-uncased"})
    models.register("lora", "adapter", trained.path, {"base_model": base})
    return root


def test_compatibility_policy_pairs_by_the_trained_scorer(registry: Path, embedder) -> None:
    characters = members(6, start=10)
    policy = CompatibilityPairing(scorer="compatibility", registry_root=str(registry), embedder=embedder)
    for pairs in play(policy, characters, 2, seed=0):
        assert len({n for pair in pairs for n in pair}) == 6
    scorer = policy.prior.scorer
    assert isinstance(scorer, TrainedCompatibility)
    texts = persona_texts([c.persona for c in characters])
    expected = symmetric_expectation(scorer.score_matrix(texts, texts))
    personas = [c.persona for c in characters]
    assert np.allclose(policy.prior(personas, personas), expected, atol=1e-3)


def test_bandit_uses_the_trained_scorer_as_its_prior(registry: Path, embedder) -> None:
    characters = members(4, start=20)
    bandit = BanditPairing("thompson", scorer="compatibility", registry_root=str(registry), embedder=embedder)
    beliefs = bandit.beliefs(characters)
    assert np.all(np.isfinite(beliefs.mean)) and 1.0 <= beliefs.mean[0, 1] <= 5.0


def test_dispatch_with_a_trained_scorer_shortlists_by_embedding(registry: Path, embedder) -> None:
    scorer = build_scorer("compatibility", registry, embedder, shortlist=4)
    matches = dispatch(seeker_from("I feel lonely since I moved to a new city.", BANK), BANK, scorer, k=10)
    assert len(matches) == 4  # only the shortlisted supporters are scored
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)


@pytest.mark.parametrize("ref, message", [("foreign", "trained on 'bert-base-uncased'"),
                                          ("lora", "is a adapter, not a scorer"),
                                          ("missing", "missing")])
def test_a_wrong_scorer_is_refused_when_the_policy_is_built(registry: Path, ref: str, message: str) -> None:
    for build in (CompatibilityPairing, BanditPairing):
        with pytest.raises(UsageError, match=message):
            build(scorer=ref, registry_root=str(registry))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["matching=compatibility", f"matching.scorer={ref}",
                                           f"paths.registry_root={registry}"])
    with pytest.raises(UsageError, match=message):
        check_simulation(cfg)  # what run.py runs before a run folder is made
    with pytest.raises(UsageError, match=message):
        build_policy(cfg)  # Hydra's InstantiationException is unwrapped


def test_foreign_scorer_on_the_command_line_is_one_line_and_exit_2(registry: Path, tmp_path: Path) -> None:
    result = run_py("task=match", "seeker=I feel lonely.", "match.scorer=foreign",
                    f"paths.registry_root={registry}", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "match.scorer=foreign" in result.stderr and "bert-base-uncased" in result.stderr
