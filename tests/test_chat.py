"""Talking to a character: finding it, MIRACLE attributes in its prompt, a chat session whose
memories persist into the next session, and `python run.py task=chat` under a scripted
terminal session (stdin/stdout pipes)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from agents.chat import ChatSession, InvalidMessage, chat_request, check_message, run_terminal
from agents.persona import Attributes
from agents.turns import prompt_for
from core.errors import UsageError
from environment.build import instantiate
from environment.serve.characters import UnknownCharacter, character_attributes, character_key, open_directory
from tests.conftest import ROOT, run_py


def config(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["task=chat", *overrides])


def test_messages_are_checked() -> None:
    assert check_message("  hi  ", 10) == "hi"
    for bad in ("", "   ", "x" * 11, 5):
        with pytest.raises(InvalidMessage):
            check_message(bad, 10)


def test_character_key_and_attributes_from_the_command_line() -> None:
    assert character_key(config("character=Yara Moreau")) == "Yara Moreau"
    cfg = config("character.id=infj-001", "character.attributes.language_style=lyrical")
    assert character_key(cfg) == "infj-001"
    assert character_attributes(cfg) == Attributes(language_style="lyrical")
    with pytest.raises(UsageError, match="character is missing"):
        character_key(config())
    with pytest.raises(UsageError, match="plain, lyrical"):
        character_attributes(config("character.attributes.language_style=loud"))


def test_finding_characters_and_attributes_in_the_prompt(tmp_path: Path, chat_model, embedder) -> None:
    cfg = config(f"paths.chat_memory={tmp_path}", "character.attributes.language_style=lyrical",
                 "character.attributes.attitude=pessimistic", "character.attributes.mentality=critical")
    directory = open_directory(cfg, model=chat_model, embedder=embedder)
    assert directory.find("infj-001").id == "infj-001"
    assert directory.find("yara moreau").id == "infj-001"
    with pytest.raises(UnknownCharacter, match="several"):
        directory.find("infj")
    with pytest.raises(UnknownCharacter, match="no character"):
        directory.find("Nobody Atall")
    character = directory.character("infj-001")
    assert (character.persona.language_style, character.persona.attitude) == ("lyrical", "pessimistic")
    hello = chat_request(character, (("User", "Hello"),), "User")
    system = prompt_for(directory.prompts, hello, [])[0].content
    for instruction in ("Speak lyrically", "expect the worst", "think critically"):
        assert instruction in system
    plain = open_directory(config(f"paths.chat_memory={tmp_path / 'other'}"), model=chat_model,
                           embedder=embedder).character("infj-001")
    hi = chat_request(plain, (("User", "Hi"),), "User")
    assert "Speak lyrically" not in prompt_for(directory.prompts, hi, [])[0].content


def test_a_session_remembers_into_the_next_session(tmp_path: Path, chat_model, embedder) -> None:
    cfg = config(f"paths.chat_memory={tmp_path}")
    directory = open_directory(cfg, model=chat_model, embedder=embedder)
    first = ChatSession(directory.character("esfp-002"), instantiate(cfg.chat, "chat"), directory.prompts,
                        now=0.0)
    out = io.StringIO()
    script = io.StringIO("/goal pets\nMy dog Biscuit loves swimming in the lake.\n/memories\n/quit\n")
    assert run_terminal(first, script, out) == 1
    shown = out.getvalue()
    assert "next reply will ask about their pets" in shown and f"{first.character.name}: " in shown
    assert "[seed, score" in shown and first.goal == ""
    directory = open_directory(cfg, model=chat_model, embedder=embedder)
    second = ChatSession(directory.character("esfp-002"), instantiate(cfg.chat, "chat"), directory.prompts,
                         now=0.0)
    stored = [m["text"] for m in second.character.memory.memories("esfp-002") if m["kind"] == "chat"]
    assert any("Biscuit loves swimming" in m for m in stored)
    reply = second.send("Do you remember what my dog Biscuit loves?")
    assert any("Biscuit" in m.text and m.kind == "chat" for m in reply.recalled)


def test_task_chat_in_a_scripted_terminal_session(tmp_path: Path) -> None:
    script = "Hello! What do you do for a living?\n/goal hobbies\n/memories\n\n/nonsense\n/quit\n"
    result = run_py("task=chat", "character=Yara Moreau", f"paths.chat_memory={tmp_path / 'chats'}",
                    f"hydra.run.dir={tmp_path / 'run'}", "model.temperature=0", stdin=script)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("salon: chatting with Yara Moreau (infj-001)")
    assert any(line.startswith("Yara Moreau: ") and len(line) > len("Yara Moreau: ") for line in lines)
    assert "salon: next reply will ask about their hobbies" in lines
    assert any(line.startswith("  [") for line in lines)  # /memories lists what was recalled
    assert any("unknown command /nonsense" in line for line in lines)
    assert "Traceback" not in result.stderr
    assert any((tmp_path / "chats").rglob("chroma.sqlite3"))


def test_task_chat_with_an_unknown_character_is_one_line(tmp_path: Path) -> None:
    result = run_py("task=chat", "character=Nobody Atall", f"paths.chat_memory={tmp_path / 'chats'}",
                    f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("salon: error: no character 'Nobody Atall'")
