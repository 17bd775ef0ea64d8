"""The FastAPI application: ``create_app`` wires the loaded Denoiser, the job store and the routers.

Guards: the Host header (against DNS rebinding) and Origin (no cross-site requests) for every
request; the token for every ``/api`` route (a dependency of both routers); limits in the uploads
and the store. Uploads live in the store's private folder until the job is deleted or expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

import hushnet
from hushnet.model_dir import DEFAULT_MODEL
from hushnet.serve.config import ServeConfig
from hushnet.serve.jobs import JobDeleted, JobStore
from hushnet.serve.routes import denoise, jobs

if TYPE_CHECKING:
    from hushnet.denoiser import Denoiser

log = logging.getLogger("hushnet.serve")
STATIC = Path(__file__).parent / "static"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
DESCRIPTION = (
    "Speech denoising on this machine. Upload recordings, poll the job, fetch the results. "
    "With --token, send 'Authorization: Bearer TOKEN' or ?token=TOKEN."
)


def host_name(header: str) -> str:
    """The Host header without its port ("[::1]:8000" -> "[::1]")."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


def lifespan_of(store: JobStore, expire_every: float):
    """Expire old jobs while the app runs; stop the workers and delete every upload when it stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def expire() -> None:
            while True:
                await asyncio.sleep(expire_every)
                store.expire()

        task = asyncio.create_task(expire())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.get_running_loop().run_in_executor(None, store.close)

    return lifespan


class Guard:
    """Plain ASGI middleware: ``refusal(request)`` answers requests that must not reach the app, and
    an exception becomes a one-line 500, never a traceback to the client nor a dead server. (Not
    Starlette's BaseHTTPMiddleware, which swallows the client's disconnect message.)"""

    def __init__(self, app, refusal) -> None:
        self.app, self.refusal = app, refusal

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answer = self.refusal(Request(scope))
        if answer is not None:
            await answer(scope, receive, send)
            return
        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)


def host_and_origin_refusal(allowed_hosts: set[str] | None):
    """The answer to a request from a host or origin that must not reach the app, or None (the token
    is checked by the routers' dependency)."""

    def refusal(request: Request) -> JSONResponse | None:
        # DNS rebinding: a page on another domain resolving to 127.0.0.1 must not reach the API.
        host = host_name(request.headers.get("host", ""))
        if allowed_hosts is not None and host not in allowed_hosts:
            return JSONResponse({"detail": f"host '{host}' not allowed"}, status_code=400)
        # No CORS, and no cross-site form posts either: browsers send Origin on those.
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            return JSONResponse({"detail": "cross-origin requests are not allowed"}, status_code=403)
        return None

    return refusal


def create_app(
    denoiser: "Denoiser",
    config: "ServeConfig",
    store: JobStore | None = None,
    allowed_hosts: set[str] | None = None,
    model_name: str | None = None,
) -> FastAPI:
    """The application around one loaded Denoiser. ``allowed_hosts`` None: loopback names when bound to loopback, else any."""
    store = store or JobStore(denoiser, config.workers, config.max_jobs, config.keep_minutes)
    if allowed_hosts is None and config.loopback:
        allowed_hosts = LOOPBACK_HOSTS
    expire_every = max(1.0, min(30.0, config.keep_minutes * 60 / 4))
    app = FastAPI(
        title="hushnet", version=hushnet.__version__, lifespan=lifespan_of(store, expire_every), description=DESCRIPTION
    )
    app.state.store, app.state.config, app.state.denoiser = store, config, denoiser
    app.state.model_name = model_name or (Path(config.model).name if config.model else DEFAULT_MODEL)
    app.state.limit_bytes = int(config.max_upload_mb * 2**20)
    app.state.upload_idle_seconds = config.upload_idle_seconds
    app.add_middleware(Guard, refusal=host_and_origin_refusal(allowed_hosts))

    @app.exception_handler(JobDeleted)
    async def job_deleted(request: Request, error: JobDeleted) -> JSONResponse:
        return JSONResponse({"detail": "job deleted"}, status_code=410)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(denoise.router)
    app.include_router(jobs.router)
    return app
