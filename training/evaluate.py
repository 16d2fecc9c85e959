"""PersonaGPT's Persona-Chat table: perplexity and unigram F1 of next-utterance prediction,
given the persona facts and the history, for the base model and registered adapters.

Prompts are Salon's own reply prompts (the format adapters are trained on), with the
speaker's Persona-Chat facts as the persona."""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from langchain_core.messages import BaseMessage

from agents.importers import PersonaChatDialogue, personachat_personas
from agents.prompting import PromptBuilder, ReplyContext

_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class EvalExample:
    messages: tuple[BaseMessage, ...]
    reference: str


@dataclass(frozen=True)
class EvalResult:
    model: str
    perplexity: float
    f1: float
    examples: int
    reply_tokens: int


def normalize(text: str) -> list[str]:
    """ParlAI's normalisation for F1: lower case, no punctuation, no articles."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return _ARTICLES.sub(" ", text).split()


def unigram_f1(prediction: str, reference: str) -> float:
    guess, gold = normalize(prediction), normalize(reference)
    common = sum((Counter(guess) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(guess), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def personachat_examples(dialogues: Sequence[PersonaChatDialogue], prompts: PromptBuilder,
                         max_per_dialogue: int) -> list[EvalExample]:
    """Each of "your" replies (up to ``max_per_dialogue`` per dialogue) with what preceded it."""
    personas = {p.id: p for p in personachat_personas(dialogues)}
    examples = []
    for dialogue in dialogues:
        you = personas[f"pc-{dialogue.index:04d}-you"]
        partner = personas[f"pc-{dialogue.index:04d}-partner"]
        names = {"you": you.name, "partner": partner.name}
        history: list[tuple[str, str]] = []
        taken = 0
        for side, text in dialogue.turns:
            if side == "you" and history and taken < max_per_dialogue:
                context = ReplyContext(you, partner.name, "peer", tuple(history))
                examples.append(EvalExample(tuple(prompts.reply_messages(context)), text))
                taken += 1
            history.append((names[side], text))
    return examples


def evaluate_model(model, examples: Sequence[EvalExample], adapter: str = "",
                   max_new_tokens: int = 32) -> EvalResult:
    """Perplexity over the reference replies (teacher forcing) and F1 of greedy replies."""
    conversations = [list(e.messages) for e in examples]
    losses = model.reply_losses(conversations, [e.reference for e in examples], adapter=adapter)
    tokens = sum(n for _, n in losses)
    perplexity = math.exp(sum(loss for loss, _ in losses) / tokens)
    replies = model.complete(conversations, max_new_tokens=max_new_tokens, temperature=0.0,
                             adapters=[adapter] * len(conversations))
    f1 = sum(unigram_f1(r.text, e.reference)
             for r, e in zip(replies, examples, strict=True)) / len(examples)
    return EvalResult(model.label(adapter), perplexity, f1, len(examples), tokens)


def write_results(folder: Path, results: Sequence[EvalResult], title: str,
                  failures: Sequence[str] = ()) -> str:
    lines = [f"# {title}", "", "| model | perplexity | F1 | examples | reply tokens |",
             "|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.perplexity:.2f} | {r.f1:.4f} | {r.examples} | {r.reply_tokens} |"
              for r in results]
    lines += ["", *(f"- not evaluated: {f}" for f in failures)] if failures else []
    text = "\n".join(lines) + "\n"
    (folder / "eval.md").write_text(text)
    (folder / "eval.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    return text
