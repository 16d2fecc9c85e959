"""The default critic tells real Persona-Chat dev dialogues from the same dialogues with
swapped personas (real MiniLM embedder, the critic exactly as conf/critic/default.yaml builds it)."""

from __future__ import annotations

import pytest

from bench.critic_validity import auc, build_critic, swap_personas
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
