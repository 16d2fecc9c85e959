"""A Character: a persona with a memory and a chat model, that can say its next line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.persona import Persona
from agents.prompting import ReplyContext
from core.records import MemoryRecord, Recalled, Scene
from core.seams import ChatModel, MemoryStore


@dataclass
class Character:
    """Persona + memory + chat model. ``adapter`` names a trained LoRA adapter ('' = base);
    ``cohort`` is the A/B cohort it belongs to ("base" or "adapter")."""

    persona: Persona
    memory: MemoryStore
    model: ChatModel
    adapter: str = ""
    cohort: str = field(default="base")
    role_adapters: dict[str, str] = field(default_factory=dict)

    def adapter_for(self, role: str) -> str:
        """The LoRA adapter this character speaks with in ``role`` (a per-role adapter wins)."""
        return self.role_adapters.get(role, self.adapter)

    def label(self, role: str = "") -> str:
        """The model it speaks with in ``role``, as episodes record it (name+adapter)."""
        return self.model.label(self.adapter_for(role))

    @property
    def name(self) -> str:
        return self.persona.name

    @property
    def id(self) -> str:
        return self.persona.id

    def memory_query(self, history: Sequence[tuple[str, str]], partner: str, scene: Scene | None) -> str:
        """What to recall: the partner's last line, else the meeting itself."""
        return memory_query(history, self.name, partner, scene, self.persona.recent_worry)

    def context(
        self,
        history: Sequence[tuple[str, str]],
        partner: str,
        role: str,
        recalled: Sequence[Recalled] = (),
        scene: Scene | None = None,
        goal: str = "",
    ) -> ReplyContext:
        return ReplyContext(self.persona, partner, role, tuple(history),
                            tuple(m.text for m in recalled), scene, goal)

    def seed_memories(self, now: float, importance: float) -> list[MemoryRecord]:
        return [MemoryRecord(self.id, text, "seed", importance, now) for text in self.persona.memories]


def memory_query(history: Sequence[tuple[str, str]], speaker: str, partner: str, scene: Scene | None,
                 worry: str = "") -> str:
    """The query ``speaker`` recalls memories with: the partner's last line, else the meeting
    itself. The memory selector trains on exactly this text (training/selector_data.py)."""
    for name, text in reversed(history):
        if name != speaker:
            return text
    where = f" at {scene.location}" if scene else ""
    return f"Meeting {partner}{where}. {worry}".strip()
