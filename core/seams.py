"""Every cross-folder contract in one place. Each seam is a Protocol; implementations are chosen
by config (`conf/<group>/*.yaml`, built with Hydra's `instantiate` in `environment/build.py`),
and `tests/fakes.py` has a small fake of each for control-flow tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import networkx as nx
import numpy as np
from langchain_core.messages import BaseMessage

from core.records import Episode, MemoryRecord, RecallCount, Recalled, Reply

# (index of the conversation in the call, its reply text so far)
OnText = Callable[[int, str], None]
# A scorer's verdict on one episode: dimension -> (value on 1-5 or NaN, reason)
Judgement = dict[str, tuple[float, str]]


@runtime_checkable
class ChatModel(Protocol):
    """A chat model as the engine, the chat, the critic's judge and evaluation use it. Local
    transformers and OpenAI-compatible servers implement it (`agents/models/`); both are also
    LangChain `BaseChatModel`s."""

    def complete(self, conversations: Sequence[Sequence[BaseMessage]], *, seed: int | None = None,
                 adapters: Sequence[str] | None = None, temperature: float | None = None,
                 max_new_tokens: int | None = None, on_text: OnText | None = None, candidates: int = 1,
                 avoid: Sequence[Any] | None = None, block_ngrams: int = 4) -> list[Reply]:
        """``candidates`` raw replies per conversation (conversation-major) from one batched
        call. ``seed`` makes sampling reproducible; ``adapters`` names a LoRA adapter per row
        ('' = the base model); ``temperature``/``max_new_tokens`` override the model's settings
        for this call; ``on_text(index, text so far)`` follows each reply while it is generated
        (one candidate only); ``avoid[i]`` (`agents.models.blocking.Avoid`) is what conversation
        i's replies must not copy, in n-grams of ``block_ngrams`` tokens, where the backend can
        forbid them."""
        ...

    def choice_probabilities(self, conversations: Sequence[Sequence[BaseMessage]],
                             choices: Sequence[str]) -> np.ndarray:
        """P(the assistant's next token is each choice), shape (conversations, choices); the
        judge reads its 1-5 score from the probabilities of the digits."""
        ...

    def reply_losses(self, conversations: Sequence[Sequence[BaseMessage]], replies: Sequence[str],
                     adapter: str | None = None) -> list[tuple[float, int]]:
        """(summed negative log-likelihood, tokens) of each given reply after its conversation,
        for perplexity."""
        ...

    def label(self, adapter: str | None = None) -> str:
        """The model's name as episodes record it, with ``adapter`` if one is used."""
        ...


class Embedder(Protocol):
    """Sentence embeddings: one L2-normalised float32 row per text."""

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, shape (len(texts), dimension)."""
        ...


class MemoryStore(Protocol):
    """Characters' memories, one owner (a persona id) per character (`memory/chroma.py`)."""

    def add(self, records: Sequence[MemoryRecord]) -> list[str]:
        """Store the records (the same record twice is stored once); their ids, in order."""
        ...

    def search(self, owner: str, query: str, k: int, now: float) -> list[Recalled]:
        """The owner's ``k`` best memories for ``query`` at simulation time ``now``."""
        ...

    def search_many(self, requests: Sequence[tuple[str, str]], k: int, now: float,
                    reinforce: bool = True) -> list[list[Recalled]]:
        """``search`` for many (owner, query) pairs in one embedder call; recalled memories are
        reinforced (MemoryBank) unless ``reinforce`` is False."""
        ...

    def reinforce(self, recalled: Sequence[Recalled], now: float) -> None:
        """Recalling a memory resets its clock and strengthens it against forgetting."""
        ...

    def set_recalls(self, recalls: Mapping[str, RecallCount]) -> None:
        """Set each memory's reinforcement to what its recalls make it (absolute, so applying
        the same recalls again changes nothing: the simulation replays them after a crash)."""
        ...

    def forget(self, owner: str, now: float) -> int:
        """Delete the owner's memories that have faded; how many were deleted."""
        ...

    def forget_episodes(self, episode_ids: Sequence[str]) -> None:
        """Drop the memories written for these episodes (before an episode is run again)."""
        ...

    def count(self, owner: str | None = None) -> int:
        """How many memories the owner (everyone, for None) has."""
        ...

    def memories(self, owner: str) -> list[dict[str, Any]]:
        """Every stored memory of the owner with its metadata (id, text, kind, ...)."""
        ...

    def get(self, ids: Sequence[str]) -> dict[str, str]:
        """The texts of the memories with these ids (missing ids are left out)."""
        ...


class EpisodeStore(Protocol):
    """Where finished episodes go, one atomic write each (`environment/store.py`: SQLite)."""

    def append(self, episode: Episode) -> None:
        """Store one episode atomically; a second episode with the same id is an error."""
        ...

    def ids(self) -> set[str]:
        """The ids of every stored episode."""
        ...

    def episodes(self, round_index: int | None = None) -> list[Episode]:
        """Every stored episode (of one round), by round then id."""
        ...

    def iter_episodes(self, round_index: int | None = None) -> Iterator[Episode]:
        """``episodes`` one at a time."""
        ...

    def count(self) -> int:
        """How many episodes are stored."""
        ...

    def begin_round(self, round_index: int) -> None:
        """Record that the round has started (once)."""
        ...

    def complete_round(self, round_index: int) -> None:
        """Record that every episode of the round is stored."""
        ...

    def completed_rounds(self) -> int:
        """How many rounds, counted from 0, are complete: the next round to run."""
        ...

    def export_jsonl(self, path: Path) -> int:
        """Write every episode as one JSON line, atomically; how many were written."""
        ...


class Member(Protocol):
    """What a pairing policy needs of a character: its unique name and its persona."""

    @property
    def name(self) -> str: ...

    @property
    def persona(self) -> Any: ...


M = TypeVar("M", bound=Member)


class PairingPolicy(Protocol):
    """Who meets whom each round (`matching/`)."""

    def __call__(self, characters: Sequence[M], graph: nx.Graph, rng: np.random.Generator,
                 round_index: int) -> list[tuple[M, M]]:
        """Disjoint pairs of ``characters``, drawing any randomness from ``rng``; ``graph`` is
        the interaction graph before the round."""
        ...

    def observe(self, episodes: Sequence[Episode], graph: nx.Graph) -> None:
        """Learn from a finished round's scored episodes (a no-op for fixed policies)."""
        ...


class GoalChooser(Protocol):
    """Picks a turn's goal in self-play (`agents/goals.py`); '' leaves the turn unsteered."""

    def choose(self, turn_index: int, earlier: Sequence[str], rng: np.random.Generator) -> str:
        """The goal of turn ``turn_index`` given the goals ``earlier`` in the episode."""
        ...


class Scorer(Protocol):
    """One of the critic's experts (`agents/scorers.py`, `agents/judge.py`)."""

    def score(self, episodes: Sequence[Episode], personas: Mapping[str, Any]) -> list[Judgement]:
        """A judgement per episode; ``personas`` maps participant names to their personas."""
        ...
