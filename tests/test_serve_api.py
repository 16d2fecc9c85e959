"""The OpenAI-compatible API on a real uvicorn server (127.0.0.1, a free port) with the embedded
model and real chromadb: the `openai` package and LangChain's ChatOpenAI (through Salon's own
`model=openai` backend) talk to a character; the exchange reaches its memory; bad input is a 4xx
with OpenAI's error body, writes no memory, and the server keeps running."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from hydra import compose, initialize_config_dir

from agents.bank import DEFAULT_BANK, load_bank, save_bank
from core.errors import UsageError
from core.records import Episode, Scene, Scores, Turn
from environment.build import instantiate
from environment.graph import build_graph, draw_graph
from environment.serve.app import BackgroundServer, create_app
from environment.serve.characters import open_directory
from environment.serve.state import ServeSettings, ServeState
from environment.store import SQLiteEpisodeStore

CONF = Path(__file__).resolve().parents[1] / "conf"


def make_run(folder: Path) -> Path:
    """A small run folder as a simulation leaves it: characters, one scored episode, the graph."""
    personas = load_bank(DEFAULT_BANK)[:3]
    folder.mkdir(parents=True, exist_ok=True)
    save_bank(personas, folder / "characters.jsonl")
    a, b = personas[0], personas[1]
    scores = Scores({"persona_consistency": 3.5, "naturalness": 4.0},
                    {"persona_consistency": "close to facts", "naturalness": "coherent"}, 3.7)
    episode = Episode(
        id="r000-e000", round=0, participants=(a.name, b.name), personas={a.name: a.facts, b.name: b.facts},
        roles={a.name: "peer", b.name: "peer"},
        turns=(Turn(a.name, "Hello, I love long walks.", goal="ask about their pets"),
               Turn(b.name, "Nice to meet you, I have two cats.")),
        model="test", character_ids={a.name: a.id, b.name: b.id},
        scene=Scene("a bookshop", "Both reached for the same book."), stop_reason="max_turns", scores=scores)
    store = SQLiteEpisodeStore(folder / "episodes.sqlite")
    store.append(episode)
    store.begin_round(0)
    store.complete_round(0)
    store.close()
    draw_graph(build_graph(personas, [episode]), folder / "graph.png", seed=0)
    return folder


def serve_config(run: Path, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"run={run}", "task=serve", *overrides])


def make_state(run: Path, chat_model, embedder, api_key: str | None = None) -> ServeState:
    cfg = serve_config(run)
    directory = open_directory(cfg, model=chat_model, embedder=embedder)
    return ServeState(directory, ServeSettings(api_key=api_key), instantiate(cfg.chat, "chat"), seed=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chat_model, embedder):
    state = make_state(make_run(tmp_path_factory.mktemp("serve") / "run"), chat_model, embedder)
    with BackgroundServer(create_app(state)) as server:
        yield server, state


def chat_memories(state: ServeState, character_id: str) -> list[str]:
    return [m["text"] for m in state.directory.memory.memories(character_id) if m["kind"] == "chat"]


def test_openai_client_chats_and_the_exchange_reaches_memory(served) -> None:
    from openai import OpenAI

    server, state = served
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    models = [m.id for m in client.models.list().data]
    character = state.directory.personas[0]
    assert f"character/{character.id}" in models
    message = "Hello! What do you do for a living?"
    reply = client.chat.completions.create(model=f"character/{character.id}",
                                           messages=[{"role": "user", "content": message}], max_tokens=32)
    text = reply.choices[0].message.content
    assert text and text.strip() and reply.usage.completion_tokens > 0
    assert any(message in m and text in m for m in chat_memories(state, character.id))

    question = "Tell me about your family, your work and your favourite food."
    chunks = list(client.chat.completions.create(
        model=f"character/{character.id}", stream=True, max_tokens=64, temperature=0,
        messages=[{"role": "user", "content": question}]))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    streamed = "".join(pieces)
    final = next(c.model_extra["salon"] for c in chunks if (c.model_extra or {}).get("salon"))
    assert streamed.strip() and final["text"] == streamed and not final["replaced"]
    assert len([p for p in pieces if p]) > 1, "the reply was not streamed sentence by sentence"
    assert any(question in m and streamed in m for m in chat_memories(state, character.id))


def test_langchain_chat_openai_and_salons_openai_backend_work_and_batch(served) -> None:
    from agents.models.remote import openai_compatible

    server, state = served
    character = state.directory.personas[1]
    model = openai_compatible(base_url=f"{server.url}/v1", model=f"character/{character.id}",
                              max_new_tokens=24)
    before = len(state.batch_sizes)
    answer = model.invoke("Hi there, how are you today?")
    assert str(answer.content).strip()
    replies = model.batch(["What is your job?", "Where do you live?", "What do you do for fun?"])
    assert all(str(r.content).strip() for r in replies)
    assert max(state.batch_sizes[before + 1:]) > 1, "concurrent requests were not batched"
    assert len(chat_memories(state, character.id)) >= 4



def stream_reply(url: str, model: str, question: str) -> tuple[str, str]:
    """One streamed request: its pieces joined as a client shows them, and the reply the server
    says it made (Salon's final `salon` chunk)."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    chunks = list(client.chat.completions.create(
        model=model, stream=True, max_tokens=32, temperature=0,
        messages=[{"role": "user", "content": question}]))
    streamed = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    final = next(c.model_extra["salon"] for c in chunks if (c.model_extra or {}).get("salon"))
    return streamed, final["text"]


