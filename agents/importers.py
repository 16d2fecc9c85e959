"""Characters and dialogues from outside data: Persona-Chat files and plain profile texts.

Persona-Chat dialogues become personas (two per dialogue) and ``Episode`` records, so the
critic and the training code can treat human dialogues like simulated ones. A profile text
(Character-LLM style) becomes one persona: its opening sentences are the facts, the rest
becomes seed memories.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agents.bank import DATA_DIR, read_yaml
from agents.persona import MAX_TEXT, Persona
from core.errors import UsageError
from core.records import Episode, Turn
from core.text import split_sentences

SPLITS = {"dev": range(0, 200), "test": range(200, 1000)}
PERSONA_PREFIXES = {"your persona:": "you", "partner's persona:": "partner"}
FACT_LIMIT = 200


@dataclass(frozen=True)
class PersonaChatDialogue:
    """One Persona-Chat dialogue. ``turns`` are (speaker, text) in order, speaker "partner" or
    "you"; the partner speaks first on every line of the file."""

    index: int
    split: str
    your_persona: tuple[str, ...]
    partner_persona: tuple[str, ...]
    turns: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def read_personachat(path: Path, split: str = "dev") -> list[PersonaChatDialogue]:
    """The dialogues of ``split`` ("dev": 0-199, "test": 200-999) from a Persona-Chat file."""
    if split not in SPLITS:
        raise UsageError(f"split={split!r} is invalid: use 'dev' or 'test'")
    lines = _read_lines(Path(path), "personachat file")
    wanted = SPLITS[split]
    dialogues: list[PersonaChatDialogue] = []
    current: dict[str, list] | None = None
    index = -1
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        counter, _, text = line.partition(" ")
        if not counter.isdigit():
            raise UsageError(f"personachat file {path}, line {number}: expected 'N text'")
        if counter == "1":
            _close(path, index, split, current, dialogues)
            index += 1
            current = {"you": [], "partner": [], "turns": []} if index in wanted else None
        elif index < 0:
            raise UsageError(f"personachat file {path}, line {number}: a dialogue must start at 1")
        if current is not None:
            _add_line(current, text)
    _close(path, index, split, current, dialogues)
    return dialogues


def _read_lines(path: Path, kind: str) -> list[str]:
    if not path.is_file():
        raise UsageError(f"{kind} {path}: {'not a file' if path.exists() else 'not found'}")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{kind} {path}: cannot be read as UTF-8 text ({err})") from err


def _add_line(current: dict[str, list], text: str) -> None:
    for prefix, side in PERSONA_PREFIXES.items():
        if text.startswith(prefix):
            current[side].append(text[len(prefix):].strip())
            return
    partner, _, reply = text.partition("\t")
    current["turns"].extend((side, t.strip()) for side, t in (("partner", partner), ("you", reply))
                            if t.strip())


def _close(path: Path, index: int, split: str, current: dict[str, list] | None,
           dialogues: list[PersonaChatDialogue]) -> None:
    if current is None:
        return
    if not current["you"] or not current["partner"]:
        raise UsageError(f"personachat file {path}, dialogue {index}: both speakers need "
                         "persona lines")
    dialogues.append(PersonaChatDialogue(
        index=index, split=split, your_persona=tuple(current["you"]),
        partner_persona=tuple(current["partner"]), turns=tuple(current["turns"]),
    ))


def personachat_personas(dialogues: Sequence[PersonaChatDialogue]) -> list[Persona]:
    """Two personas per dialogue (``pc-0017-you``, ``pc-0017-partner``) with the file's facts
    and a unique name that depends only on the dialogue index and side."""
    firsts, lasts = _name_pools()
    personas = []
    for dialogue in dialogues:
        for offset, (side, facts) in enumerate(
            (("you", dialogue.your_persona), ("partner", dialogue.partner_persona))
        ):
            personas.append(Persona(
                id=f"pc-{dialogue.index:04d}-{side}",
                name=_indexed_name(firsts, lasts, 2 * dialogue.index + offset),
                facts=facts,
                source=f"personachat:{dialogue.split}:{dialogue.index}:{side}",
            ))
    return personas


def _name_pools(path: Path = DATA_DIR / "names.yaml") -> tuple[list[str], list[str]]:
    names = read_yaml(path)
    female, male = names["first_names"]["female"], names["first_names"]["male"]
    firsts = [name for pair in zip(female, male, strict=False) for name in pair]
    return firsts, list(names["last_names"])


def _indexed_name(firsts: list[str], lasts: list[str], k: int) -> str:
    """Name number ``k``: distinct for every k < len(firsts) * len(lasts)."""
    first = k % len(firsts)
    if k >= len(firsts) * len(lasts):
        raise UsageError(f"names.yaml yields only {len(firsts) * len(lasts)} indexed names")
    # For a fixed first name, k // len(firsts) differs, so the last name differs too.
    return f"{firsts[first]} {lasts[(k // len(firsts) + 7 * first) % len(lasts)]}"


def personachat_episodes(
    dialogues: Sequence[PersonaChatDialogue], personas: Sequence[Persona]
) -> list[Episode]:
    """The dialogues as peer ``Episode`` records (id ``pc-0017``), speakers named by persona."""
    by_id = {p.id: p for p in personas}
    episodes = []
    for dialogue in dialogues:
        people = {}
        for side in ("partner", "you"):
            pid = f"pc-{dialogue.index:04d}-{side}"
            if pid not in by_id:
                raise ValueError(f"no persona {pid} for Persona-Chat dialogue {dialogue.index}")
            people[side] = by_id[pid]
        episodes.append(_episode(dialogue, people))
    return episodes


def _episode(dialogue: PersonaChatDialogue, people: dict[str, Persona]) -> Episode:
    names = {side: p.name for side, p in people.items()}
    return Episode(
        id=f"pc-{dialogue.index:04d}",
        round=0,
        participants=(names["partner"], names["you"]),
        personas={p.name: p.facts for p in people.values()},
        roles={name: "peer" for name in names.values()},
        turns=tuple(Turn(speaker=names[side], text=text) for side, text in dialogue.turns),
        model="human:personachat",
        character_ids={p.name: p.id for p in people.values()},
        stop_reason="end",
        meta={"source": "personachat", "split": dialogue.split, "index": dialogue.index},
    )


def read_profile(path: Path) -> Persona:
    """A persona from a plain profile text (an optional ``# Name`` heading, then prose)."""
    path = Path(path)
    lines = _read_lines(path, "profile file")
    name = _profile_name(path, lines)
    paragraphs = [split_sentences(line) for line in lines if _is_prose(line)]
    sentences = [s for paragraph in paragraphs for s in paragraph]
    facts = [s for s in sentences if len(s) <= FACT_LIMIT][:6]
    if not facts:
        raise UsageError(f"profile file {path}: no sentence of at most {FACT_LIMIT} characters "
                         "to use as a fact (is the file empty?)")
    used = set(facts)
    memories = [chunk for paragraph in paragraphs
                for chunk in _chunks([s for s in paragraph if s not in used])]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unnamed"
    return Persona(id=f"profile-{slug}"[:120], name=name, facts=tuple(facts),
                   memories=tuple(memories), source=f"profile:{path.name}")


def _profile_name(path: Path, lines: list[str]) -> str:
    for line in lines:
        if line.strip():
            if line.startswith("# ") and line[2:].strip():
                return line[2:].strip()
            break
    stem = path.stem.removeprefix("wiki_").replace("_", " ").strip()
    return stem or path.name


def _is_prose(line: str) -> bool:
    """Prose lines end like a sentence; headings and bare list items do not."""
    text = line.strip()
    return bool(text) and not text.startswith("#") and bool(re.search(r"[.!?][\"'”’)]*$", text))


def _chunks(sentences: list[str]) -> list[str]:
    """Group consecutive sentences into chunks of 2-3 (a lone sentence stays alone)."""
    count = -(-len(sentences) // 3)
    chunks, start = [], 0
    for i in range(count):
        size = -(-(len(sentences) - start) // (count - i))
        chunks.append(" ".join(sentences[start:start + size]))
        start += size
    return [piece for chunk in chunks for piece in textwrap.wrap(chunk, MAX_TEXT)]
