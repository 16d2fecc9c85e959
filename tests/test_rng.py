"""The one seeded RNG tree: named streams, stable across processes, independent of each other."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from core.rng import RngTree

pytestmark = pytest.mark.fast


def test_a_stream_replays_exactly_from_the_seed_and_its_name() -> None:
    first = RngTree(7).stream("pairing", 3).random(5)
    assert np.array_equal(RngTree(7).stream("pairing", 3).random(5), first)
    assert not np.array_equal(RngTree(8).stream("pairing", 3).random(5), first)
    assert not np.array_equal(RngTree(7).stream("pairing", 4).random(5), first)


def test_one_consumers_draws_never_shift_anothers() -> None:
    tree = RngTree(0)
    alone = tree.stream("encounters", 0).random(4)
    tree.stream("pairing", 0).random(1000)  # another consumer draws a lot
    assert np.array_equal(tree.stream("encounters", 0).random(4), alone)
    assert not np.array_equal(tree.stream("goals", 0).random(4), alone)


def test_streams_are_the_same_in_another_process() -> None:
    code = "from core.rng import RngTree; print(RngTree(3).seed_of('sampling', 2))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == RngTree(3).seed_of("sampling", 2)
