"""Character-LLM's experience reconstruction: a profile text becomes a persona with scenes,
experiences (first-person memories) and protective scenes (questions the character must not
know the answer to), written by the configured chat model.

Every model request of every kind goes out in one batched call per attempt; replies are parsed
strictly and must be grounded in the profile (their content words come from it). A request that
never passes keeps the importer's extractive value (the passage itself, a template question) and
is flagged in ``extra["reconstruction_flagged"]``: no model text is ever accepted unchecked.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import yaml
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.importers import read_profile
from agents.persona import MAX_TEXT, Persona
from agents.prompting import PROMPTS_DIR
from agents.replies import whole_sentences
from core.errors import require
from core.seams import ChatModel
from core.text import split_sentences

_STOPWORD_TEXT = (
    "the a an and or but of to in on at by for with from as is was were are be been being his her "
    "their its he she they them him it this that these those who whom which what when where while "
    "had has have do did not no so than then there into onto over under after before about also "
    "would could should will can may might one two very more most some any all such own same")
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|my|me|myself)\b")
SCENE_PROSE = re.compile(
    r"\s*(?:the )?(?:passage|scene|story) (?:takes place|is set) (?:in|at|on) (.+?)[.;]\s*(.*)$", re.I)
FIELD_QUESTIONS = {"job": "What was {name}'s occupation?", "region": "Where did {name} come from?"}


@dataclass(frozen=True)
class ReconstructionSettings:
    """How much to reconstruct (`reconstruction.*` in the config)."""

    scenes: int = 4             # passages turned into a scene and an experience each
    protective: int = 3         # protective scenes
    fields: tuple[str, ...] = ("job", "region")
    retries: int = 1
    max_new_tokens: int = 96
    temperature: float = 0.3
    passage_chars: int = 700
    grounding: float = 0.6      # share of a reply's content words that must occur in its source

    def __post_init__(self) -> None:
        require(0 <= self.scenes <= 64, "reconstruction.scenes", "a whole number from 0 to 64", self.scenes)
        require(0 <= self.protective <= 7, "reconstruction.protective", "a whole number from 0 to 7",
                self.protective)
        require(self.retries >= 0, "reconstruction.retries", "a whole number >= 0", self.retries)
        require(set(self.fields) <= set(FIELD_QUESTIONS), "reconstruction.fields",
                f"a list from {sorted(FIELD_QUESTIONS)}", list(self.fields))
        require(0 < self.grounding <= 1, "reconstruction.grounding", "a number in (0, 1]", self.grounding)


@dataclass(frozen=True)
class Ask:
    """One model request: its key ('experience[0]'), messages and a strict parser."""

    key: str
    messages: list[BaseMessage]
    parse: Callable[[str], Any]


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z'-]+", text.lower()) if len(w) > 2 and w not in STOPWORDS}


def grounded_share(text: str, source: set[str], ignore: set[str] = frozenset()) -> float:
    words = content_words(text) - ignore
    return len(words & source) / len(words) if words else 0.0


def _strip(raw: str, name: str) -> str:
    """One line, without a leading 'Name:' or label and without wrapping quotes."""
    names = "|".join(re.escape(n) for n in {name, name.split(" ")[0], name.split(" ")[-1]})
    text = re.sub(rf"^\s*(?:{names}|answer|question|memory)\s*:\s*", "", " ".join(raw.split()), flags=re.I)
    while len(text) >= 2 and text[0] in "\"'“" and text[-1] in "\"'”":
        text = text[1:-1].strip()
    return text.lstrip("\"'“")


def parse_experience(raw: str, name: str, passage: str, grounding: float) -> str:
    """A first-person memory of 1-4 whole sentences whose content words come from the passage."""
    text = whole_sentences(_strip(raw, name), 4)
    if "<|" in text or re.search(r"\bas an ai\b", text, re.I):
        raise ValueError("contains a special token or an assistant disclaimer")
    if not FIRST_PERSON.search(text):
        raise ValueError("not in the first person")
    if not re.search(r"[.!?][\"')\]]*$", text) or not 8 <= len(text.split()) <= 90:
        raise ValueError("not 8-90 words of whole sentences")
    share = grounded_share(text, content_words(passage), content_words(name))
    if share < grounding:
        raise ValueError(f"only {share:.0%} of its words come from the passage")
    return text


def parse_scene(raw: str, name: str, passage: str, grounding: float) -> dict[str, str]:
    """'Location: ... Status: ...' (or 'The passage takes place in <place>. <status>'), with
    the location's words in the passage and the status grounded in it."""
    location, text = _scene_parts(raw)
    source = content_words(passage)
    if not 1 <= len(location.split()) <= 12 or not content_words(location) <= source | content_words(name):
        raise ValueError(f"location {location!r} is not a place named in the passage")
    if len(text.split()) < 4 or grounded_share(text, source, content_words(name)) < grounding:
        raise ValueError("the status is too short or not grounded in the passage")
    return {"location": location, "status": text}


