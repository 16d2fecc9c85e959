"""Salon's own failures, injected into Salon's own episodes: one corrupted copy of every episode
per failure, scored through `task=score` beside the real ones (bench/critic_validity.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from agents.degeneration import copies
from core.records import Episode, Turn
from training.contradiction import negate
from training.scorers import auc as roc_auc

Injection = Callable[[Episode, np.random.Generator], Episode | None]
LEAD_INS = ("", "Actually, ", "To be honest, ", "Well, ")


def _spoken(episode: Episode) -> list[int]:
    return [i for i, t in enumerate(episode.turns) if not t.failed]


def _with_line(episode: Episode, index: int, text: str) -> Episode:
    turns = list(episode.turns)
    turns[index] = Turn(turns[index].speaker, text, memory_ids=turns[index].memory_ids,
                        memories=turns[index].memories)
    return dataclasses.replace(episode, turns=tuple(turns))


def _pick(candidates: Sequence[int], rng: np.random.Generator) -> int | None:
    return int(rng.choice(list(candidates))) if candidates else None


def partner_copy(episode: Episode, rng: np.random.Generator) -> Episode | None:
    """A line replaced by the partner's line it answers."""
    lines = _spoken(episode)
    k = _pick(lines[1:], rng)
    return None if k is None else _with_line(episode, k, episode.turns[lines[lines.index(k) - 1]].text)


def own_copy(episode: Episode, rng: np.random.Generator) -> Episode | None:
    """A line replaced by the speaker's own line two turns back."""
    lines = _spoken(episode)
    k = _pick(lines[2:], rng)
    return None if k is None else _with_line(episode, k, episode.turns[lines[lines.index(k) - 2]].text)


def self_address(episode: Episode, rng: np.random.Generator) -> Episode | None:
    """A line that opens with its own speaker's first name."""
    k = _pick(_spoken(episode), rng)
    if k is None:
        return None
    turn = episode.turns[k]
    text = turn.text[:1].lower() + turn.text[1:] if not turn.text.startswith("I ") else turn.text
    return _with_line(episode, k, f"{turn.speaker.split(' ')[0]}, {text}")


def recited_fact(episode: Episode, rng: np.random.Generator) -> Episode | None:
    """A line replaced by one of its speaker's persona facts, word for word."""
    lines = [i for i in _spoken(episode) if episode.personas.get(episode.turns[i].speaker)]
    k = _pick(lines, rng)
    if k is None:
        return None
    fact = str(rng.choice(list(episode.personas[episode.turns[k].speaker])))
    return _with_line(episode, k, fact[:1].upper() + fact[1:])


def contradicting_line(episode: Episode, rng: np.random.Generator) -> Episode | None:
    """A line replaced by the negation of one of its speaker's persona facts."""
    options = [(i, n) for i in _spoken(episode)
               for f in episode.personas.get(episode.turns[i].speaker, ()) if (n := negate(f))]
    if not options:
        return None
    k, negated = options[int(rng.integers(len(options)))]
    lead = str(rng.choice(LEAD_INS))
    text = lead + (negated if lead else negated[:1].upper() + negated[1:])
    return _with_line(episode, k, text)


INJECTIONS: dict[str, tuple[str, Injection]] = {
    "copies the partner's previous line": ("copying", partner_copy),
    "copies the speaker's own earlier line": ("copying", own_copy),
    "addresses its own speaker": ("self_address", self_address),
    "recites a persona fact": ("recitation", recited_fact),
    "contradicts a persona fact": ("contradiction", contradicting_line),
}


def read_run(folder: Path) -> list[Episode]:
    return read_run_file(folder / "episodes.jsonl")


def score_through_task(episodes: Sequence[Episode], characters: Path, critic: str, registry: Path,
                       work: Path) -> list[Episode]:
    """Write the episodes beside a copy of the run's characters.jsonl and score them with
    `task=score` (the task's own `run`), as `python run.py task=score input=...` would."""
    from bench.critic_validity import critic_config
    from environment.tasks import score

    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(characters, work / "characters.jsonl")
    source = work / "episodes.jsonl"
    source.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in episodes))
    cfg = critic_config(critic, registry, ["task=score", f"input={source}", f"paths.run_dir={work / 'out'}"])
    score.run(cfg)
    return read_run_file(work / "out" / "episodes.scored.jsonl")


def read_run_file(path: Path) -> list[Episode]:
    return [Episode.from_dict(json.loads(line)) for line in path.read_text().splitlines()]


def _auc(real: Sequence[float], corrupted: Sequence[float]) -> float:
    a = [v for v in real if not np.isnan(v)]
    b = [v for v in corrupted if not np.isnan(v)]
    if not a or not b:
        return float("nan")
    return roc_auc(np.array([*a, *b]), np.array([1] * len(a) + [0] * len(b)))


def generated_validity(runs: Sequence[Path], critic: str, registry: Path, work: Path, seed: int
                       ) -> list[dict]:
    """Per injected failure: AUC of the real episodes over the corrupted ones, on the failure's
    own dimension and on overall, all scored through `task=score`, run by run."""
    rng = np.random.default_rng(seed)
    real: list[Episode] = []
    corrupted: dict[str, list[Episode]] = {label: [] for label in INJECTIONS}
    for n, run in enumerate(runs):
        episodes = read_run(run)
        real += score_through_task(episodes, run / "characters.jsonl", critic, registry, work / f"real{n}")
        for m, (label, (_, inject)) in enumerate(INJECTIONS.items()):
            broken = [b for e in episodes if (b := inject(e, rng)) is not None]
            corrupted[label] += score_through_task(broken, run / "characters.jsonl", critic, registry,
                                                   work / f"run{n}-{m}")
    rows = []
    for label, (dimension, _) in INJECTIONS.items():
        broken = corrupted[label]
        rows.append({"generated": label, "episodes": f"{len(real)} real, {len(broken)} corrupted",
                     dimension: round(_auc([e.scores.values[dimension] for e in real],
                                           [e.scores.values[dimension] for e in broken]), 3),
                     "overall": round(_auc([e.scores.overall for e in real],
                                           [e.scores.overall for e in broken]), 3)})
    rows.append(_real_failures(real))
    return rows


def _real_failures(real: Sequence[Episode]) -> dict:
    """How often the real episodes themselves fail each check (they lower the AUCs above)."""
    found = {d: sum(e.scores.values.get(d, 5.0) < 5.0 for e in real)
             for d in ("copying", "self_address", "recitation", "contradiction")}
    repeats = sum(any(copies(t.text, u.text) for j, t in enumerate(e.turns) for u in e.turns[:j])
                  for e in real)
    return {"generated": "real episodes failing each check", "episodes": len(real), **found,
            "with a near repeat": repeats}
