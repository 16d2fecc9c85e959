"""One batched turn, for every caller: the simulation's engine, the terminal chat, the web page,
the API and the interviews all say their next lines through `take_turns`.

For a list of requests: recall each speaker's memories (one `search_many` per memory store),
render the prompts, make one batched call per chat model (adapters per row; n candidates per
request, none of which may copy n-grams of the conversation or the recalled memories), clean
every candidate strictly, keep the one the turn scorer ranks best, and ask again only for the
requests with no usable candidate, up to ``retries`` times. A reply that never passes stays an
error: no text is ever made up."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from langchain_core.messages import BaseMessage, SystemMessage

from agents.character import Character
from agents.models.blocking import Avoid
from agents.prompting import PromptBuilder
from agents.ranking import TurnContext, TurnRanker
from agents.replies import clean_reply
from core.errors import is_whole, require
from core.records import Candidate, Recalled, Reply, Scene
from core.rng import per_conversation
from core.seams import OnText


@dataclass(frozen=True)
class TurnSettings:
    """How a reply is made: memories recalled for it, retries of a rejected reply, and the most
    sentences it keeps. ``reinforce``: recalling strengthens the memories at once (a chat);
    the simulation keeps it False and reinforces when the episode is committed, so an episode
    that never reached the store left no trace in memory."""

    memory_k: int = 3
    retries: int = 2
    max_sentences: int = 3
    candidates: int = 1
    block_ngrams: int = 4
    reinforce: bool = True

    def __post_init__(self) -> None:
        require(is_whole(self.candidates, 1, 16), "candidates", "allowed is a whole number from 1 to 16",
                self.candidates)
        require(self.block_ngrams == 0 or is_whole(self.block_ngrams, 2, 32), "block_ngrams",
                "allowed is 0 (off) or a whole number from 2 to 32", self.block_ngrams)
        require(is_whole(self.memory_k, 0, 50), "memory_k", "allowed is a whole number from 0 to 50",
                self.memory_k)
        require(is_whole(self.retries, 0, 10), "retries", "allowed is a whole number from 0 to 10",
                self.retries)
        require(is_whole(self.max_sentences, 1, 20), "max_sentences",
                "allowed is a whole number from 1 to 20", self.max_sentences)


@dataclass(frozen=True)
class TurnRequest:
    """Ask ``character`` for its next line to ``partner`` after ``history`` ((speaker, text),
    oldest first), in ``role`` and ``scene``, steered by ``goal``; ``extra_system`` is appended
    to the system prompt."""

    character: Character
    history: tuple[tuple[str, str], ...]
    partner: str
    role: str
    scene: Scene | None = None
    goal: str = ""
    extra_system: str = ""

    @property
    def message(self) -> str:
        """The line being answered ('' when the character opens)."""
        return self.history[-1][1] if self.history else ""

    @property
    def adapter(self) -> str:
        return self.character.adapter_for(self.role)


@dataclass
class CallStats:
    """Wall time inside model calls and the tokens they reported (for benchmarks)."""

    generate_seconds: float = 0.0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    model_calls: int = 0
    keep_prompts: bool = False
    prompts: list[list[BaseMessage]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # episodes' threads


@dataclass(frozen=True)
class Sampling:
    """Per-call sampling: the seed of the first attempt (retries add 1 each), call-wide (request
    i gets seed + i) or one per request, and overrides of the model's temperature and reply
    length (None = the model's own)."""

    seed: int | tuple[int, ...]
    temperature: float | None = None
    max_new_tokens: int | None = None


def take_turns(requests: Sequence[TurnRequest], prompts: PromptBuilder, settings: TurnSettings,
               now: float, sampling: Sampling, on_text: OnText | None = None,
               stats: CallStats | None = None, ranker: TurnRanker | None = None) -> list[Reply]:
    """A cleaned reply (or its error) per request, with what was recalled and the tokens every
    attempt spent. ``on_text(request index, raw text so far)`` follows each attempt (with one
    candidate per request). ``ranker`` picks among candidates (None: the first usable one)."""
    recalled = recall(requests, settings.memory_k, now, settings.reinforce)
    messages = [prompt_for(prompts, r, found) for r, found in zip(requests, recalled, strict=True)]
    avoid = [_avoid(prompts, r, found) for r, found in zip(requests, recalled, strict=True)]
    replies = [Reply(error="not generated", recalled=tuple(found), goal=r.goal)
               for r, found in zip(requests, recalled, strict=True)]
    pending = list(range(len(requests)))
    seeds = per_conversation(sampling.seed, len(requests))
    for attempt in range(settings.retries + 1):
        if not pending:
            break
        asked = [requests[i] for i in pending]
        this_attempt = replace(sampling, seed=tuple(int(seeds[i]) + attempt for i in pending))  # type: ignore[arg-type]
        outputs = generate(asked, [messages[i] for i in pending], this_attempt, settings,
                           [avoid[i] for i in pending], _relay(on_text, pending), stats)
        chosen = choose(asked, [replies[i].recalled for i in pending], outputs, settings, ranker)
        for i, reply in zip(pending, chosen, strict=True):
            replies[i] = replace(reply, recalled=replies[i].recalled, goal=replies[i].goal).after(replies[i])
        pending = [i for i in pending if not replies[i].ok]
    return replies


def choose(requests: Sequence[TurnRequest], recalled: Sequence[Sequence[Recalled]],
           outputs: Sequence[Sequence[Reply]], settings: TurnSettings,
           ranker: TurnRanker | None) -> list[Reply]:
    """Per request: its candidates cleaned; the best usable one (ranked by ``ranker``) carries
    the tokens of all of them and the ranked list; with none usable, the first one's error."""
    cleaned = [[_cleaned(r, raw, settings.max_sentences) for raw in options]
               for r, options in zip(requests, outputs, strict=True)]
    usable = [[c for c in options if c.ok] for options in cleaned]
    scores = _scores(requests, recalled, usable, ranker)
    chosen = []
    for options, good, points in zip(cleaned, usable, scores, strict=True):
        spent = Reply(prompt_tokens=sum(c.prompt_tokens for c in options),
                      completion_tokens=sum(c.completion_tokens for c in options),
                      uncounted=sum(c.uncounted for c in options))
        if not good:
            chosen.append(replace(options[0], prompt_tokens=0, completion_tokens=0, uncounted=0).after(spent))
            continue
        ranked = sorted(zip(good, points, strict=True), key=lambda pair: -pair[1])
        best = replace(ranked[0][0], prompt_tokens=0, completion_tokens=0, uncounted=0,
                       candidates=tuple(Candidate(c.text, round(p, 4)) for c, p in ranked) if len(options) > 1
                       else ())
        chosen.append(best.after(spent))
    return chosen


def _cleaned(request: TurnRequest, raw: Reply, max_sentences: int) -> Reply:
    cleaned = clean_reply(raw.text, request.character.name, request.partner, max_sentences)
    return replace(raw, text=cleaned.text, error=cleaned.error)


def _scores(requests: Sequence[TurnRequest], recalled: Sequence[Sequence[Recalled]],
            usable: Sequence[Sequence[Reply]], ranker: TurnRanker | None) -> list[list[float]]:
    """The ranker's scores of the usable candidates (their order when there is no ranker, or
    only one candidate to rank)."""
    if ranker is None or all(len(u) <= 1 for u in usable):
        return [[-float(k) for k in range(len(u))] for u in usable]
    contexts = [turn_context(r, found) for r, found in zip(requests, recalled, strict=True)]
    return ranker.scores(contexts, [[c.text for c in u] for u in usable])


def turn_context(request: TurnRequest, recalled: Sequence[Recalled]) -> TurnContext:
    partner_line = next((t for s, t in reversed(request.history) if s != request.character.name), "")
    return TurnContext(request.character.name, partner_line, tuple(t for _, t in request.history),
                       tuple(m.text for m in recalled), tuple(request.character.persona.facts))


def _avoid(prompts: PromptBuilder, request: TurnRequest, recalled: Sequence[Recalled]) -> Avoid:
    """A reply may not copy the conversation's lines, the recalled memories or the prompt's
    instructions; its own persona facts it may always use."""
    context = request.character.context(request.history, request.partner, request.role, recalled,
                                        request.scene, request.goal)
    return Avoid(tuple(t for _, t in request.history) + tuple(m.text for m in recalled)
                 + prompts.instructions(context), tuple(request.character.persona.facts))


def recall(requests: Sequence[TurnRequest], k: int, now: float, reinforce: bool = True
           ) -> list[list[Recalled]]:
    """Each request's memories: one `search_many` (one embedder call) per memory store."""
    results: list[list[Recalled]] = [[] for _ in requests]
    for indices in _groups([id(r.character.memory) for r in requests]):
        memory = requests[indices[0]].character.memory
        queries = [(requests[i].character.id, requests[i].character.memory_query(
            requests[i].history, requests[i].partner, requests[i].scene)) for i in indices]
        for i, found in zip(indices, memory.search_many(queries, k, now, reinforce), strict=True):
            results[i] = found
    return results


def prompt_for(prompts: PromptBuilder, request: TurnRequest, recalled: Sequence[Recalled]
               ) -> list[BaseMessage]:
    """The messages ``request``'s speaker sees: system prompt, then the history from its side."""
    context = request.character.context(request.history, request.partner, request.role, recalled,
                                        request.scene, request.goal)
    messages = prompts.reply_messages(context)
    if request.extra_system:
        messages[0] = SystemMessage(f"{messages[0].content}\n{request.extra_system}")
    return messages


def generate(requests: Sequence[TurnRequest], messages: Sequence[Sequence[BaseMessage]],
             sampling: Sampling, settings: TurnSettings, avoid: Sequence[Avoid] | None = None,
             on_text: OnText | None = None, stats: CallStats | None = None) -> list[list[Reply]]:
    """Raw candidates per request: one `complete` call per distinct chat model, each row with its
    adapter, ``settings.candidates`` replies per row."""
    results: list[list[Reply]] = [[] for _ in requests]
    n = settings.candidates
    for indices in _groups([id(r.character.model) for r in requests]):
        model = requests[indices[0]].character.model
        adapters = [requests[i].adapter for i in indices]
        started = time.perf_counter()
        seeds = per_conversation(sampling.seed, len(requests))
        outputs = model.complete(
            [messages[i] for i in indices], seed=[int(seeds[i]) for i in indices],  # type: ignore[arg-type]
            adapters=adapters if any(adapters) else None,
            temperature=sampling.temperature, max_new_tokens=sampling.max_new_tokens,
            on_text=_relay(on_text, indices) if n == 1 else None, candidates=n,
            avoid=[avoid[i] for i in indices] if avoid is not None and settings.block_ngrams else None,
            block_ngrams=settings.block_ngrams)
        if stats is not None:
            _count(stats, time.perf_counter() - started, outputs, [list(messages[i]) for i in indices])
        for k, i in enumerate(indices):
            results[i] = list(outputs[k * n:(k + 1) * n])
    return results


def _count(stats: CallStats, seconds: float, outputs: Sequence[Reply],
           prompts: list[list[BaseMessage]]) -> None:
    with stats.lock:
        _add_counts(stats, seconds, outputs, prompts)


def _add_counts(stats: CallStats, seconds: float, outputs: Sequence[Reply],
                prompts: list[list[BaseMessage]]) -> None:
    stats.generate_seconds += seconds
    stats.model_calls += 1
    stats.prompt_tokens += sum(r.prompt_tokens for r in outputs)
    stats.completion_tokens += sum(r.completion_tokens for r in outputs)
    if stats.keep_prompts:
        stats.prompts.extend(prompts)


def _groups(keys: Sequence[int]) -> list[list[int]]:
    """Indices grouped by key, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def _relay(on_text: OnText | None, indices: Sequence[int]) -> OnText | None:
    """``on_text`` with a call's row numbers mapped back to the caller's indices."""
    if on_text is None:
        return None
    asked = tuple(indices)
    return lambda row, text: on_text(asked[row], text)