def _scene_parts(raw: str) -> tuple[str, str]:
    found = re.search(r"location\s*:\s*(.+?)\s*(?:\n|\*|$|status\s*:)", raw, re.I)
    status = re.search(r"status\s*:\s*(.+?)\s*(?:\n|$)", raw, re.I)
    if found and status:
        return found.group(1).strip(" .\"'*"), whole_sentences(status.group(1).strip(" \"'*"), 2)
    prose = SCENE_PROSE.match(" ".join(raw.split()))
    if not prose:
        raise ValueError("no 'Location:' and 'Status:' lines")
    return prose.group(1).strip(" \"'"), whole_sentences(prose.group(2), 2)


def parse_field(raw: str, name: str, profile_words: set[str]) -> str:
    """A few words copied from the profile ('gladiator', 'Thrace')."""
    text = _strip(raw.splitlines()[0] if raw.strip() else "", name)
    quoted = re.search(r"[\"“]([^\"”]{2,80})[\"”]", text)
    if quoted:
        text = quoted.group(1)
    else:
        lead = re.search(r"\b(?:is|was|were|are|in|from)\s+(.+)$", text)
        text = lead.group(1) if lead and len(text.split()) > 6 else text
    text = re.sub(r"^(?:an?|the)\s+", "", text.strip(" .,;:!\"'"), flags=re.I)
    words = content_words(text)
    if not words or not 1 <= len(text.split()) <= 8 or not words <= profile_words:
        raise ValueError(f"{text!r} is not a few words from the profile")
    return text[:1].upper() + text[1:]


def parse_question(raw: str, name: str, keyword: str) -> str:
    """The one sentence of the reply that asks about ``keyword``."""
    text = _strip(raw.splitlines()[0] if raw.strip() else "", name)
    asking = [q for q in split_sentences(text) if q.endswith("?") and keyword.lower() in q.lower()]
    if len(asking) != 1 or not 3 <= len(asking[0].split()) <= 30:
        raise ValueError(f"not one question of 3-30 words about {keyword}")
    return asking[0]


def passages(text: str, count: int, chars: int) -> list[str]:
    """``count`` passages spread evenly over the profile's prose paragraphs, each up to
    ``chars`` characters of whole sentences."""
    paragraphs = [line.strip() for line in text.splitlines()
                  if line.strip() and not line.startswith("#") and re.search(r"[.!?][\"')]*$", line.strip())]
    if not paragraphs or count == 0:
        return []
    picks = sorted({round(i) for i in np.linspace(0, len(paragraphs) - 1, count)})
    chosen = []
    for index in picks:
        sentences, passage = split_sentences(paragraphs[index]), ""
        for sentence in sentences:
            if passage and len(passage) + len(sentence) + 1 > chars:
                break
            passage = f"{passage} {sentence}".strip()
        chosen.append(passage[:MAX_TEXT])
    return chosen


def gender_from_pronouns(text: str) -> str:
    """'male'/'female' when one set of pronouns clearly dominates the profile, else ''."""
    words = re.findall(r"[a-z]+", text.lower())
    male = sum(words.count(w) for w in ("he", "him", "his"))
    female = sum(words.count(w) for w in ("she", "her", "hers"))
    if male >= 2 * female and male >= 5:
        return "male"
    if female >= 2 * male and female >= 5:
        return "female"
    return ""


