"""The Persona record: CharacterChat's profile fields, Persona-Chat facts, MIRACLE attributes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from core.errors import require

MBTI_TYPES = tuple(
    a + b + c + d for a in "EI" for b in "SN" for c in "TF" for d in "JP"
)
ATTRIBUTE_CHOICES = {
    "language_style": ("", "plain", "lyrical"),
    "attitude": ("", "optimistic", "pessimistic"),
    "mentality": ("", "emotional", "critical"),
}
PROFILE_FIELDS = (
    "gender", "region", "tone", "job", "personality", "strengths", "weaknesses", "hobby",
    "growth_experience", "family", "work", "social_life", "emotional_state",
    "living_conditions", "recent_worry",
)
MAX_FACTS = 10
MAX_TEXT = 2000


@dataclass(frozen=True)
class Attributes:
    """MIRACLE's controllable attributes ('' = as the persona has them)."""

    language_style: str = ""
    attitude: str = ""
    mentality: str = ""

    def __post_init__(self) -> None:
        for name, allowed in ATTRIBUTE_CHOICES.items():
            value = getattr(self, name)
            require(value in allowed, name, f"allowed is {', '.join(allowed[1:])}", value)

    def chosen(self) -> dict[str, str]:
        """The attributes that are set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


class PersonaError(ValueError):
    """A persona field holds an invalid value; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"field {field_name!r}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class Persona:
    """One character's identity. Facts are short first-person lines (Persona-Chat style)."""

    id: str
    name: str
    facts: tuple[str, ...]
    mbti: str = ""
    age: int | None = None
    gender: str = ""
    region: str = ""
    tone: str = ""
    job: str = ""
    personality: str = ""
    strengths: str = ""
    weaknesses: str = ""
    hobby: str = ""
    growth_experience: str = ""
    family: str = ""
    work: str = ""
    social_life: str = ""
    emotional_state: str = ""
    living_conditions: str = ""
    recent_worry: str = ""
    memories: tuple[str, ...] = ()
    language_style: str = ""
    attitude: str = ""
    mentality: str = ""
    source: str = "manual"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_text("id", self.id, required=True, limit=120)
        _check_text("name", self.name, required=True, limit=120)
        for name in PROFILE_FIELDS:
            _check_text(name, getattr(self, name))
        _check_lines("facts", self.facts, low=1, high=MAX_FACTS)
        _check_lines("memories", self.memories, low=0, high=10_000)
        if self.mbti and self.mbti not in MBTI_TYPES:
            raise PersonaError("mbti", f"{self.mbti!r} is not one of the 16 MBTI types")
        if self.age is not None and not (isinstance(self.age, int) and 0 < self.age < 130):
            raise PersonaError("age", f"{self.age!r} must be a whole number of years, 1-129")
        for name, allowed in ATTRIBUTE_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise PersonaError(name, f"{getattr(self, name)!r} must be one of {allowed[1:]}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Persona:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PersonaError(unknown[0], f"unknown field; known fields: {', '.join(sorted(known))}")
        for name in ("id", "name", "facts"):
            if name not in data:
                raise PersonaError(name, "is missing")
        values = dict(data)
        for name in ("facts", "memories"):
            if name in values:
                if not isinstance(values[name], list | tuple):
                    raise PersonaError(name, "must be a list of strings")
                values[name] = tuple(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["facts"] = list(self.facts)
        data["memories"] = list(self.memories)
        if not self.extra:
            data.pop("extra")
        return data

    def with_attributes(self, attributes: Attributes) -> Persona:
        """A copy with the MIRACLE attributes that ``attributes`` sets."""
        return dataclasses.replace(self, **attributes.chosen()) if attributes.chosen() else self

    def profile_lines(self) -> list[str]:
        """The filled-in profile fields as 'Field: value' lines, for prompts and embeddings."""
        lines = [f"Name: {self.name}"]
        if self.age:
            lines.append(f"Age: {self.age}")
        if self.mbti:
            lines.append(f"MBTI: {self.mbti}")
        for name in PROFILE_FIELDS:
            value = getattr(self, name)
            if value:
                lines.append(f"{name.replace('_', ' ').capitalize()}: {value}")
        return lines

    def describe(self) -> str:
        """A compact text of the persona (profile and facts), e.g. for similarity scoring."""
        return " ".join([*self.profile_lines(), *self.facts])


def _check_text(name: str, value: object, *, required: bool = False, limit: int = MAX_TEXT) -> None:
    if not isinstance(value, str):
        raise PersonaError(name, f"must be text, got {type(value).__name__}")
    if required and not value.strip():
        raise PersonaError(name, "must not be empty")
    if len(value) > limit:
        raise PersonaError(name, f"is {len(value)} characters long; the limit is {limit}")


def _check_lines(name: str, values: tuple[str, ...], *, low: int, high: int) -> None:
    if not isinstance(values, tuple):
        raise PersonaError(name, "must be a list of strings")
    if not low <= len(values) <= high:
        raise PersonaError(name, f"has {len(values)} entries; allowed: {low} to {high}")
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise PersonaError(f"{name}[{index}]", "must be non-empty text")
        if len(value) > MAX_TEXT:
            raise PersonaError(f"{name}[{index}]", f"longer than {MAX_TEXT} characters")
