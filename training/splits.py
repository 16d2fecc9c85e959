"""The Persona-Chat splits, enforced: dialogues 0-39 are for development evaluation, 40-199 for
training and tuning (the warm start, the scorers, the discriminator), 200-999 (test) only for
evaluation. A command that would train on dialogues an evaluation of the same run reads stops
with one line, before any work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from agents.importers import PersonaChatDialogue, read_personachat
from core.errors import UsageError

DEV_EVAL = range(0, 40)
DEV_TRAIN = range(40, 200)
TEST = range(200, 1000)


def as_range(value: Sequence[int], key: str) -> range:
    """A [first, end) pair from the config as a range; one line if it is not one."""
    if len(value) != 2 or not all(isinstance(v, int) for v in value) or not 0 <= value[0] < value[1]:
        raise UsageError(f"{key}={list(value)!r} is invalid: allowed is [first, end) dialogue numbers, "
                         "e.g. [40, 200]")
    return range(int(value[0]), int(value[1]))


def refuse_overlap(trained: Mapping[str, range], evaluated: Mapping[str, range]) -> None:
    """One line naming the first training set that shares dialogues with an evaluation set."""
    for train_key, train in trained.items():
        if train.start < TEST.start <= train.stop - 1 or train.start >= TEST.start:
            raise UsageError(f"{train_key} trains on Persona-Chat test dialogues "
                             f"({train.start}-{train.stop - 1}); the test split "
                             f"({TEST.start}-{TEST.stop - 1}) is for evaluation only")
        for eval_key, evaluation in evaluated.items():
            shared = range(max(train.start, evaluation.start), min(train.stop, evaluation.stop))
            if len(shared):
                raise UsageError(
                    f"{train_key} trains on Persona-Chat dialogues {shared.start}-{shared.stop - 1}, which "
                    f"{eval_key} evaluates on: keep training within {DEV_TRAIN.start}-{DEV_TRAIN.stop - 1} "
                    f"and development evaluation within {DEV_EVAL.start}-{DEV_EVAL.stop - 1}")


def dialogues(path: Path, rows: range) -> list[PersonaChatDialogue]:
    """The dialogues numbered ``rows`` (within dev 0-199 or test 200-999, not across)."""
    split = "test" if rows.start >= TEST.start else "dev"
    found = read_personachat(path, split)
    return [d for d in found if d.index in rows]