class Reconstructor:
    """Builds the model requests for one profile, runs them batched, assembles the persona."""

    def __init__(self, model: ChatModel, settings: ReconstructionSettings,
                 prompts_dir: Path = PROMPTS_DIR) -> None:
        self.model = model
        self.settings = settings
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(prompts_dir)),
                                      undefined=jinja2.StrictUndefined, autoescape=False)
        self.topics = yaml.safe_load((prompts_dir / "protective.yaml").read_text(encoding="utf-8"))

    def messages(self, template: str, **variables: Any) -> list[BaseMessage]:
        module = self.env.get_template(template).make_module(variables)
        return [SystemMessage(str(module.system).strip()), HumanMessage(str(module.user).strip())]

    def asks(self, name: str, text: str, chosen: Sequence[str]) -> list[Ask]:
        s, words = self.settings, content_words(text)
        head = " ".join(passages(text, 1, 2 * s.passage_chars))
        asks = [Ask(field, self.messages("reconstruct_field.jinja", name=name, text=head,
                                         question=FIELD_QUESTIONS[field].format(name=name)),
                    lambda raw: parse_field(raw, name, words)) for field in s.fields]
        for i, passage in enumerate(chosen):
            asks.append(Ask(f"scene[{i}]",
                            self.messages("reconstruct_scene.jinja", name=name, passage=passage),
                            lambda raw, p=passage: parse_scene(raw, name, p, s.grounding)))
            asks.append(Ask(f"experience[{i}]",
                            self.messages("reconstruct_experience.jinja", name=name, passage=passage),
                            lambda raw, p=passage: parse_experience(raw, name, p, s.grounding)))
        for i, topic in enumerate(self.topics[: s.protective]):
            asks.append(Ask(f"protective[{i}]",
                            self.messages("reconstruct_protective.jinja", name=name, thing=topic["thing"]),
                            lambda raw, t=topic: parse_question(raw, name, t["keyword"])))
        return asks

    def run(self, asks: Sequence[Ask]) -> dict[str, Any]:
        """Accepted values by key; one batched call per attempt, retrying only the failures."""
        accepted: dict[str, Any] = {}
        pending = list(asks)
        for attempt in range(self.settings.retries + 1):
            if not pending:
                break
            outputs = self.model.complete([a.messages for a in pending], seed=attempt,
                                          temperature=self.settings.temperature,
                                          max_new_tokens=self.settings.max_new_tokens)
            failed = []
            for ask, reply in zip(pending, outputs, strict=True):
                try:
                    accepted[ask.key] = ask.parse(reply.text)
                except ValueError:
                    failed.append(ask)
            pending = failed
        return accepted

    def reconstruct(self, path: Path) -> Persona:
        base = read_profile(path)
        text = Path(path).read_text(encoding="utf-8")
        chosen = passages(text, self.settings.scenes, self.settings.passage_chars)
        asks = self.asks(base.name, text, chosen)
        return assemble(base, text, chosen, self.run(asks), [a.key for a in asks],
                        self.topics[: self.settings.protective])


def assemble(base: Persona, text: str, chosen: Sequence[str], accepted: dict[str, Any],
             keys: Sequence[str], topics: Sequence[dict[str, str]]) -> Persona:
    """The persona: accepted model values, extractive fallbacks for the rest (flagged)."""
    flagged = [k for k in keys if k not in accepted]
    scenes = [{**accepted.get(f"scene[{i}]", {"location": "", "status": split_sentences(p)[0]}),
               "passage": p, "source": "model" if f"scene[{i}]" in accepted else "extractive"}
              for i, p in enumerate(chosen)]
    experiences = [{"text": accepted.get(f"experience[{i}]", p), "passage": p,
                    "source": "model" if f"experience[{i}]" in accepted else "extractive"}
                   for i, p in enumerate(chosen)]
    protective = [protective_scene(t, accepted.get(f"protective[{i}]")) for i, t in enumerate(topics)]
    memories = [e["text"] for e in experiences] + [p["memory"] for p in protective]
    memories += [m for m in base.memories if m not in memories]
    fields = {k: accepted[k] for k in FIELD_QUESTIONS if k in accepted}
    extra = {**base.extra, "scenes": scenes, "experiences": experiences, "protective_scenes": protective,
             "reconstruction_flagged": flagged}
    return dataclasses.replace(base, **fields, gender=gender_from_pronouns(text),
                               memories=tuple(memories), extra=extra, source=f"{base.source}:reconstructed")


def protective_scene(topic: dict[str, str], question: str | None) -> dict[str, str]:
    """A question the character cannot answer, with a fixed answer of not knowing (never
    model-written: the point is that the character does not know)."""
    asked = question or topic["question"]
    answer = f"I have never heard of {topic['thing']}, so I cannot say anything about it."
    return {"thing": topic["thing"], "question": asked, "answer": answer,
            "source": "model" if question else "template",
            "memory": f'Someone once asked me: "{asked}" {answer}'}


def reconstruction_settings(cfg: Any) -> ReconstructionSettings:
    values = {k: v for k, v in dict(cfg).items() if k != "enabled"}
    values["fields"] = tuple(values.get("fields", ()))
    return ReconstructionSettings(**values)


def summary(persona: Persona) -> str:
    """One line on what the model wrote and what stayed extractive."""
    extra = persona.extra
    flagged = ", ".join(extra.get("reconstruction_flagged", [])) or "none"

    def count(key: str, good: str) -> str:
        items = extra.get(key, [])
        return f"{sum(i['source'] == good for i in items)}/{len(items)}"
    return (f"scenes {count('scenes', 'model')}, experiences {count('experiences', 'model')}, "
            f"protective questions {count('protective_scenes', 'model')} written by the model; "
            f"flagged (kept extractive/template): {flagged}")
