"""The model registry: trained LoRA adapters and scorers, versioned on disk as
``<root>/models/<name>/<version>/`` (1, 2, ...) with a card.json and a README.md model card.

Only safetensors weights are accepted: a file that needs pickle to load (``*.bin``, ``*.pt``,
...) can run code when it is opened, and registered models are loaded back automatically.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.models.registry import CARD, NAME, README, RegisteredModel, RegistryReader
from core.errors import UsageError
from core.files import PICKLE_SUFFIXES, publish_folder, staging_folder
from training.cards import render_model_readme, utc_now, write_card

KINDS = ("adapter", "scorer")


class ModelRegistry(RegistryReader):
    """The registry with registration: copy a model folder in as the next version of a name."""

    def register(self, name: str, kind: str, source_folder: Path, card: Mapping[str, Any]) -> RegisteredModel:
        """Copy ``source_folder`` into the next version of ``name``, atomically (temp, then rename)."""
        _check_request(name, kind, card)
        files = model_files(Path(source_folder))
        with staging_folder(self.models / name / ".incoming") as temp:
            listing = [_copy(Path(source_folder), relative, temp) for relative in files]
            return self._publish(name, temp, {**card, "kind": kind, "files": listing})

    def _publish(self, name: str, temp: Path, card: dict[str, Any]) -> RegisteredModel:
        """Rename the filled temp folder to the next free version (retrying if another
        registration took it first)."""
        version = max(self.versions(name), default=0) + 1
        while True:
            full = {**card, "name": name, "version": version, "registered": utc_now()}
            write_card(temp, full, render_model_readme(full))
            if publish_folder(temp, self.models / name / str(version)):
                return RegisteredModel(name, version, self.models / name / str(version), full)
            version += 1


def _check_request(name: str, kind: str, card: Mapping[str, Any]) -> None:
    if not NAME.fullmatch(str(name)):
        raise UsageError(f"model name {name!r} is invalid: letters, digits, '_' and '-' "
                         "(starting with a letter or digit, at most 100; no '.', which peft refuses)")
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
