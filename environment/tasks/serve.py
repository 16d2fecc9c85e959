"""`task=serve [run=<run folder>] [serve.port=...]`: the web page and the OpenAI-compatible API
(`environment/serve/`)."""

from __future__ import annotations

from omegaconf import DictConfig

from environment.build import instantiate
from environment.serve.app import create_app
from environment.serve.characters import check_source, open_directory
from environment.serve.state import ServeSettings, ServeState


def check(cfg: DictConfig) -> None:
    """The server settings (a non-loopback host needs a key), the characters' source and the
    chat settings."""
    instantiate(cfg.serve, "serve")
    instantiate(cfg.chat, "chat")
    check_source(cfg)


def run(cfg: DictConfig) -> None:
    import uvicorn

    settings: ServeSettings = instantiate(cfg.serve, "serve")
    state = ServeState(open_directory(cfg), settings, instantiate(cfg.chat, "chat"), seed=cfg.seed)
    where = f"http://{settings.host}:{settings.port}"
    print(f"salon: serving {len(state.directory.personas)} characters: web page {where}/ , "
          f"OpenAI-compatible API {where}/v1 (model = character/<id>); Ctrl-C stops", flush=True)
    uvicorn.run(create_app(state), host=settings.host, port=settings.port, log_level="warning")