QUESTIONS = ("What is your job?", "Where did you grow up?", "What do you cook on Sundays?")


def test_concurrent_streamed_requests_share_the_models_batches_and_each_gets_its_own_reply(served) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server, state = served
    models = [f"character/{p.id}" for p in state.directory.personas]
    before = len(state.batch_sizes)
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda m, q: stream_reply(server.url, m, q), models, QUESTIONS))
    assert max(state.batch_sizes[before:]) > 1, "streamed requests were not batched"
    assert all(streamed.strip() for streamed, _ in together)
    assert [streamed for streamed, _ in together] == [final for _, final in together], \
        "a request's stream carried text of another request in its batch"
    assert len({streamed for streamed, _ in together}) == len(QUESTIONS)


@pytest.mark.parametrize("override", ["serve.batching=false", "serve.max_batch=1"])
def test_serve_without_batching_answers_one_request_at_a_time(tmp_path: Path, chat_model, embedder,
                                                              override: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    run = make_run(tmp_path / "run")
    cfg = serve_config(run, override, "serve.remember=false")
    directory = open_directory(cfg, model=chat_model, embedder=embedder)
    state = ServeState(directory, instantiate(cfg.serve, "serve"), instantiate(cfg.chat, "chat"), seed=0)
    models = [f"character/{p.id}" for p in directory.personas]
    with BackgroundServer(create_app(state)) as server:
        before = len(state.batch_sizes)
        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            replies = list(pool.map(lambda m, q: stream_reply(server.url, m, q), models, QUESTIONS))
    assert all(streamed.strip() and streamed == final for streamed, final in replies)
    assert state.batch_sizes[before:] and set(state.batch_sizes[before:]) == {1}

BAD_REQUESTS = [
    ({"model": "character/nobody", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found"),
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found"),
    ({"messages": [{"role": "user", "content": "   "}]}, 400, "empty_message"),
    ({"messages": [{"role": "user", "content": "x" * 2001}]}, 400, "message_too_long"),
    ({"messages": "hello"}, 400, "invalid_value"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "invalid_value"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "invalid_value"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400, "invalid_value"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "invalid_value"),
    ({"messages": []}, 400, "invalid_value"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, 400, "invalid_value"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_with_openai_error_body_and_no_memory(served, body: dict, status: int,
                                                                 code: str) -> None:
    server, state = served
    character = state.directory.personas[2]
    payload = {"model": f"character/{character.id}", **body}
    before = state.directory.memory.count(character.id)
    response = httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"]
    assert state.directory.memory.count(character.id) == before
    assert httpx.get(f"{server.url}/v1/models", timeout=10).status_code == 200


def test_malformed_json_is_a_400(served) -> None:
    server, _ = served
    response = httpx.post(f"{server.url}/v1/chat/completions", content=b'{"model": "character/x", ',
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_web_data_routes(served) -> None:
    server, state = served
    characters = httpx.get(f"{server.url}/api/characters", timeout=10).json()
    assert [c["id"] for c in characters] == [p.id for p in state.directory.personas]
    episodes = httpx.get(f"{server.url}/api/episodes", timeout=10).json()
    assert episodes[0]["id"] == "r000-e000" and episodes[0]["overall"] == 3.7
    episode = httpx.get(f"{server.url}/api/episodes/r000-e000", timeout=10).json()
    assert episode["scores"]["naturalness"] == 4.0 and episode["turns"][0]["goal"] == "ask about their pets"
    graph = httpx.get(f"{server.url}/api/graph.png", timeout=10)
    assert graph.headers["content-type"] == "image/png" and graph.content[:4] == b"\x89PNG"
    assert httpx.get(f"{server.url}/api/episodes/nope", timeout=10).status_code == 404
    assert "<title>Salon</title>" in httpx.get(f"{server.url}/", timeout=10).text


def test_another_address_needs_a_key_and_requests_without_it_get_401(tmp_path: Path, chat_model,
                                                                     embedder) -> None:
    with pytest.raises(UsageError, match="api_key"):
        ServeSettings(host="0.0.0.0")
    ServeSettings(host="0.0.0.0", api_key="k")  # allowed with a key
    state = make_state(make_run(tmp_path / "run"), chat_model, embedder, api_key="sesame")
    with BackgroundServer(create_app(state)) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sesame"}):
            response = httpx.get(f"{server.url}/v1/models", headers=headers, timeout=10)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
        body = {"model": f"character/{state.directory.personas[0].id}",
                "messages": [{"role": "user", "content": "hi"}]}
        denied = httpx.post(f"{server.url}/v1/chat/completions", timeout=10, content=json.dumps(body))
        assert denied.status_code == 401
        assert httpx.get(f"{server.url}/api/characters", timeout=10).status_code == 401
        allowed = httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer sesame"}, timeout=10)
        assert allowed.status_code == 200
        assert not any(m["kind"] == "chat" for p in state.directory.personas
                       for m in state.directory.memory.memories(p.id))


def test_32_concurrent_clients_with_malformed_requests_interleaved(served) -> None:
    """Under load on loopback: every malformed request is a 4xx, no request is a 5xx, every
    successful exchange is stored exactly once and a failed one never (a reply the model could
    not make is a 200 with finish_reason content_filter, empty content and the reason in
    salon.rejected, and stores nothing)."""
    import asyncio

    server, state = served
    people = state.directory.personas
    bad = [body for body, _, _ in BAD_REQUESTS]
    failures: list[str] = []
    made: set[tuple[str, str]] = set()  # every valid request, less those the model made no reply for

    async def client(number: int, http: httpx.AsyncClient) -> list[tuple[str, str, int]]:
        sent = []
        for k in range(3):
            character = people[(number + k) % len(people)]
            if k == 1:  # the middle request of each client is malformed
                body = {"model": f"character/{character.id}", **bad[number % len(bad)]}
                answer = await http.post(f"{server.url}/v1/chat/completions", json=body)
                sent.append((character.id, "", answer.status_code))
                continue
            text = f"Hello, I am Sam from flat {number}{k}. What do you like to do on weekends?"
            made.add((character.id, text))
            body = {"model": f"character/{character.id}", "max_tokens": 16,  # the load, not the length
                    "messages": [{"role": "user", "content": text}]}
            answer = await http.post(f"{server.url}/v1/chat/completions", json=body)
            sent.append((character.id, text, answer.status_code))
            if answer.status_code == 200 and answer.json()["choices"][0]["finish_reason"] != "stop":
                made.discard((character.id, text))
                failures.append(answer.json()["salon"]["rejected"])
        return sent

    async def load() -> list[tuple[str, str, int]]:
        async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=40)) as http:
            return [x for part in await asyncio.gather(*(client(n, http) for n in range(32))) for x in part]

    before = {p.id: chat_memories(state, p.id) for p in people}
    results = asyncio.run(load())
    assert len(results) == 96
    assert all(400 <= status < 500 for _, text, status in results if not text)
    assert all(status == 200 for _, text, status in results if text), results  # no 5xx, ever
    for character, text, status in (r for r in results if r[1]):
        stored = [m for m in chat_memories(state, character) if text in m and m not in before[character]]
        assert len(stored) == (1 if (character, text) in made else 0), (text, status)
    assert len(made) >= 60, failures[:5]


def test_a_reply_the_model_could_not_make_is_content_filtered_not_a_server_error() -> None:
    from core.records import Reply
    from environment.serve.openai_api import completion

    body = completion("chatcmpl-1", "character/x", Reply(error="rejected: speaks as an AI", prompt_tokens=9))
    assert body["choices"][0]["finish_reason"] == "content_filter"
    assert body["choices"][0]["message"]["content"] == "" and body["usage"]["prompt_tokens"] == 9
    assert body["salon"]["rejected"] == "no usable reply (rejected: speaks as an AI); nothing was stored"
    assert completion("chatcmpl-2", "character/x", Reply(text="Hi."))["choices"][0]["finish_reason"] == "stop"
