"""Training data for the critic's contradiction expert: (persona fact, line) pairs from
Persona-Chat dev dialogues 40-199 (the training and tuning split), labelled 1 when the line
contradicts the fact. Contradictions are the facts negated by rule ("i have two dogs." ->
"i do not have two dogs."); the rest are the speaker's own lines, their other facts, the fact
itself and lines of other dialogues, none of which contradict it."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from datasets import Dataset, DatasetDict, Features, Value

from agents.degeneration import content_words
from agents.importers import PersonaChatDialogue

FEATURES = Features({"fact": Value("string"), "line": Value("string"), "label": Value("int32"),
                     "dialogue": Value("int32")})
TRAINING_DIALOGUES = range(40, 200)  # never the development evaluation (0-39) or the test split
EVAL_SHARE = 0.15
NEGATION = re.compile(r"\b(?:no|not|never|n't|dont|cannot)\b", re.I)
# (pattern on a lower-case fact, replacement): the first that matches negates the fact
RULES: tuple[tuple[str, str], ...] = (
    (r"^i (?:do not|don't) (\w+)", r"i \1"),
    (r"^i(?: am not|'m not) ", "i am "),
    (r"^i(?: am|'m) ", "i am not "),
    (r"^i(?:'ve| have) (?!been|never)", "i do not have "),
    (r"^i do (?!not )(\w+) ", r"i do not \1 "),
    (r"^i (like|love|enjoy|prefer|hate|own|drive|play|work|live|read|eat|go|watch|have|want|need|use) ",
     r"i do not \1 "),
    (r"^i was ", "i was never "),
    (r"^i can ", "i cannot "),
    (r"^i (\w+ed) ", r"i never \1 "),
    (r"^my (.+?) (is|are|was|were) ", r"my \1 \2 not "),
    (r"^i (?!also|just|really|usually|still|never|always)(\w+) ", r"i do not \1 "),
)


def negate(fact: str) -> str | None:
    """The fact contradicted by rule, or None if no rule applies."""
    text = " ".join(fact.lower().split())
    for pattern, replacement in RULES:
        if re.search(pattern, text):
            return re.sub(pattern, replacement, text, count=1)
    return None


def speaker_rows(dialogue: PersonaChatDialogue, other_lines: Sequence[str],
                 other_negations: Sequence[str], rng: np.random.Generator) -> list[dict[str, object]]:
    """Pairs for both speakers of one dialogue: each fact with its negation (1); with up to two
    of the speaker's lines, another of their facts, itself, a line of another dialogue and the
    negation of another dialogue's fact (0: a "not" alone is no contradiction)."""
    rows = []
    for facts, who in ((dialogue.your_persona, "you"), (dialogue.partner_persona, "partner")):
        lines = [text for speaker, text in dialogue.turns if speaker == who]
        for fact in facts:
            negated = negate(fact)
            if negated:
                rows.append({"fact": fact, "line": negated, "label": 1})
            picked = [lines[int(i)] for i in rng.choice(len(lines), size=min(2, len(lines)), replace=False)]
            others = [f for f in facts if f != fact]
            extra = [str(rng.choice(others))] if others else []
            unrelated = (str(rng.choice(other_lines)), str(rng.choice(other_negations)))
            agreeing = (f"no , {fact}", f"not really . {fact}")  # a "no" that answers, then the fact
            for line in (*picked, *extra, fact, *unrelated, *agreeing, *_negated_but_consistent(fact, lines)):
                rows.append({"fact": fact, "line": line, "label": 0})
    return [{**row, "dialogue": dialogue.index} for row in rows]


def _negated_but_consistent(fact: str, lines: Sequence[str]) -> list[str]:
    """The speaker's own lines that say "no", "not" or "never" about the fact's topic: people
    deny other things while keeping their persona, so a negation word is no contradiction."""
    topic = set(content_words(fact))
    return [line for line in lines if NEGATION.search(line) and topic & set(content_words(line))]


def build_contradiction_dataset(dialogues: Sequence[PersonaChatDialogue], seed: int) -> DatasetDict:
    """Train/eval split by dialogue (no dialogue in both), from dialogues 40-199 only."""
    chosen = [d for d in dialogues if d.index in TRAINING_DIALOGUES]
    if not chosen:
        raise ValueError("no Persona-Chat dialogues 40-199 given")
    rng = np.random.default_rng(seed)
    pool = [text for d in chosen for _, text in d.turns]
    negations = [n for d in chosen for f in (*d.your_persona, *d.partner_persona) if (n := negate(f))]
    order = rng.permutation(len(chosen))
    held = {chosen[int(i)].index for i in order[: max(1, round(EVAL_SHARE * len(chosen)))]}
    rows = [row for d in chosen for row in speaker_rows(d, pool, negations, rng)]
    return DatasetDict({
        "train": Dataset.from_list([r for r in rows if r["dialogue"] not in held], features=FEATURES),
        "eval": Dataset.from_list([r for r in rows if r["dialogue"] in held], features=FEATURES)})
