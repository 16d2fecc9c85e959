"""Talking to a character: a person's message goes through the one batched turn
(`agents/turns.py`), the same a simulation uses, and only successful exchanges are remembered.

The terminal chat (`task=chat`), the web page, the OpenAI-compatible API and the interviews
all answer this way, so a person gets the same character a simulation uses."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from agents.character import Character
from agents.goals import describe_codes, resolve_goal
from agents.prompting import PromptBuilder
from agents.replies import settled_sentences
from agents.turns import Sampling, TurnRequest, TurnSettings, take_turns
from core.errors import is_whole, require
from core.records import MemoryRecord, Recalled, Reply

MEMORY_QUOTE_CHARS = 400
CHAT_ROLE = "character"


class InvalidMessage(ValueError):
    """A message the character cannot be asked (empty, too long); nothing is generated."""


@dataclass(frozen=True)
class ChatSettings:
    """How a character answers a person (`chat.*`; the turn settings follow `conversation.*`)."""

    user_name: str = "User"
    memory_k: int = 3
    retries: int = 2
    max_sentences: int = 3
    max_message_chars: int = 2000
    memory_importance: float = 0.5

    def __post_init__(self) -> None:
        require(bool(str(self.user_name).strip()), "user_name", "allowed is a non-empty name",
                self.user_name)
        require(is_whole(self.max_message_chars, 1), "max_message_chars",
                "allowed is a whole number >= 1", self.max_message_chars)
        require(0 <= self.memory_importance <= 1, "memory_importance", "allowed is a number from 0 to 1",
                self.memory_importance)
        TurnSettings(self.memory_k, self.retries, self.max_sentences)  # checks those three

    @property
    def turn(self) -> TurnSettings:
        return TurnSettings(self.memory_k, self.retries, self.max_sentences)


def check_message(text: object, limit: int) -> str:
    """The message, stripped; InvalidMessage if it is not text, empty or over ``limit``."""
    if not isinstance(text, str):
        raise InvalidMessage(f"a message must be text, got {type(text).__name__}")
    if not "".join(c for c in text if c.isprintable()).strip():
        raise InvalidMessage("the message is empty (nothing printable)")
    if len(text) > limit:
        raise InvalidMessage(f"the message is {len(text)} characters long; the limit is {limit}")
    return text.strip()


def chat_request(character: Character, history: tuple[tuple[str, str], ...], partner: str,
                 goal: str = "", extra_system: str = "") -> TurnRequest:
    """A person (``partner``) asking ``character`` for its reply to the last line of ``history``."""
    return TurnRequest(character, history, partner, CHAT_ROLE, goal=goal, extra_system=extra_system)


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


def exchange_memory(request: TurnRequest, reply: Reply, now: float, importance: float) -> MemoryRecord:
    said = request.message[:MEMORY_QUOTE_CHARS]
    text = f'{request.partner} said to me: "{said}" I answered: "{reply.text[:MEMORY_QUOTE_CHARS]}"'
    return MemoryRecord(request.character.id, text, "chat", importance, now)


def remember(pairs: Iterable[tuple[TurnRequest, Reply]], now: float, importance: float) -> list[str]:
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

    def __init__(self, character: Character, settings: ChatSettings, prompts: PromptBuilder, now: float,
                 seed: int = 0) -> None:
        self.character = character
        self.settings = settings
        self.prompts = prompts
        self.now = now
        self.seed = seed
        self.history: list[tuple[str, str]] = []
        self.goal = ""
        self.last_recalled: tuple[Recalled, ...] = ()

    def set_goal(self, text: str) -> str:
        self.goal = resolve_goal(text)
        return self.goal

    def send(self, message: str, follow: Callable[[str], None] | None = None) -> Reply:
        """The character's reply; ``follow(raw text so far)`` watches it being generated."""
        text = check_message(message, self.settings.max_message_chars)
        history = (*self.history, (self.settings.user_name, text))
        request = chat_request(self.character, history, self.settings.user_name, self.goal)
        self.seed += 1
        on_text = None if follow is None else (lambda _index, raw: follow(raw))
        reply = take_turns([request], self.prompts, self.settings.turn, self.now, Sampling(self.seed),
                           on_text)[0]
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
