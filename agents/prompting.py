"""Prompt templates (Jinja, strict undefined) rendered into LangChain messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import yaml
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from agents.persona import Persona
from core.records import Scene

PROMPTS_DIR = Path(__file__).parent / "prompts"


@dataclass(frozen=True)
class ReplyContext:
    """Everything a character needs to say its next line."""

    persona: Persona
    partner: str
    role: str
    history: Sequence[tuple[str, str]]  # (speaker name, text), oldest first
    memories: Sequence[str] = ()
    scene: Scene | None = None
    goal: str = ""


class PromptBuilder:
    """Renders `reply.jinja` (system) and the history as alternating user/assistant turns.

    With ``memories_last``, this turn's memories and goal leave the system prompt for the newest
    message (`turn.jinja`): what stays the same across an episode's turns comes first, so each
    turn's prompt extends the speaker's last one and a server's prefix cache (llama.cpp's slots,
    vLLM's automatic prefix caching) reads only the new tail. Off by default: the embedded
    135M model then recited the note's heading ("The things I remember are: - ...") in 6 of
    144 turns of a default run, against 0 of 573 with the memories in the system prompt
    (bench/README.md)."""

    def __init__(self, directory: str | None = None, history_window: int = 6,
                 memories_last: bool = False) -> None:
        self.directory = Path(directory) if directory else PROMPTS_DIR
        self.history_window = history_window
        self.memories_last = memories_last
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.directory), undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False, autoescape=False)

    def render(self, template: str, **variables: Any) -> str:
        return self.env.get_template(template).render(**variables).strip()

    @cached_property
    def role_instructions(self) -> dict[str, str]:
        return yaml.safe_load((self.directory / "roles.yaml").read_text())

    @cached_property
    def attribute_instructions(self) -> dict[str, dict[str, str]]:
        return yaml.safe_load((self.directory / "attributes.yaml").read_text())

    def attribute_lines(self, persona: Persona) -> list[str]:
        return [self.attribute_instructions[name][value]
                for name, value in (("language_style", persona.language_style),
                                    ("attitude", persona.attitude),
                                    ("mentality", persona.mentality)) if value]

    def role_instruction(self, context: ReplyContext) -> str:
        worry = context.persona.recent_worry or "something is on your mind."
        return self.role_instructions[context.role].format(partner=context.partner.split(" ")[0], worry=worry)

    def instructions(self, context: ReplyContext) -> tuple[str, ...]:
        """The instruction sentences of the system prompt (not the persona, not the memories):
        what a reply must follow, never repeat (a small model otherwise recites them)."""
        lines = self.system_prompt(context).splitlines()
        role = self.role_instruction(context)
        start = next((i for i, line in enumerate(lines) if line == role), len(lines))
        goal = [f"In your next reply, {context.goal}."] if context.goal and self.memories_last else []
        return tuple(line for line in lines[start:] if line.strip()) + tuple(goal)

    def system_prompt(self, context: ReplyContext) -> str:
        partner_first = context.partner.split(" ")[0]
        instruction = self.role_instruction(context)
        return self.render("reply.jinja", persona=context.persona, partner=context.partner,
                           partner_first=partner_first, scene=context.scene, role_instruction=instruction,
                           memories=[] if self.memories_last else list(context.memories),
                           goal="" if self.memories_last else context.goal,
                           attribute_lines=self.attribute_lines(context.persona))

    def reply_messages(self, context: ReplyContext) -> list[BaseMessage]:
        """System prompt, an opening cue, the recent history from the speaker's side (then, with
        ``memories_last``, this turn's memories and goal)."""
        me = context.persona.name
        cue = self.render("opening.jinja", partner=context.partner, scene=context.scene)
        messages: list[BaseMessage] = [SystemMessage(self.system_prompt(context))]
        history = list(context.history)[-self.history_window :]
        if history and history[0][0] != me:
            messages.append(HumanMessage(history.pop(0)[1]))
        else:
            messages.append(HumanMessage(cue))
        for speaker, text in history:
            messages.append(AIMessage(text) if speaker == me else HumanMessage(text))
        if not self.memories_last:
            return messages
        note = self.render("turn.jinja", memories=list(context.memories), goal=context.goal)
        return [*messages, SystemMessage(note)] if note else messages
