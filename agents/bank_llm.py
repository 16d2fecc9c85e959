"""``bank.generator=llm``: a chat model rewrites chosen profile fields of template characters.

One batched model call per field (and per retry) covers every persona still needing that
field. Replies are parsed strictly; a persona whose field never parses keeps its template
value and lists the field in ``extra["llm_failed_fields"]``: no text is ever made up.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import jinja2
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.persona import PROFILE_FIELDS, Persona
from agents.replies import whole_sentences
from core.errors import UsageError, require
from core.text import split_sentences

DEFAULT_TEMPLATE = Path(__file__).parent / "prompts" / "bank_field.jinja"
GUIDANCE = {
    "growth_experience": "one experience from childhood or youth that shaped who they are.",
    "recent_worry": "a concrete personal problem troubling them right now, one they could "
                    "bring to a friend (money, home, family, health or work).",
    "social_life": "how they spend time with other people and what their friendships are like.",
    "family": "their current family situation: partner, children, parents or siblings.",
    "emotional_state": "how they have been feeling lately, and why.",
    "living_conditions": "where and with whom they live, and what their home is like.",
    "work": "what their daily work involves.",
}
GENERIC_LABELS = ("field", "answer", "output", "response", "text")
FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|I'll|[Mm]y|[Mm]e|[Mm]yself)\b")
log = logging.getLogger(__name__)


def rewrite_with_llm(
    personas: Sequence[Persona],
    chat_model: BaseChatModel,
    fields: Sequence[str],
    retries: int,
    template_path: Path = DEFAULT_TEMPLATE,
) -> tuple[list[Persona], int]:
    """Rewrite ``fields`` of every persona with ``chat_model``; returns the personas and the
    number of (persona, field) pairs that failed after ``retries`` extra attempts."""
    for name in fields:
        require(name in PROFILE_FIELDS, "bank.llm_fields", f"each must be one of {PROFILE_FIELDS}",
                name)
    require(isinstance(retries, int) and retries >= 0, "bank.retries", "a whole number >= 0",
            retries)
    template = _load_template(Path(template_path))
    current = list(personas)
    failed: dict[int, list[str]] = {}
    for name in fields:
        accepted, missing = _write_field(current, name, chat_model, retries, template)
        current = [dataclasses.replace(p, **{name: accepted[i]}) if i in accepted else p
                   for i, p in enumerate(current)]
        for index in missing:
            failed.setdefault(index, []).append(name)
    marked = [_mark_failed(p, failed[i]) if i in failed else p for i, p in enumerate(current)]
    return marked, sum(len(names) for names in failed.values())


def _load_template(path: Path) -> jinja2.Template:
    if not path.is_file():
        raise UsageError(f"prompt template {path}: not found")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    return env.get_template(path.name)


def _write_field(
    personas: Sequence[Persona],
    name: str,
    chat_model: BaseChatModel,
    retries: int,
    template: jinja2.Template,
) -> tuple[dict[int, str], list[int]]:
    """Ask for ``name`` for every persona, retrying only the failures; returns the accepted
    texts by persona index and the indices that never produced a valid text."""
    pending = list(range(len(personas)))
    accepted: dict[int, str] = {}
    for attempt in range(retries + 1):
        if not pending:
            break
        prompts = [build_messages(template, personas[i], name) for i in pending]
        replies = chat_model.batch(prompts, return_exceptions=True)
        still: list[int] = []
        for index, reply in zip(pending, replies, strict=True):
            try:
                accepted[index] = parse_field_text(_reply_text(reply), name)
            except ValueError as err:
                log.debug("%s %s attempt %d: %s", personas[index].id, name, attempt + 1, err)
                still.append(index)
        pending = still
    return accepted, pending


def build_messages(template: jinja2.Template, persona: Persona, name: str) -> list[BaseMessage]:
    """The system and user messages asking for field ``name`` of ``persona``."""
    label = _label(name)
    others = [line for line in persona.profile_lines() if not line.startswith(f"{label}:")]
    module = template.make_module({
        "field": name,
        "label": label,
        "guidance": GUIDANCE.get(name, f"the character's {label.lower()}."),
        "profile": others,
    })
    return [SystemMessage(str(module.system).strip()), HumanMessage(str(module.user).strip())]


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _reply_text(reply: object) -> str:
    if isinstance(reply, BaseException):
        raise ValueError(f"model call failed: {reply}")
    if isinstance(reply, BaseMessage):
        return reply.text
    raise ValueError(f"unexpected reply type {type(reply).__name__}")


def parse_field_text(raw: str, name: str) -> str:
    """The cleaned field text, or ValueError saying why the reply is unusable."""
    text = " ".join(raw.split())
    labels = "|".join(re.escape(x) for x in (*GENERIC_LABELS, name, _label(name)))
    text = re.sub(rf"^[*_\s]*(?:{labels})[*_\s]*:[*_\s]*", "", text, flags=re.IGNORECASE)
    text = whole_sentences(_strip_quotes(text), 3)  # a capped reply often ends mid-sentence
    if "<|" in text:
        raise ValueError("contains a special token")
    if "as an ai" in text.lower():
        raise ValueError("contains an assistant disclaimer")
    if FIRST_PERSON.search(text):
        raise ValueError("written in the first person")
    if not re.search(r"[.!?][\"')\]]*$", text):
        raise ValueError("does not end with a complete sentence")
    sentences = split_sentences(text)
    if not 1 <= len(sentences) <= 3:
        raise ValueError(f"has {len(sentences)} sentences; allowed 1-3")
    if not 5 <= len(text.split()) <= 60:
        raise ValueError(f"has {len(text.split())} words; allowed 5-60")
    return text


def _strip_quotes(text: str) -> str:
    pairs = {'"': '"', "'": "'", "“": "”", "‘": "’"}
    while len(text) >= 2 and pairs.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text


def _mark_failed(persona: Persona, names: list[str]) -> Persona:
    earlier = list(persona.extra.get("llm_failed_fields", []))
    extra = {**persona.extra, "llm_failed_fields": earlier + [n for n in names if n not in earlier]}
    return dataclasses.replace(persona, extra=extra)
