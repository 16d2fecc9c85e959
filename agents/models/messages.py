"""LangChain messages in the role/content form chat templates and chat datasets use: the one
conversion for inference (`local.py`) and training data (`training/datasets.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage

ROLE_OF = {"system": "system", "human": "user", "ai": "assistant"}
CHAT_ROLES = ("system", "user", "assistant")


def role_of(message: BaseMessage) -> str:
    """system, user or assistant; a ChatMessage keeps its own role if it is one of those.
    Any other message type (tool, function) has no place in a chat template: ValueError."""
    role = ROLE_OF.get(message.type) or getattr(message, "role", None)
    if role not in CHAT_ROLES:
        raise ValueError(f"a {message.type!r} message has no chat-template role; "
                         f"use system, human or AI messages")
    return str(role)


def to_chat(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """Messages as [{"role": "system"|"user"|"assistant", "content": ...}]."""
    return [{"role": role_of(m), "content": str(m.content)} for m in messages]
