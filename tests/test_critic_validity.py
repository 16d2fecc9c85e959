"""The default critic tells real Persona-Chat dev dialogues from the same dialogues with
swapped personas (real MiniLM embedder, the critic exactly as conf/critic/default.yaml builds it),
and its contradiction expert (trained once for this file, tests/conftest.py) sees a negated fact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.failures import Contradiction
from bench.critic_validity import auc, build_critic, swap_personas
from bench.injections import contradicting_line
from tests.conftest import PERSONACHAT

pytestmark = pytest.mark.skipif(not PERSONACHAT.is_file(), reason="shared Persona-Chat data missing")


@pytest.fixture(scope="module")
def dev_episodes():
    from agents.importers import personachat_episodes, personachat_personas, read_personachat

    dialogues = read_personachat(PERSONACHAT, "dev")[:40]
    return personachat_episodes(dialogues, personachat_personas(dialogues))


def test_default_critic_separates_real_from_swapped_personas(dev_episodes, contradiction_registry) -> None:
    import numpy as np

    critic = build_critic("default", None, contradiction_registry)
    assert "judge" not in critic.scorers  # weight 0 with the embedded model: never built
    rng = np.random.default_rng(0)
    swapped = [swap_personas(e, dev_episodes[(i + 1) % len(dev_episodes)], rng)
               for i, e in enumerate(dev_episodes)]
    real_scores, swapped_scores = critic.score(dev_episodes), critic.score(swapped)
    overall_auc = auc([s.overall for s in real_scores], [s.overall for s in swapped_scores])
    persona_auc = auc([s.values["persona_consistency"] for s in real_scores],
                      [s.values["persona_consistency"] for s in swapped_scores])
    assert persona_auc >= 0.9, persona_auc
    assert overall_auc >= 0.8, overall_auc
    assert all(1.0 <= s.overall <= 5.0 for s in real_scores + swapped_scores)


def test_the_contradiction_expert_sees_a_negated_persona_fact(
        dev_episodes, contradiction_registry: Path) -> None:
    expert = Contradiction(scorer="contradiction", registry_root=str(contradiction_registry))
    rng = np.random.default_rng(1)
    dialogues = dev_episodes[:8]
    broken = [contradicting_line(d, rng) for d in dialogues]
    before = [j["contradiction"][0] for j in expert.score(dialogues, {})]
    after = [j["contradiction"][0] for j in expert.score([b for b in broken if b], {})]
    assert np.mean(after) < np.mean(before) and sum(a < b for a, b in zip(after, before, strict=False)) >= 6
