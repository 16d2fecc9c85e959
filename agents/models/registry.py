"""Reading the model registry: trained LoRA adapters and scorers, versioned on disk as
``<root>/models/<name>/<version>/`` (1, 2, ...) with a card.json and a README.md model card.
Registering new versions is training's job (`training/registry.py`); everything that loads a
trained model back (adapters, the memory selector, compatibility scorers) reads it here."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UsageError

CARD = "card.json"
README = "README.md"
# No "." in a name: adapters load into peft under their registry ref, and peft refuses module
# names with a dot (a loop in runs/exp.2 crashed 8 minutes in when its adapter loaded).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def read_card(folder: Path) -> dict[str, Any]:
    path = Path(folder) / CARD
    if not path.is_file():
        raise UsageError(f"{folder}: no {CARD} (not a Salon dataset or model folder)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"{path}: cannot be read as JSON ({error})") from error


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


class RegistryReader:
    """The registry's models, read-only: resolve "name" (its latest version) or "name:3"."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self.models = self.root / "models"

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

    def verified(self, ref: str) -> RegisteredModel:
        """``resolve``, then the folder checked against its card: every file recorded with its
        size and sha256, nothing more (a dropped-in pickle file would otherwise load)."""
        found = self.resolve(ref)
        verify_files(found)
        return found

    def _summary(self) -> str:
        names = self.names()
        if not names:
            return "none yet"
        return ", ".join(f"{n} (versions {', '.join(map(str, self.versions(n)))})" for n in names)


def verify_files(model: RegisteredModel) -> None:
    """One line when the folder differs from what was registered (files added, missing, changed)."""
    recorded = {f["path"]: f for f in model.card.get("files", [])}
    present = {p.relative_to(model.path).as_posix() for p in model.path.rglob("*")
               if p.is_file() and p.name not in (CARD, README)}
    extra, missing = sorted(present - set(recorded)), sorted(set(recorded) - present)
    changed = [name for name in sorted(present & set(recorded))
               if _digest(model.path / name) != recorded[name]["sha256"]]
    problems = [f"{label}: {', '.join(names)}" for label, names in
                (("files not registered", extra), ("missing", missing), ("changed since registered", changed))
                if names]
    if problems:
        raise UsageError(f"model {model.ref} at {model.path} does not match its card "
                         f"({'; '.join(problems)}): it is not loaded; register it again with task=train")


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(registry: RegistryReader, ref: str, kind: str, base: str, key: str) -> RegisteredModel:
    """A registered model of ``kind`` trained on ``base``, its files checked against its card,
    or one line (naming the config ``key``) saying what is wrong."""
    try:
        found = registry.verified(ref)
    except UsageError as error:
        raise UsageError(f"{key}={ref}: {error}") from None
    if found.kind != kind:
        raise UsageError(f"{key}={ref}: {found.ref} is a {found.kind}, not a {kind}")
    trained_on = str(found.card.get("base_model", ""))
    if trained_on != base:
        raise UsageError(f"{key}={ref}: {found.ref} was trained on {trained_on!r}, but the base model "
                         f"here is {base!r}; train it on this base or choose another model")
    return found
