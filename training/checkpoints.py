"""Trainer checkpoints that are safe to resume from. Resuming loads optimizer.pt, scheduler.pt
and rng_state.pth, which torch writes with pickle; transformers (5.x) reads each with
`torch.load(weights_only=True)`, which builds tensors and plain containers only and runs no
code. Salon checks a checkpoint the same way before resuming, so a tampered or foreign file is
refused in one line before training starts, skips a checkpoint a kill left half written, and
drops the pickled training_args.bin that Trainer saves but never reads back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import UsageError
from core.files import PICKLE_SUFFIXES

PREFIX = "checkpoint-"
COMPLETE = "trainer_state.json"  # written last: a checkpoint without it was cut short
ARGUMENTS = "training_args.bin"


def step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name[len(PREFIX):]) if checkpoint else 0


def last_complete(folder: Path) -> Path | None:
    """The latest checkpoint in ``folder`` that was written to the end (None: start afresh)."""
    complete = [p for p in folder.glob(f"{PREFIX}*") if p.name[len(PREFIX):].isdigit()
                and (p / COMPLETE).is_file()]
    return max(complete, key=step_of) if complete else None


def verified(checkpoint: Path) -> Path:
    """``checkpoint``, after every pickle file in it loaded as plain weights; else UsageError."""
    import torch
    from transformers.trainer_pt_utils import safe_globals  # the numpy types Trainer allows

    for path in sorted(p for p in checkpoint.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES):
        if path.name == ARGUMENTS:
            continue  # never loaded on resume (and no longer kept: drop_pickled_arguments)
        try:
            with safe_globals():
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # whatever refuses the file, it is not resumed
            reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            raise UsageError(f"checkpoint {checkpoint}: {path.name} does not load as plain weights "
                             f"({reason}); it is not resumed: delete {checkpoint.parent} to train "
                             "afresh") from None
    return checkpoint


def drop_pickled_arguments() -> Any:
    """A Trainer callback that removes training_args.bin (a pickled TrainingArguments) from each
    checkpoint once it is saved (transformers is imported only when a training starts)."""
    from transformers import TrainerCallback

    class DropPickledArguments(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            (Path(args.output_dir) / f"{PREFIX}{state.global_step}" / ARGUMENTS).unlink(missing_ok=True)
            return control

    return DropPickledArguments()
