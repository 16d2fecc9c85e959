"""`task=serve`: one FastAPI app with the web page (/) and the OpenAI-compatible API (/v1)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from environment.serve import openai_api, web
from environment.serve.errors import check_key, install_handlers
from environment.serve.state import ServeState

STATIC = Path(__file__).parent / "static"


def create_app(state: ServeState) -> FastAPI:
    """The app over ``state``; the request queue starts inside the server's event loop."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.queue.start()
        try:
            yield
        finally:
            await state.queue.stop()

    def authorised(request: Request) -> None:
        check_key(request, state.settings.api_key)

    app = FastAPI(title="Salon", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.salon = state
    install_handlers(app)
    app.include_router(openai_api.router, dependencies=[Depends(authorised)])
    app.include_router(web.router, dependencies=[Depends(authorised)])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    return app


class BackgroundServer:
    """The app on a real uvicorn server in a thread (tests and `bench.serve`):
    ``with BackgroundServer(app, port=0) as server: server.url``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
