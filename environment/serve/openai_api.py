"""The OpenAI-compatible routes: GET /v1/models and POST /v1/chat/completions, where a model
is `character/<id>`. The server adds the persona and the retrieved memories; each successful
exchange is stored in the character's memory; bad input is an HTTP 4xx with OpenAI's error body.

Streaming sends the reply as server-sent events in OpenAI's chunk format while the batched
`generate` runs: each sentence goes out once it is settled (the next one has begun, so cleaning
will keep it), the rest when the reply is final. If a late rejection or a retry replaced text
already sent (rare), the last chunk's ``salon.replaced`` is true and ``salon.text`` holds the
reply that was stored. A reply that fails after the stream began ends it with an error event."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError
from sse_starlette.sse import EventSourceResponse

from agents.chat import InvalidMessage, ReplyStream, chat_request, check_message
from agents.goals import resolve_goal
from agents.turns import TurnRequest
from core.records import Reply
from environment.serve.batching import Job, LiveReply
from environment.serve.characters import UnknownCharacter
from environment.serve.errors import APIError
from environment.serve.state import ServeState

MODEL_PREFIX = "character/"
NAME = re.compile(r"^[A-Za-z0-9 _.'-]{1,64}$")
router = APIRouter()
log = logging.getLogger(__name__)


class TextPart(BaseModel):
    type: Literal["text"]
    text: StrictStr


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class CompletionRequest(BaseModel):
    """The fields Salon reads; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: StrictStr
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    goal: StrictStr | None = None  # Salon's extension: a PersonaGPT goal for this reply


def parse_request(body: bytes) -> CompletionRequest:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise APIError(400, f"the request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return CompletionRequest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise APIError(400, f"{param}: {first['msg']}", param=param, code="invalid_value") from None


def to_chat_request(state: ServeState, body: CompletionRequest) -> TurnRequest:
    if not body.model.startswith(MODEL_PREFIX):
        raise APIError(404, f"model {body.model!r} is not served here; use character/<id> (GET /v1/models)",
                       type="invalid_request_error", param="model", code="model_not_found")
    try:
        character = state.directory.by_id(body.model.removeprefix(MODEL_PREFIX))
    except UnknownCharacter as error:
        raise APIError(404, str(error), param="model", code="model_not_found") from None
    if len(body.messages) > state.settings.max_messages:
        raise APIError(400, f"at most {state.settings.max_messages} messages per request",
                       param="messages", code="too_many_messages")
    last = body.messages[-1]
    if last.role != "user":
        raise APIError(400, "the last message must be the user's", param="messages", code="invalid_value")
    partner = _partner(state, last)
    history, system = [], []
    for index, message in enumerate(body.messages):
        text = _checked(state, message, index)
        if message.role in ("system", "developer"):
            system.append(text)
        else:
            history.append((partner if message.role == "user" else character.name, text))
    return chat_request(character, tuple(history), partner, _goal(body.goal), "\n".join(system))


def _checked(state: ServeState, message: Message, index: int) -> str:
    try:
        return check_message(message.text(), state.chat.max_message_chars)
    except InvalidMessage as error:
        code = "message_too_long" if "limit" in str(error) else "empty_message"
        raise APIError(400, f"messages[{index}]: {error}", param=f"messages.{index}.content",
                       code=code) from None


def _partner(state: ServeState, last: Message) -> str:
    if last.name is None:
        return state.chat.user_name
    if not NAME.match(last.name):
        raise APIError(400, "a message name is 1-64 letters, digits, spaces or _.'-",
                       param="messages.name", code="invalid_value")
    return last.name


def _goal(goal: str | None) -> str:
    if goal is None or not goal.strip():
        return ""
    try:
        return resolve_goal(goal)
    except ValueError as error:
        raise APIError(400, str(error), param="goal", code="invalid_value") from None


def max_new_tokens(state: ServeState, body: CompletionRequest) -> int | None:
    wanted = body.max_completion_tokens or body.max_tokens
    if wanted is not None and wanted > state.settings.max_new_tokens_limit:
        raise APIError(400, f"max_tokens is at most {state.settings.max_new_tokens_limit} here",
                       param="max_tokens", code="invalid_value")
    return wanted


@router.get("/v1/models")
def list_models(request: Request) -> dict[str, Any]:
    state: ServeState = request.app.state.salon
    return {"object": "list", "data": [
        {"id": f"{MODEL_PREFIX}{p.id}", "object": "model", "created": 0, "owned_by": "salon", "name": p.name}
        for p in state.directory.personas]}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> JSONResponse | EventSourceResponse:
    state: ServeState = request.app.state.salon
    body = parse_request(await request.body())
    chat = to_chat_request(state, body)
    job = Job(chat, body.temperature, max_new_tokens(state, body), store=state.settings.remember)
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    if body.stream:
        live = LiveReply(ReplyStream(chat.character.name, chat.partner, state.chat.max_sentences),
                         asyncio.get_running_loop())
        answer = asyncio.ensure_future(state.queue.submit(replace(job, live=live)))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventSourceResponse(stream_chunks(completion_id, body.model, answer, live, include_usage),
                                   sep="\n")
    return JSONResponse(completion(completion_id, body.model, await state.queue.submit(job)))


def finish_reason(reply: Reply) -> str:
    """'stop', or OpenAI's 'content_filter' (content omitted) when every reply the model made
    was rejected by the cleaner: nothing is made up, nothing stored, and it is not a server
    error; `salon.rejected` says why."""
    return "stop" if reply.ok else "content_filter"


def _usage(reply: Reply) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


def salon_extra(reply: Reply) -> dict[str, Any]:
    """Salon's additions: what the character recalled, the goal it pursued and, for a reply
    that could not be made, why (``rejected``; nothing was stored)."""
    why = f"no usable reply ({reply.error or 'empty'}); nothing was stored"
    rejected = {} if reply.ok else {"rejected": why}
    return {"goal": reply.goal, "memories": [
        {"id": m.id, "text": m.text, "kind": m.kind, "score": round(m.score, 4)} for m in reply.recalled],
        **rejected}


def completion(completion_id: str, model: str, reply: Reply) -> dict[str, Any]:
    text = reply.text if reply.ok else ""
    return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason(reply), "logprobs": None}],
            "usage": _usage(reply), "salon": salon_extra(reply)}


