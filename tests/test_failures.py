"""The critic's failure experts on a real Persona-Chat dev dialogue: each scores its own injected
failure (bench/injections.py, the validity benchmark's) lower than the real dialogue, and the
failure pulls `overall` down through its gate. The contradiction expert is trained for real,
on a few dev dialogues, through `python run.py task=train training.target=contradiction`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from agents.failures import Contradiction, Copying, Recitation, SelfAddress
from agents.importers import personachat_episodes, personachat_personas, read_personachat
from bench.injections import own_copy, partner_copy, recited_fact, self_address
from tests.conftest import PERSONACHAT, ROOT

pytestmark = pytest.mark.skipif(not PERSONACHAT.is_file(), reason="needs ../shared/data (Persona-Chat)")


@pytest.fixture(scope="module")
def dialogues():
    found = read_personachat(PERSONACHAT, "dev")[:8]
    return personachat_episodes(found, personachat_personas(found))


@pytest.mark.parametrize("expert, inject", [
    (Copying(), partner_copy), (Copying(), own_copy), (SelfAddress(), self_address),
    (Recitation(), recited_fact),
], ids=["partner copy", "own copy", "self-address", "recited fact"])
def test_each_failure_expert_scores_its_injected_failure_lower(dialogues, expert, inject) -> None:
    rng = np.random.default_rng(0)
    for real in dialogues:
        broken = inject(real, rng)
        assert broken is not None
        (before,), (after,) = expert.score([real], {}), expert.score([broken], {})
        value_before, value_after = before[expert.dimension][0], after[expert.dimension][0]
        assert value_after < value_before, (expert.dimension, after[expert.dimension][1])
        assert "line" in after[expert.dimension][1]  # the reason names the failing line


def test_without_a_registered_scorer_contradiction_says_how_to_train_one(dialogues, tmp_path: Path) -> None:
    judgement = Contradiction(scorer="contradiction", registry_root=str(tmp_path)).score(dialogues[:1], {})[0]
    value, reason = judgement["contradiction"]
    assert np.isnan(value) and "task=train training.target=contradiction" in reason


def test_a_failure_gate_pulls_overall_down(dialogues) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from tests.fakes import ConstantEmbedder

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config")
    critic = instantiate(cfg.critic)(embedder=ConstantEmbedder(), model=None)
    real = dialogues[0]
    copied = partner_copy(real, np.random.default_rng(0))
    (good, bad) = critic.score([real, dataclasses.replace(copied, id="copied")])
    assert bad.values["copying"] < 5 and bad.overall < good.overall - 0.5
    assert "gated by copying" in bad.overall_reason
