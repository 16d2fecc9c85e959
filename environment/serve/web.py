"""The web page's data routes (/api/...): characters, episodes with scores, the graph."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from agents.goals import ACTION_CODES
from core.records import Episode
from environment.serve.characters import UnknownCharacter
from environment.serve.errors import APIError
from environment.serve.state import ServeState

router = APIRouter(prefix="/api")
SUMMARY_FIELDS = ("id", "name", "mbti", "age", "gender", "job", "region")


def _state(request: Request) -> ServeState:
    return request.app.state.salon


@router.get("/info")
def info(request: Request) -> dict[str, Any]:
    state = _state(request)
    folder = state.run_folder
    return {"source": "run" if folder else "bank", "run": folder.name if folder else None,
            "characters": len(state.directory.personas), "batching": state.settings.batching,
            "graph": bool(folder and (folder / "graph.png").is_file()),
            "goals": dict(ACTION_CODES)}


@router.get("/characters")
def characters(request: Request) -> list[dict[str, Any]]:
    state = _state(request)
    counts: dict[str, int] = {}
    for episode in state.episodes():
        for cid in episode.character_ids.values():
            counts[cid] = counts.get(cid, 0) + 1
    return [{**{k: getattr(p, k) for k in SUMMARY_FIELDS}, "fact": p.facts[0],
             "episodes": counts.get(p.id, 0)} for p in state.directory.personas]


@router.get("/characters/{character_id}")
def character(request: Request, character_id: str) -> dict[str, Any]:
    state = _state(request)
    try:
        persona = next(p for p in state.directory.personas if p.id == character_id)
    except StopIteration:
        raise APIError(404, f"no character with id {character_id!r}", code="not_found") from None
    data = persona.to_dict()
    data["memories"] = list(persona.memories[:20])
    data.pop("extra", None)
    data["profile"] = persona.profile_lines()
    data["episodes"] = [episode_summary(e) for e in state.episodes()
                        if persona.id in e.character_ids.values()]
    return data


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 3)


def episode_summary(episode: Episode) -> dict[str, Any]:
    return {"id": episode.id, "round": episode.round, "participants": list(episode.participants),
            "roles": episode.roles, "turns": len(episode.turns), "stop_reason": episode.stop_reason,
            "overall": _number(episode.scores.overall) if episode.scores and episode.scores.rated else None}


@router.get("/episodes")
def episodes(request: Request, character: str | None = None) -> list[dict[str, Any]]:
    found = _state(request).episodes()
    if character:
        found = [e for e in found if character in e.character_ids.values()]
    return [episode_summary(e) for e in found]


@router.get("/episodes/{episode_id}")
def episode(request: Request, episode_id: str) -> dict[str, Any]:
    found = next((e for e in _state(request).episodes() if e.id == episode_id), None)
    if found is None:
        raise APIError(404, f"no episode {episode_id!r}", code="not_found")
    return found.to_dict()


@router.get("/graph.png")
def graph(request: Request) -> FileResponse:
    folder = _state(request).run_folder
    if folder is None or not (folder / "graph.png").is_file():
        raise APIError(404, "no interaction graph: serve a run (run=<run folder>) that wrote graph.png",
                       code="not_found")
    return FileResponse(folder / "graph.png", media_type="image/png")


@router.get("/memories/{character_id}")
def memories(request: Request, character_id: str) -> list[dict[str, Any]]:
    """A character's stored memories, newest first (the web page shows what a chat stored)."""
    state = _state(request)
    try:
        state.directory.by_id(character_id)
    except UnknownCharacter as error:
        raise APIError(404, str(error), code="not_found") from None
    stored = state.directory.memory.memories(character_id)
    stored.sort(key=lambda m: (-float(m.get("created", 0)), m["kind"] != "chat"))
    return [{"id": m["id"], "text": m["text"], "kind": m["kind"]} for m in stored[:50]]
