"""Does each critic dimension tell real dialogues from corrupted ones?

`python -m bench.critic_validity [--dialogues 200] [--critic default] [--runs RUN ...]` scores
Persona-Chat dev dialogues (0-199, never the test split) and, per dimension, the same dialogues
with one corruption aimed at that dimension; it prints the AUC (probability that the real
dialogue scores higher) per dimension and scorer as a JSON line. An AUC near 0.5 means the
scorer cannot see what it claims to measure; such a scorer must not carry weight in `overall`.

With ``--runs``, it also takes the episodes of those Salon run folders (what Salon's own
generator says) and injects into each one failure at a time: a line replaced by the partner's
previous line, by the speaker's own line two turns back, a line that opens with its speaker's
name, a recited persona fact, a line contradicting a persona fact. Real and corrupted episodes
are scored through `task=score` (with the run's characters.jsonl), and it reports the AUC of
real over corrupted on the failure's own dimension and on `overall`.

For the role-based dimensions the first speaker plays the seeker, the second the supporter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from agents.importers import personachat_episodes, personachat_personas, read_personachat
from bench.common import log
from bench.injections import generated_validity
from core.records import Episode, Turn
from training.scorers import auc as roc_auc

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PERSONACHAT = Path(__file__).resolve().parents[2] / "shared/data/personachat/valid_both_original_no_cands.txt"
ACKS = ("ok.", "i see.", "yes.", "cool.", "sure.", "hmm.")
Corruption = Callable[[Episode, Episode, np.random.Generator], Episode]


def as_support(episode: Episode) -> Episode:
    seeker, supporter = episode.participants
    return dataclasses.replace(episode, roles={seeker: "seeker", supporter: "supporter"})


def swap_personas(episode: Episode, other: Episode, rng: np.random.Generator) -> Episode:
    facts = [other.personas[name] for name in other.participants]
    return dataclasses.replace(episode, personas=dict(zip(episode.participants, facts, strict=True)))


def _replace_lines(episode: Episode, speaker: str, lines: Sequence[str]) -> Episode:
    """``speaker``'s lines replaced in order by ``lines`` (cycled)."""
    turns, k = [], 0
    for turn in episode.turns:
        if turn.speaker == speaker:
            turn = dataclasses.replace(turn, text=lines[k % len(lines)])
            k += 1
        turns.append(turn)
    return dataclasses.replace(episode, turns=tuple(turns))


def foreign_lines(episode: Episode, other: Episode, rng: np.random.Generator) -> Episode:
    """Every line replaced by a random line of the other dialogues (no line follows from the
    one before; lengths and style stay those of real chat)."""
    turns = tuple(Turn(t.speaker, str(rng.choice(other.meta["pool"]))) for t in episode.turns)
    return dataclasses.replace(episode, turns=turns)


def repeated_lines(episode: Episode, other: Episode, rng: np.random.Generator) -> Episode:
    for speaker in episode.participants:
        episode = _replace_lines(episode, speaker, episode.utterances(speaker)[:1])
    return episode


def seeker_acknowledges(episode: Episode, other: Episode, rng: np.random.Generator) -> Episode:
    seeker = episode.participants[0]
    first = episode.utterances(seeker)[:1]
    return _replace_lines(episode, seeker, first + [str(rng.choice(ACKS)) for _ in range(30)])


def seeker_parrots(episode: Episode, other: Episode, rng: np.random.Generator) -> Episode:
    """Each of the seeker's lines replaced by the line it answers (a parroting model)."""
    seeker, turns = episode.participants[0], list(episode.turns)
    for i in range(1, len(turns)):
        if turns[i].speaker == seeker:
            turns[i] = dataclasses.replace(turns[i], text=turns[i - 1].text)
    return dataclasses.replace(episode, turns=tuple(turns))


def supporter_off_topic(episode: Episode, other: Episode, rng: np.random.Generator) -> Episode:
    return _replace_lines(episode, episode.participants[1], other.utterances(other.participants[1]))


def seeker_reversed(episode: Episode, other: Episode, rng: np.random.Generator) -> Episode:
    seeker = episode.participants[0]
    return _replace_lines(episode, seeker, episode.utterances(seeker)[::-1])


CHECKS: dict[str, list[tuple[str, Corruption]]] = {
    "persona_consistency": [("swapped personas", swap_personas)],
    "naturalness": [("lines from another dialogue", foreign_lines), ("repeated lines", repeated_lines)],
    "seeker_engaged": [("seeker only acknowledges", seeker_acknowledges),
                       ("lines from another dialogue", foreign_lines),
                       ("seeker parrots the partner", seeker_parrots)],
    "problem_solved": [("supporter off topic", supporter_off_topic)],
    "mood_improved": [("seeker's lines reversed", seeker_reversed)],
}


