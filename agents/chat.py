"""Talking to a character: recall memories, prompt, one batched model call for every pending
request, strict cleaning with retries, and memories of successful exchanges only.

The terminal chat (`task=chat`), the web page, the OpenAI-compatible API and the interviews
all answer through `respond`, so a person gets the same character a simulation uses."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, SystemMessage
from omegaconf import DictConfig

from agents.character import Character
from agents.goals import describe_codes, resolve_goal
from agents.replies import clean_reply, settled_sentences
from memory.store import MemoryRecord, Recalled

MEMORY_QUOTE_CHARS = 400


class InvalidMessage(ValueError):
    """A message the character cannot be asked (empty, too long); nothing is generated."""


@dataclass(frozen=True)
class ChatSettings:
    """How a character answers a person (`chat.*` and `conversation.*` in the config)."""

    user_name: str = "User"
    memory_k: int = 3
    retries: int = 2
    max_sentences: int = 3
    max_message_chars: int = 2000
    memory_importance: float = 0.5

    def __post_init__(self) -> None:
        if not self.user_name.strip() or self.max_message_chars < 1 or self.retries < 0:
            raise ValueError("chat settings need a user name, max_message_chars >= 1, retries >= 0")


@dataclass(frozen=True)
class ChatRequest:
    """Ask ``character`` for its next line after ``history`` ((speaker, text), oldest first; the
    last line is the partner's). ``extra_system`` is appended to the system prompt."""

    character: Character
    history: tuple[tuple[str, str], ...]
    partner: str = "User"
    role: str = "character"
    goal: str = ""
    extra_system: str = ""

    @property
    def message(self) -> str:
        return self.history[-1][1] if self.history else ""


@dataclass(frozen=True)
class ChatReply:
    """A cleaned reply, or the reason there is none (``error``); never made-up text."""

    text: str = ""
    error: str = ""
    recalled: tuple[Recalled, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    goal: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.text) and not self.error


def check_message(text: object, limit: int) -> str:
    """The message, stripped; InvalidMessage if it is not text, empty or over ``limit``."""
    if not isinstance(text, str):
        raise InvalidMessage(f"a message must be text, got {type(text).__name__}")
    if not text.strip():
        raise InvalidMessage("the message is empty")
    if len(text) > limit:
        raise InvalidMessage(f"the message is {len(text)} characters long; the limit is {limit}")
    return text.strip()


def chat_settings(cfg: DictConfig) -> ChatSettings:
    return ChatSettings(
        user_name=cfg.chat.user_name, memory_k=cfg.conversation.memory_k,
        retries=cfg.conversation.retries, max_sentences=cfg.conversation.max_sentences,
        max_message_chars=cfg.chat.max_message_chars, memory_importance=cfg.chat.memory_importance)


def recall(requests: Sequence[ChatRequest], k: int, now: float) -> list[list[Recalled]]:
    """Each request's memories, one `search_many` (one embedder call) per memory store."""
    results: list[list[Recalled]] = [[] for _ in requests]
    groups: dict[int, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(id(request.character.memory), []).append(index)
    for indices in groups.values():
        memory = requests[indices[0]].character.memory
        queries = [(requests[i].character.id, requests[i].character.memory_query(
            requests[i].history, requests[i].partner, None)) for i in indices]
        for i, found in zip(indices, memory.search_many(queries, k, now), strict=True):
            results[i] = found
    return results


def prompt_for(request: ChatRequest, recalled: Sequence[Recalled]) -> list[BaseMessage]:
    character = request.character
    context = character.context(request.history, request.partner, request.role, recalled, None,
                                request.goal)
    messages = character.messages(context)
    if request.extra_system:
        messages[0] = SystemMessage(f"{messages[0].content}\n{request.extra_system}")
    return messages


def generate(model: BaseChatModel, prompts: Sequence[Sequence[BaseMessage]], seed: int,
             temperature: float | None = None, max_new_tokens: int | None = None,
             on_text: Callable[[int, str], None] | None = None) -> list[tuple[str, int, int]]:
    """(raw text, prompt tokens, completion tokens) per prompt from one batched call. A local
    model takes per-call sampling settings and streams (``on_text(index, raw text so far)``);
    a remote server uses its configured ones and answers whole."""
    if not prompts:
        return []
    complete = getattr(model, "complete", None)
    if complete is not None:
        done = complete(prompts, seed=seed, temperature=temperature, max_new_tokens=max_new_tokens,
                        on_text=on_text)
        return [(c.text, c.prompt_tokens, c.completion_tokens) for c in done]
    outputs = model.batch([list(p) for p in prompts], seed=seed)
    return [(str(m.content), int((m.usage_metadata or {}).get("input_tokens", 0)),
             int((m.usage_metadata or {}).get("output_tokens", 0))) for m in outputs]


def respond(requests: Sequence[ChatRequest], settings: ChatSettings, now: float, seed: int,
            temperature: float | None = None, max_new_tokens: int | None = None,
            on_text: Callable[[int, str], None] | None = None) -> list[ChatReply]:
    """Replies to every request: one batched call per attempt; only rejected replies are asked
    again (up to ``settings.retries`` times), and one that never passes stays an error.
    ``on_text(request index, raw text so far)`` follows every attempt as it is generated."""
    recalled = recall(requests, settings.memory_k, now)
    prompts = [prompt_for(r, found) for r, found in zip(requests, recalled, strict=True)]
    replies = [ChatReply(error="not generated", recalled=tuple(f), goal=r.goal)
               for r, f in zip(requests, recalled, strict=True)]
    pending = list(range(len(requests)))
    model = requests[0].character.model if requests else None
    for attempt in range(settings.retries + 1):
        if not pending:
            break
        follow = None if on_text is None else (lambda j, raw, asked=tuple(pending): on_text(asked[j], raw))
        outputs = generate(model, [prompts[i] for i in pending], seed + attempt, temperature,
                           max_new_tokens, follow)
        for i, (raw, prompt_tokens, completion_tokens) in zip(pending, outputs, strict=True):
            cleaned = clean_reply(raw, requests[i].character.name, requests[i].partner,
                                  settings.max_sentences)
            replies[i] = replace(replies[i], text=cleaned.text, error=cleaned.error,
                                 prompt_tokens=replies[i].prompt_tokens + prompt_tokens,
                                 completion_tokens=replies[i].completion_tokens + completion_tokens)
        pending = [i for i in pending if not replies[i].ok]
    return replies


@dataclass
class ReplyStream:
    """What a listener has been sent of one reply while it is generated: settled sentences
    only (text `clean_reply` keeps whatever follows), each once, in order."""

    speaker: str
    partner: str
    max_sentences: int
    sent: str = ""

    def feed(self, raw: str) -> str:
        """The new settled text since the last call ('' if none)."""
        return self._extend(settled_sentences(raw, self.speaker, self.partner, self.max_sentences))

    def finish(self, final: str) -> str | None:
        """The rest of the final reply; None if what was sent is not its beginning (a later
        rejection or a retry replaced it), so the listener must show ``final`` instead."""
        return self._extend(final) if final.startswith(self.sent) else None

    def _extend(self, text: str) -> str:
        if len(text) <= len(self.sent) or not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta


def exchange_memory(request: ChatRequest, reply: ChatReply, now: float, importance: float) -> MemoryRecord:
    said = request.message[:MEMORY_QUOTE_CHARS]
    text = f'{request.partner} said to me: "{said}" I answered: "{reply.text[:MEMORY_QUOTE_CHARS]}"'
    return MemoryRecord(request.character.id, text, "chat", importance, now)


def remember(pairs: Iterable[tuple[ChatRequest, ChatReply]], now: float, importance: float) -> list[str]:
    """Store the successful exchanges in their characters' memories (failed ones leave none)."""
    by_store: dict[int, tuple[Any, list[MemoryRecord]]] = {}
    for request, reply in pairs:
        if reply.ok:
            memory = request.character.memory
            by_store.setdefault(id(memory), (memory, []))[1].append(
                exchange_memory(request, reply, now, importance))
    return [mid for memory, records in by_store.values() for mid in memory.add(records)]


class ChatSession:
    """One person talking to one character: the history, a pending goal and what the
    character recalled for its last reply."""

    def __init__(self, character: Character, settings: ChatSettings, now: float, seed: int = 0) -> None:
        self.character = character
        self.settings = settings
        self.now = now
        self.seed = seed
        self.history: list[tuple[str, str]] = []
        self.goal = ""
        self.last_recalled: tuple[Recalled, ...] = ()

    def set_goal(self, text: str) -> str:
        self.goal = resolve_goal(text)
        return self.goal

    def send(self, message: str, follow: Callable[[str], None] | None = None) -> ChatReply:
        """The character's reply; ``follow(raw text so far)`` watches it being generated."""
        text = check_message(message, self.settings.max_message_chars)
        history = (*self.history, (self.settings.user_name, text))
        request = ChatRequest(self.character, history, self.settings.user_name, goal=self.goal)
        self.seed += 1
        on_text = None if follow is None else (lambda _index, raw: follow(raw))
        reply = respond([request], self.settings, self.now, self.seed, on_text=on_text)[0]
        self.last_recalled = reply.recalled
        if reply.ok:
            self.history = [*history, (self.character.name, reply.text)]
            self.goal = ""  # a goal steers one reply
            remember([(request, reply)], self.now, self.settings.memory_importance)
        return reply


HELP = ("Commands: /goal <code or your own goal> steers the next reply (/goal alone lists the codes), "
        "/memories shows what the character recalled for its last reply, /quit ends the chat.")


def run_terminal(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """The chat loop over text streams (a terminal or a scripted pipe); returns the number of
    replies. Ends on /quit or at the end of input."""
    name = session.character.name
    print(f"salon: chatting with {name} ({session.character.id}). {HELP}", file=stdout, flush=True)
    replies = 0
    prompt = "you> " if stdin.isatty() else ""
    while True:
        print(prompt, end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            return replies
        command, _, argument = line.strip().partition(" ")
        if command == "/quit":
            return replies
        if command.startswith("/"):
            print(run_command(session, command, argument.strip()), file=stdout, flush=True)
            continue
        if line.strip():
            replies += _say(session, line.strip(), stdout)


def _say(session: ChatSession, message: str, stdout: TextIO) -> int:
    """Prints the reply as ``Name: text``, each sentence as soon as it is settled."""
    name = session.character.name
    stream = ReplyStream(name, session.settings.user_name, session.settings.max_sentences)

    def show(raw: str) -> None:
        first = not stream.sent
        delta = stream.feed(raw)
        if delta:
            print(f"{name}: {delta}" if first else delta, end="", file=stdout, flush=True)

    try:
        reply = session.send(message, follow=show)
    except InvalidMessage as error:
        print(f"salon: {error}", file=stdout, flush=True)
        return 0
    started = "\n" if stream.sent else ""
    if not reply.ok:
        print(f"{started}salon: no reply ({reply.error}); nothing was stored", file=stdout, flush=True)
        return 0
    rest = stream.finish(reply.text)
    if rest is None:  # a retry replaced what was shown
        print(f"\n{name} (revised): {reply.text}", file=stdout, flush=True)
    else:
        print(rest if started else f"{name}: {rest}", file=stdout, flush=True)
    return 1


def run_command(session: ChatSession, command: str, argument: str) -> str:
    if command == "/goal":
        if not argument:
            return f"salon: goal codes: {describe_codes()}; or write your own goal"
        try:
            return f"salon: next reply will {session.set_goal(argument)}"
        except ValueError as error:
            return f"salon: {error}"
    if command == "/memories":
        if not session.last_recalled:
            return "salon: nothing was recalled (no reply yet, or no memories matched)"
        return "\n".join(f"  [{m.kind}, score {m.score:.2f}] {m.text}" for m in session.last_recalled)
    return f"salon: unknown command {command}. {HELP}"


def chat_task(cfg: DictConfig) -> None:
    """`python run.py task=chat character=<name or id> [run=<run folder>]`."""
    from environment.serve.characters import character_key, open_directory

    key = character_key(cfg)
    directory = open_directory(cfg)
    character = directory.chosen(key)
    session = ChatSession(character, chat_settings(cfg), directory.now, seed=cfg.seed)
    run_terminal(session)
