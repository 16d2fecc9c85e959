"""Training data for the memory selector, from what it will see when it serves: the one-line
query a character recalls with (`agents.character.memory_query`: the partner's last line, else
the meeting), against each memory recalled for that turn. The label is whether the reply took
the memory up: it uses a content word of the memory that neither the query nor anyone's name
supplied and that is not filler (a word that more than ``FILLER_SHARE`` of the speakers use,
such as "glad" or "i'm" for the bundled model; a character's own topics are used by few). A
memory the heuristic retriever recalled but the reply ignored is a negative, so the selector
learns more than the retriever's own picks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from datasets import Features, Value

from agents.character import memory_query
from agents.degeneration import content_words
from core.errors import UsageError
from core.records import Episode
from training.datasets import SPLITS, BuiltDataset, CharacterSplit, Target, built_dataset
from training.runs import RunData
from training.scorers import auc

FILLER_SHARE = 0.25
MEMORY_FEATURES = Features({"history": Value("string"), "memory": Value("string"), "label": Value("int32"),
                            "rank": Value("int32"), "character": Value("string"),
                            "episode_id": Value("string")})


def taken_up(reply: str, memory: str, query: str, names: Sequence[str],
             filler: frozenset[str] = frozenset()) -> bool:
    """Whether ``reply`` uses ``memory``: it shares a content word with the memory that is not
    in ``query`` (the partner's line it answers), not part of a participant's name and not
    ``filler``."""
    supplied = set(content_words(query)) | {w for n in names for w in content_words(n)} | filler
    return bool((set(content_words(memory)) - supplied) & set(content_words(reply)))


def filler_words(lines: Iterable[tuple[str, str]], share: float = FILLER_SHARE, at_least: int = 3
                 ) -> frozenset[str]:
    """Content words of (speaker, line) pairs that more than ``share`` of the speakers (and more
    than ``at_least`` of them) use: too common to show that a reply took a memory up."""
    users: dict[str, set[str]] = {}
    for speaker, line in lines:
        for word in set(content_words(line)):
            users.setdefault(word, set()).add(speaker)
    speakers = len({who for group in users.values() for who in group})
    return frozenset(w for w, who in users.items() if len(who) > max(share * speakers, at_least))


def build_memory_selector_dataset(data: RunData, split: CharacterSplit) -> BuiltDataset:
    """(served query, recalled memory) -> 1 if the reply took the memory up, else 0; ``rank``
    is the memory's place in the heuristic retriever's order (0 = its first pick)."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    dropped: Counter[str] = Counter()
    filler = filler_words((Target(e, i).character, t.text) for e in data.episodes
                          for i, t in enumerate(e.turns) if not t.failed)
    for episode in data.episodes:
        for index, turn in enumerate(episode.turns):
            if turn.failed or not turn.memory_ids:
                continue
            target = Target(episode, index)
            side = split.side([target.character])
            if side is None:
                dropped["character in neither split"] += 1
                continue
            rows[side] += _rows(data, target, filler, dropped)
    if not rows["train"] and not rows["eval"]:
        raise UsageError("the dataset is empty: no turn recalled a stored memory; run with "
                         "conversation.memory_k > 0 and the chroma memory in the run folder")
    notes = ("history: the query the character recalled with (the partner's last line, else the meeting); "
             "label 1: the reply used a content word of the recalled memory that the query, the "
             f"names and the filler (words used by > {FILLER_SHARE:.0%} of the speakers) did not supply; "
             "label 0: a recalled memory the reply ignored.")
    built = built_dataset("memory_selector", data, rows, MEMORY_FEATURES, split, dropped, notes=notes,
                          extra={"filler": sorted(filler)})
    built.card["heuristic_auc"] = heuristic_auc(built.dataset["eval"])
    return built


def heuristic_auc(rows: Any) -> float:
    """The heuristic retriever's AUC on ``rows``: its rank order as the score (NaN with one class)."""
    labels = np.asarray(rows["label"])
    if len(set(labels.tolist())) < 2:
        return float("nan")
    return auc(-np.asarray(rows["rank"], dtype=np.float64), labels)


def _rows(data: RunData, target: Target, filler: frozenset[str], dropped: Counter[str]
          ) -> list[dict[str, Any]]:
    episode, turn = target.episode, target.turn
    memories = data.run_of(episode).memories
    kept = [(rank, memories[m]) for rank, m in enumerate(turn.memory_ids) if m in memories]
    dropped["recalled memories deleted since (forgetting)"] += len(turn.memory_ids) - len(kept)
    query = served_query(data, episode, target.index)
    return [{"history": query, "memory": memory.text, "rank": rank, "character": target.character,
             "label": int(taken_up(turn.text, memory.text, query, episode.participants, filler)),
             "episode_id": episode.id} for rank, memory in kept]


def served_query(data: RunData, episode: Episode, index: int) -> str:
    """The query the speaker of ``episode.turns[index]`` recalled its memories with."""
    speaker = episode.turns[index].speaker
    partner = next(n for n in episode.participants if n != speaker)
    persona = data.run_of(episode).personas.get(speaker)
    history = [(t.speaker, t.text) for t in episode.turns[:index] if not t.failed]
    return memory_query(history, speaker, partner, episode.scene, persona.recent_worry if persona else "")
