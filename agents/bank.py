"""The character bank: template-generated MBTI characters, JSON Lines load/save, selection.

The shipped default bank (16 types x 4 = 64 characters) was written from the repo root with

    .venv/bin/python -m agents.bank 4 0

(arguments: characters per type, seed; the project exposes it as
``python run.py task=bank bank.per_type=4``). The raw material lives in ``agents/data``:
``mbti.yaml`` (the 16 types and their jobs, families, homes, worries ...) and ``names.yaml``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agents.persona import MBTI_TYPES, Persona, PersonaError
from core.errors import UsageError, is_whole, require
from core.files import atomic_write_text

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_BANK = DATA_DIR / "bank.jsonl"
FIRST_PERSON = {"my": "my", "me": "me", "myself": "myself"}
PRONOUNS = {
    "female": {"my": "her", "me": "her", "myself": "herself"},
    "male": {"my": "his", "me": "him", "myself": "himself"},
}


@dataclass(frozen=True)
class Choice:
    """One job, family situation, home or worry from mbti.yaml, with when it fits."""

    text: str
    fact: str = ""
    memory: str = ""
    title: str = ""
    ages: tuple[int, int] = (1, 129)
    tags: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()

    def fits(self, age: int, tags: set[str], banned: set[str]) -> bool:
        """Whether this choice suits a character of ``age`` whose earlier choices gave ``tags``
        and ruled out ``banned`` tags."""
        return (
            self.ages[0] <= age <= self.ages[1]
            and set(self.requires) <= tags
            and not set(self.excludes) & tags
            and not set(self.tags) & banned
        )


@dataclass(frozen=True)
class TypeProfile:
    """The raw material for characters of one MBTI type."""

    mbti: str
    description: str
    tone: str
    keywords: tuple[str, ...]
    strengths: tuple[str, ...]
    weaknesses: tuple[str, ...]
    jobs: tuple[Choice, ...]
    hobbies: tuple[str, ...]
    social_life: tuple[str, ...]
    emotional_states: tuple[str, ...]
    growth_experiences: tuple[Choice, ...]
    family: tuple[Choice, ...]
    living: tuple[Choice, ...]
    worries: tuple[Choice, ...]


@dataclass(frozen=True)
class TemplateData:
    """Everything the template generator draws from (mbti.yaml and names.yaml)."""

    types: dict[str, TypeProfile]
    childhood_memories: tuple[str, ...]
    hobby_memories: tuple[str, ...]
    first_names: dict[str, tuple[str, ...]]
    last_names: tuple[str, ...]
    regions: tuple[tuple[str, str], ...]


def load_template_data(
    mbti_path: Path = DATA_DIR / "mbti.yaml", names_path: Path = DATA_DIR / "names.yaml"
) -> TemplateData:
    """Read the MBTI and name files into typed records."""
    mbti = read_yaml(mbti_path)
    names = read_yaml(names_path)
    return TemplateData(
        types={key: _type_profile(key, raw) for key, raw in mbti["types"].items()},
        childhood_memories=tuple(mbti["common"]["childhood_memories"]),
        hobby_memories=tuple(mbti["common"]["hobby_memories"]),
        first_names={g: tuple(v) for g, v in names["first_names"].items()},
        last_names=tuple(names["last_names"]),
        regions=tuple((r["city"], r["country"]) for r in names["regions"]),
    )


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with the C loader when libyaml is present (10x faster here)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)


def _type_profile(mbti: str, raw: dict[str, Any]) -> TypeProfile:
    lists = ("keywords", "strengths", "weaknesses", "hobbies", "social_life", "emotional_states")
    return TypeProfile(
        mbti=mbti,
        description=raw["description"],
        tone=raw["tone"],
        jobs=tuple(_job(entry) for entry in raw["jobs"]),
        family=tuple(_choice(entry) for entry in raw["family"]),
        living=tuple(_choice(entry) for entry in raw["living"]),
        worries=tuple(_choice(entry) for entry in raw["worries"]),
        growth_experiences=tuple(_choice(entry) for entry in raw["growth_experiences"]),
        **{name: tuple(raw[name]) for name in lists},
    )


def _choice(entry: str | dict[str, Any]) -> Choice:
    if isinstance(entry, str):
        return Choice(text=entry)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
    return Choice(**values)


def _job(entry: dict[str, Any]) -> Choice:
    title = entry["title"]
    article = "an" if title[0].lower() in "aeiou" else "a"
    return Choice(
        text=entry["work"],
        title=title,
        fact=entry.get("fact", f"i work as {article} {title}."),
        memory=entry["memory"],
        ages=tuple(entry["ages"]),
        tags=tuple(entry.get("tags", ("employed",))),
    )


@dataclass(frozen=True)
class _Draw:
    """The random choices behind one character, before any text is rendered."""

    gender: str
    job: Choice
    age: int
    family: Choice
    living: Choice
    worry: Choice
    region: tuple[str, str]
    slots: dict[str, str]
    hobbies: tuple[str, ...]
    growth: str


def generate_template_bank(
    per_type: int, rng: np.random.Generator, *, data: TemplateData | None = None
) -> list[Persona]:
    """``per_type`` characters of each of the 16 MBTI types, ids like ``infj-007``."""
    require(isinstance(per_type, int | np.integer) and per_type >= 1, "bank.per_type", "a whole number >= 1",
            per_type)
    data = data or load_template_data()
    capacity = sum(len(v) for v in data.first_names.values()) * len(data.last_names)
    require(16 * per_type <= capacity // 2, "bank.per_type",
            f"at most {capacity // 32} (names.yaml yields {capacity} unique names)", per_type)
    used: set[str] = set()
    personas = []
    for mbti in MBTI_TYPES:
        for number in range(1, per_type + 1):
            draw = _draw(data, data.types[mbti], rng)
            name = _unique_name(data, draw.gender, used, rng)
            personas.append(_persona(f"{mbti.lower()}-{number:03d}", name, data,
                                     data.types[mbti], draw, rng))
    return personas


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    if not items:
        raise ValueError("nothing to pick from")
    return items[int(rng.integers(len(items)))]


def _sample(rng: np.random.Generator, items: Sequence[Any], k: int) -> list[Any]:
    return [items[int(i)] for i in rng.choice(len(items), size=k, replace=False)]


def _draw(data: TemplateData, profile: TypeProfile, rng: np.random.Generator) -> _Draw:
    gender = _pick(rng, ("female", "male"))
    job = _pick(rng, profile.jobs)
    age = int(rng.integers(job.ages[0], job.ages[1] + 1))
    tags, banned = set(job.tags), set(job.excludes)
    picked = []
    for options in (profile.family, profile.living, profile.worries):
        choice = _pick(rng, [c for c in options if c.fits(age, tags, banned)])
        tags |= set(choice.tags)
        banned |= set(choice.excludes)
        picked.append(choice)
    hometown = _pick(rng, data.regions)
    at_home = "with_parents" in tags or "{hometown}" in picked[1].text
    region = hometown if at_home else _pick(rng, data.regions)
    slots = {
        "city": region[0], "country": region[1], "hometown": hometown[0],
        "young_age": str(rng.integers(6, 16)),
        "sibling": _pick(rng, ("brother", "sister")), "parent": _pick(rng, ("mother", "father")),
        "aunt": "aunt" if gender == "female" else "uncle",
    }
    return _Draw(
        gender=gender, job=job, age=age, family=picked[0],
        living=picked[1], worry=picked[2], region=region, slots=slots,
        hobbies=tuple(_sample(rng, profile.hobbies, 2)),
        growth=_pick(rng, [g for g in profile.growth_experiences if g.fits(age, tags, banned)]).text,
    )


def _unique_name(data: TemplateData, gender: str, used: set[str], rng: np.random.Generator) -> str:
    for _ in range(10_000):
        name = f"{_pick(rng, data.first_names[gender])} {_pick(rng, data.last_names)}"
        if name not in used:
            used.add(name)
            return name
    raise UsageError(f"names.yaml has too few {gender} names for a bank this large")


def _fill(template: str, slots: dict[str, str], pronouns: dict[str, str]) -> str:
    text = template.format_map({**slots, **pronouns})
    return text[:1].upper() + text[1:]


def _listing(items: Sequence[str], separator: str = ", ", last: str = " and ") -> str:
    text = separator.join(items[:-1]) + last + items[-1] if len(items) > 1 else items[0]
    return text[:1].upper() + text[1:] + "."


def _persona(pid: str, name: str, data: TemplateData, profile: TypeProfile, draw: _Draw,
             rng: np.random.Generator) -> Persona:
    say = PRONOUNS[draw.gender]

    def profile_text(template: str) -> str:
        return _fill(template, draw.slots, say)

    return Persona(
        id=pid, name=name, mbti=profile.mbti, age=draw.age, gender=draw.gender,
        region=f"{draw.region[0]}, {draw.region[1]}", tone=profile.tone, job=draw.job.title,
        personality=_listing(_sample(rng, profile.keywords, 3)),
        strengths=_listing(_sample(rng, profile.strengths, 3), "; ", "; "),
        weaknesses=_listing(_sample(rng, profile.weaknesses, 2), "; ", "; "),
        hobby=_listing(draw.hobbies),
        growth_experience=profile_text(draw.growth), family=profile_text(draw.family.text),
        work=profile_text(draw.job.text), social_life=profile_text(_pick(rng, profile.social_life)),
        emotional_state=profile_text(_pick(rng, profile.emotional_states)),
        living_conditions=profile_text(draw.living.text),
        recent_worry=profile_text(draw.worry.text),
        facts=_facts(draw, rng), memories=_memories(data, draw, rng), source="template",
    )


def _facts(draw: _Draw, rng: np.random.Generator) -> tuple[str, ...]:
    """4-6 short Persona-Chat style lines; the job always, the rest drawn from the profile."""
    optional = [
        f"i enjoy {draw.hobbies[0]}.", draw.family.fact, draw.living.fact,
        f"i live in {draw.region[0]}.", f"i am {draw.age} years old.",
    ]
    count = int(rng.integers(3, 6))
    chosen = sorted(int(i) for i in rng.choice(len(optional), size=count, replace=False))
    lines = [draw.job.fact, *(optional[i] for i in chosen)]
    return tuple(_fill(line, draw.slots, FIRST_PERSON).lower() for line in lines)


def _memories(data: TemplateData, draw: _Draw, rng: np.random.Generator) -> tuple[str, ...]:
    """3-6 first-person memories: childhood scenes, then growth, hobby and job."""
    def first_person(template: str) -> str:
        young = {"young_age": str(rng.integers(6, 16))}
        return _fill(template, {**draw.slots, **young, "hobby": draw.hobbies[0]}, FIRST_PERSON)

    growth = _fill(draw.growth, draw.slots, FIRST_PERSON)
    extra = _sample(rng, data.childhood_memories, int(rng.integers(0, 4)))
    return (
        *(first_person(m) for m in extra),
        "I " + growth[:1].lower() + growth[1:],
        first_person(_pick(rng, data.hobby_memories)),
        first_person(draw.job.memory),
    )


def load_bank(path: Path) -> list[Persona]:
    """Read a JSON Lines bank; any problem is a one-line UsageError naming file, record, field."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"bank file {path}: {'not a file' if path.exists() else 'not found'}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"bank file {path}: cannot be read as UTF-8 text ({err})") from err
    personas: list[Persona] = []
    seen: dict[str, dict[str, int]] = {"id": {}, "name": {}}
    for number, line in enumerate(lines, start=1):
        if line.strip():
            persona = _parse_record(path, number, line)
            _check_unique(path, number, persona, seen)
            personas.append(persona)
    if not personas:
        raise UsageError(f"bank file {path}: no records (the file is empty)")
    return personas


