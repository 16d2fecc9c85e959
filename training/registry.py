"""The model registry: trained LoRA adapters and scorers, versioned on disk as
``<root>/models/<name>/<version>/`` (1, 2, ...) with a card.json and a README.md model card.

Only safetensors weights are accepted: a file that needs pickle to load (``*.bin``, ``*.pt``,
...) can run code when it is opened, and registered models are loaded back automatically.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from environment.errors import UsageError
from training.cards import CARD, README, read_card, render_model_readme, utc_now, write_card

KINDS = ("adapter", "scorer")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class RegisteredModel:
    """One registered version: ``path`` holds its files and card."""

    name: str
    version: int
    path: Path
    card: dict[str, Any] = field(compare=False, hash=False)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def kind(self) -> str:
        return str(self.card.get("kind", ""))


class ModelRegistry:
    """Register model folders as new versions; resolve "name" (latest) or "name:3"."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self.models = self.root / "models"

    def register(self, name: str, kind: str, source_folder: Path, card: Mapping[str, Any]) -> RegisteredModel:
        """Copy ``source_folder`` into the next version of ``name``, atomically (temp, then rename)."""
        _check_request(name, kind, card)
        files = model_files(Path(source_folder))
        home = self.models / name
        home.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=home, prefix=".incoming-"))
        try:
            listing = [_copy(Path(source_folder), relative, temp) for relative in files]
            return self._publish(name, temp, {**card, "kind": kind, "files": listing})
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise

    def _publish(self, name: str, temp: Path, card: dict[str, Any]) -> RegisteredModel:
        """Rename the filled temp folder to the next free version (retrying if another
        registration took it first)."""
        version = max(self.versions(name), default=0) + 1
        while True:
            full = {**card, "name": name, "version": version, "registered": utc_now()}
            write_card(temp, full, render_model_readme(full))
            target = self.models / name / str(version)
            try:
                if not target.exists():
                    os.rename(temp, target)
                    return RegisteredModel(name, version, target, full)
            except OSError:
                if not target.exists():
                    raise
            version += 1

    def names(self) -> list[str]:
        if not self.models.is_dir():
            return []
        return sorted(p.name for p in self.models.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        home = self.models / name
        if not home.is_dir():
            return []
        return sorted(int(p.name) for p in home.iterdir()
                      if p.name.isdigit() and (p / CARD).is_file())

    def list(self) -> list[RegisteredModel]:
        """Every registered version, by name then version."""
        return [self._load(name, version) for name in self.names() for version in self.versions(name)]

    def resolve(self, ref: str) -> RegisteredModel:
        """``"name"`` (its latest version) or ``"name:3"``; a UsageError lists what exists."""
        name, _, wanted = str(ref).partition(":")
        if not NAME.fullmatch(name) or (wanted and not wanted.isdigit()):
            raise UsageError(f"model {ref!r} is invalid: use 'name' or 'name:version' (version 1, 2, ...)")
        versions = self.versions(name)
        if not versions:
            raise UsageError(f"no model {name!r} in the registry {self.models}; "
                             f"registered: {self._summary()}")
        version = int(wanted) if wanted else versions[-1]
        if version not in versions:
            raise UsageError(f"model {name!r} has no version {version}; versions: "
                             f"{', '.join(map(str, versions))}")
        return self._load(name, version)

    def _load(self, name: str, version: int) -> RegisteredModel:
        path = self.models / name / str(version)
        return RegisteredModel(name, version, path, read_card(path))

    def _summary(self) -> str:
        names = self.names()
        if not names:
            return "none yet"
        return ", ".join(f"{n} (versions {', '.join(map(str, self.versions(n)))})" for n in names)


def _check_request(name: str, kind: str, card: Mapping[str, Any]) -> None:
    if not NAME.fullmatch(str(name)):
        raise UsageError(f"model name {name!r} is invalid: letters, digits, '_', '.', '-' "
                         "(starting with a letter or digit, at most 100)")
    if kind not in KINDS:
        raise UsageError(f"model kind {kind!r} is invalid: one of {', '.join(KINDS)}")
    if not str(card.get("base_model") or "").strip():
        raise UsageError(f"the card of model {name!r} needs 'base_model' (the model it was trained from)")


def model_files(folder: Path) -> list[Path]:
    """The files to register (relative paths), after refusing pickle files and folders
    without safetensors weights."""
    if not folder.is_dir():
        raise UsageError(f"model folder {folder}: {'not a folder' if folder.exists() else 'not found'}")
    files = sorted(p.relative_to(folder) for p in folder.rglob("*")
                   if p.is_file() and p.name not in (CARD, README))
    pickled = [str(p) for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickled:
        raise UsageError(f"model folder {folder} holds files that need pickle to load: {', '.join(pickled)}; "
                         "only safetensors are accepted: save with save_pretrained(..., "
                         "safe_serialization=True) and leave out training_args.bin and optimizer states")
    if not any(p.suffix == ".safetensors" for p in files):
        raise UsageError(f"model folder {folder} holds no *.safetensors weights")
    return files


def _copy(source: Path, relative: Path, target: Path) -> dict[str, Any]:
    destination = target / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / relative, destination)
    digest = hashlib.sha256()
    with destination.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": relative.as_posix(), "bytes": destination.stat().st_size, "sha256": digest.hexdigest()}