def _chunk(completion_id: str, model: str, delta: dict[str, str], finish: str | None = None,
           **extra: Any) -> dict[str, str]:
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                         "logprobs": None}], **extra}
    return {"data": json.dumps(body)}


async def live_deltas(answer: asyncio.Future[Reply], live: LiveReply) -> AsyncIterator[str]:
    """Settled text as the worker thread reports it, until the reply is final."""
    while not answer.done():
        waiting = asyncio.ensure_future(live.deltas.get())
        await asyncio.wait({waiting, answer}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            yield waiting.result()
        else:
            waiting.cancel()
    while not live.deltas.empty():
        yield live.deltas.get_nowait()


async def stream_chunks(completion_id: str, model: str, answer: asyncio.Future[Reply], live: LiveReply,
                        include_usage: bool) -> AsyncIterator[dict[str, str]]:
    yield _chunk(completion_id, model, {"role": "assistant", "content": ""})
    async for delta in live_deltas(answer, live):
        yield _chunk(completion_id, model, {"content": delta})
    try:
        reply = answer.result()
    except APIError as error:
        yield {"data": json.dumps(error.body)}
        return
    except Exception as error:  # the headers are sent: the failure travels as an error event
        log.exception("streamed request failed")
        yield {"data": json.dumps(APIError(500, f"internal error: {type(error).__name__}",
                                           type="server_error", code="internal_error").body)}
        return
    rest = live.stream.finish(reply.text) if reply.ok else None
    if rest:
        yield _chunk(completion_id, model, {"content": rest})
    extra = {**salon_extra(reply), "replaced": rest is None, "text": reply.text if reply.ok else ""}
    yield _chunk(completion_id, model, {}, finish_reason(reply), salon=extra)
    if include_usage:
        yield {"data": json.dumps({"id": completion_id, "object": "chat.completion.chunk",
                                   "created": int(time.time()), "model": model, "choices": [],
                                   "usage": _usage(reply)})}
    yield {"data": "[DONE]"}