def _parse_record(path: Path, number: int, line: str) -> Persona:
    where = f"bank file {path}, record {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise UsageError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(data, dict):
        raise UsageError(f"{where}: must be a JSON object of persona fields, "
                         f"got {type(data).__name__}")
    if isinstance(data.get("id"), str) and data["id"]:
        where += f" (id={data['id']})"
    try:
        return Persona.from_dict(data)
    except PersonaError as err:
        raise UsageError(f"{where}: {err}") from err
    except (TypeError, ValueError) as err:
        raise UsageError(f"{where}: invalid persona ({err})") from err


def _check_unique(path: Path, number: int, persona: Persona, seen: dict[str, dict[str, int]]) -> None:
    for field_name, first in seen.items():
        value = getattr(persona, field_name)
        if value in first:
            raise UsageError(
                f"bank file {path}, record {number} (id={persona.id}): field {field_name!r}: "
                f"{value!r} is already used by record {first[value]}"
            )
        first[value] = number


def save_bank(personas: Iterable[Persona], path: Path) -> None:
    """Write personas as JSON Lines atomically: a temp file beside ``path``, then a rename."""
    atomic_write_text(Path(path), "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n"
                                          for p in personas))


def select_characters(bank: list[Persona], size: int, rng: np.random.Generator) -> list[Persona]:
    """``size`` personas spread evenly over MBTI types: round-robin over the types in an
    rng-shuffled order, each type's personas in an rng-shuffled order."""
    require(is_whole(int(size) if isinstance(size, np.integer) else size, 1, len(bank)), "size",
            f"allowed is a whole number from 1 to the bank's {len(bank)} characters", size)
    groups: dict[str, list[Persona]] = {}
    for persona in bank:
        groups.setdefault(persona.mbti, []).append(persona)
    keys = sorted(groups)
    queues = [[groups[keys[k]][int(i)] for i in rng.permutation(len(groups[keys[k]]))]
              for k in rng.permutation(len(keys))]
    chosen: list[Persona] = []
    for depth in range(max(len(q) for q in queues)):
        chosen.extend(q[depth] for q in queues if depth < len(q))
    return chosen[:size]


def main(argv: Sequence[str]) -> None:
    """``python -m agents.bank [per_type] [seed] [output]``: write a template bank."""
    per_type = int(argv[0]) if argv else 4
    seed = int(argv[1]) if len(argv) > 1 else 0
    out = Path(argv[2]) if len(argv) > 2 else DEFAULT_BANK
    personas = generate_template_bank(per_type, np.random.default_rng(seed))
    save_bank(personas, out)
    print(f"wrote {len(personas)} characters to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
