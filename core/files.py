"""Writing files so that a reader (or a crash) never sees half of one, and the file kinds that
are never loaded because opening them can run code."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# Files that need pickle to load: opening one can run arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w", **open_args: Any) -> Iterator[IO[Any]]:
    """A handle on a temp file beside ``path``; on a clean exit it is synced and renamed onto
    ``path`` (atomic), on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    if "b" not in mode:
        open_args.setdefault("encoding", "utf-8")
    try:
        with os.fdopen(descriptor, mode, **open_args) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


@contextlib.contextmanager
def staging_folder(beside: Path) -> Iterator[Path]:
    """An empty temp folder next to ``beside`` to fill; removed if the block fails or does not
    move it into place (see ``publish_folder``)."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=beside.parent, prefix=f".{beside.name}."))
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def publish_folder(filled: Path, target: Path) -> bool:
    """Rename the filled folder onto ``target`` if ``target`` is free (absent, or an empty
    folder); False if another writer got there first. The rename is atomic: readers see the
    whole folder or none."""
    target = Path(target)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    try:
        if target.exists():
            return False
        os.rename(filled, target)
        return True
    except OSError:
        if target.exists():
            return False
        raise
