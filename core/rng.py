"""The one seeded RNG tree (Mesa's rule: the model owns its randomness).

Every consumer draws from its own named stream, derived from the run's seed with
``numpy.random.SeedSequence``: the personas chosen, the A/B cohort, each round's pairing,
encounters (roles, scenes), sampling seeds and goals. One consumer's draws never shift
another's, and a round's streams depend only on (seed, name, round), so a resumed round
replays exactly without saved generator state."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PERSONAS, COHORT, PAIRING, ENCOUNTERS, SAMPLING, GOALS = (
    "personas", "cohort", "pairing", "encounters", "sampling", "goals")


def _key(part: str | int) -> int:
    """A stable 32-bit key for a stream name (Python's hash() changes between processes)."""
    if isinstance(part, int):
        return part
    return int.from_bytes(hashlib.sha256(part.encode()).digest()[:4], "little")


@dataclass(frozen=True)
class RngTree:
    """``RngTree(seed).stream("pairing", 3)``: the generator of round 3's pairing."""

    seed: int

    def stream(self, *path: str | int) -> np.random.Generator:
        """A fresh generator for the stream named by ``path`` (names and round numbers)."""
        sequence = np.random.SeedSequence(self.seed, spawn_key=tuple(_key(p) for p in path))
        return np.random.default_rng(sequence)

    def seed_of(self, *path: str | int) -> int:
        """A 31-bit seed for a library that takes an int (torch, a server's `seed`)."""
        return int(self.stream(*path).integers(2**31 - 1))


def per_conversation(seed: int | Sequence[int] | None, count: int) -> list[int | None]:
    """The seed of each of a call's ``count`` conversations, the one rule every chat backend
    follows: a list as given (one each), a call-wide seed s as s, s+1, ..., none as None each."""
    if seed is None:
        return [None] * count
    if isinstance(seed, int):
        return [seed + i for i in range(count)]
    if len(seed) != count:
        raise ValueError(f"{len(seed)} seeds for {count} conversations")
    return [int(s) for s in seed]