def auc(real: Sequence[float], corrupted: Sequence[float]) -> float:
    """P(real > corrupted) over the pairs where both scores exist (`training.scorers.auc`)."""
    pairs = [(r, c) for r, c in zip(real, corrupted, strict=True) if not (np.isnan(r) or np.isnan(c))]
    if not pairs:
        return float("nan")
    a, b = zip(*pairs, strict=True)
    return roc_auc(np.array([*a, *b]), np.array([1] * len(a) + [0] * len(b)))


def validity(critic, episodes: list[Episode], seed: int) -> list[dict]:
    """AUC per (dimension, corruption) for each expert of the dimension and the critic's value."""
    rng = np.random.default_rng(seed)
    pool = [t.text for e in episodes for t in e.turns]
    others = [dataclasses.replace(episodes[(i + 1) % len(episodes)], meta={"pool": pool})
              for i in range(len(episodes))]
    rows = []
    for dimension, checks in CHECKS.items():
        for label, corrupt in checks:
            corrupted = [corrupt(e, o, rng) for e, o in zip(episodes, others, strict=True)]
            rows.append(_row(critic, dimension, label, episodes, corrupted))
    rows.append(_row(critic, "overall", "swapped personas", episodes,
                     [swap_personas(e, o, rng) for e, o in zip(episodes, others, strict=True)]))
    return rows


def _row(critic, dimension: str, label: str, real: list[Episode], corrupted: list[Episode]) -> dict:
    row = {"dimension": dimension, "corruption": label}
    for name, scorer in critic.scorers.items():
        a, b = scorer.score(real, {}), scorer.score(corrupted, {})
        if dimension in a[0]:
            row[name] = round(auc([j[dimension][0] for j in a], [j[dimension][0] for j in b]), 3)
    real_scores, corrupted_scores = critic.score(real), critic.score(corrupted)
    pick = (lambda s: s.overall) if dimension == "overall" else (lambda s: s.values[dimension])
    row["critic"] = round(auc([pick(s) for s in real_scores], [pick(s) for s in corrupted_scores]), 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=200, help="dev dialogues to use (<= 200)")
    parser.add_argument("--critic", default="default", help="a conf/critic/*.yaml name")
    parser.add_argument("--judge-weight", type=float, default=None,
                        help="force every dimension's judge expert to this weight (to validate it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", nargs="*", type=Path, default=[],
                        help="Salon run folders whose episodes get injected failures (scored via task=score)")
    parser.add_argument("--registry", type=Path, default=None,
                        help="registry with the contradiction scorer (trained into a temp one if absent)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="salon-validity-") as temp:
        registry = args.registry or Path(temp) / "registry"
        ensure_contradiction_scorer(registry)
        critic = build_critic(args.critic, args.judge_weight, registry)
        dialogues = read_personachat(PERSONACHAT, "dev")[: args.dialogues]
        episodes = [as_support(e) for e in personachat_episodes(dialogues, personachat_personas(dialogues))]
        rows = validity(critic, episodes, args.seed)
        generated = generated_validity(args.runs, args.critic, registry, Path(temp), args.seed) \
            if args.runs else []
    for row in [*rows, *generated]:
        print(" | ".join(f"{k}={v}" for k, v in row.items()))
    print(json.dumps({"benchmark": "critic_validity", "dialogues": len(episodes), "rows": rows,
                      "generated": generated}))


def critic_config(name: str, registry: Path, overrides: Sequence[str] = ()):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"critic={name}", f"paths.registry_root={registry}", *overrides])


def ensure_contradiction_scorer(registry: Path) -> None:
    """Train the critic's contradiction expert into ``registry`` unless it is there already."""
    from agents.models.registry import RegistryReader

    if RegistryReader(registry).versions("contradiction"):
        return
    from training.tasks import train

    log(f"training the contradiction scorer into {registry} (Persona-Chat dev 40-199, ~2 min)")
    train.run(critic_config("default", registry, ["task=train", "training.target=contradiction",
                                                   f"paths.run_dir={registry.parent / 'contradiction'}"]))


def build_critic(name: str, judge_weight: float | None, registry: Path):
    from hydra.utils import instantiate

    from environment.runtime import quiet_libraries
    from memory.embedder import SentenceEmbedder

    quiet_libraries()
    overrides = [f"critic.dimensions.{d}.experts.judge={judge_weight}" for d in CHECKS] \
        if judge_weight is not None else []
    cfg = critic_config(name, registry, overrides)
    model = instantiate(cfg.model) if judge_weight else None
    return instantiate(cfg.critic)(embedder=SentenceEmbedder(), model=model)


if __name__ == "__main__":
    main()
