"""The FastAPI application: the page, the HTTP API, and its guards (token, host, origin, limits)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Annotated, AsyncIterator

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

import hushnet
from hushnet.serve.config import ServeConfig
from hushnet.audio import one_line
from hushnet.serve.jobs import FileEntry, Job, JobDeleted, JobStore, TooManyJobs

log = logging.getLogger("hushnet.serve")
STATIC = Path(__file__).parent / "static"
MAX_FILES_PER_JOB = 100
MAX_PART_HEADER_BYTES = 65536
MEDIA_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg",
               ".aif": "audio/aiff", ".aiff": "audio/aiff", ".aifc": "audio/aiff", ".au": "audio/basic", ".caf": "audio/x-caf",
               ".w64": "application/octet-stream", ".rf64": "audio/wav"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}

DRY_HELP = "share of the input mixed back: enhanced + dry * (input - enhanced)"
DryQuery = Annotated[float, Query(ge=0.0, le=1.0, description=DRY_HELP)]
OptionalDryQuery = Annotated[float | None, Query(ge=0.0, le=1.0, description=DRY_HELP + " (default: the job's dry)")]
MULTIPART_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}, "description": "audio file(s)"},
                   "dry": {"type": "number", "minimum": 0, "maximum": 1, "default": 0, "description": "dry/wet: 0 denoised only, 1 the input"}}}}}}}


class UploadError(Exception):
    """A request body that cannot be taken: status code and one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def receive_upload(request: Request, job: Job, limit_bytes: int, max_files: int) -> None:
    """Stream a multipart body straight into the job's folder: ``file`` parts to disk, ``dry`` to the job.

    Never holds a whole file in memory, and stops at ``limit_bytes`` (413) however the body is sent."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(400, "send the audio as multipart/form-data with a 'file' field")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit_bytes:
        raise UploadError(413, f"upload too large: over the server's limit of {limit_bytes / 2**20:g} MB (--max-upload-mb)")
    state: dict = {"headers": [], "field": b"", "value": b"", "part": None, "handle": None, "entry": None, "text": b"", "error": None}

    def on_part_begin() -> None:
        state.update(headers=[], part=None, handle=None, entry=None, text=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"].append((state["field"].lower(), state["value"]))
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        disposition = dict(state["headers"]).get(b"content-disposition", b"")
        _, params = parse_options_header(disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        state["part"] = name
        if name == "file":
            if len(job.files) >= max_files:
                state["error"] = UploadError(400, f"at most {max_files} file{'s' if max_files > 1 else ''} per request")
                return
            entry = job.add_file(params.get(b"filename", b"").decode("utf-8", "replace"))
            state["entry"], state["handle"] = entry, open(entry.input, "wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["handle"] is not None:
            state["handle"].write(data[start:end])
            state["entry"].size += end - start
        elif state["part"] == "dry":
            state["text"] += data[start:end]
            if len(state["text"]) > 32:
                state["error"] = UploadError(400, "dry must be a number between 0 and 1")

    def on_part_end() -> None:
        if state["handle"] is not None:
            state["handle"].close()
            state["handle"] = None
        elif state["part"] == "dry":
            try:
                job.dry = float(state["text"].decode("ascii", "replace"))
            except ValueError:
                job.dry = -1.0
            if not 0.0 <= job.dry <= 1.0:
                state["error"] = UploadError(400, "dry must be a number between 0 and 1")

    callbacks = {"on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end, "on_headers_finished": on_headers_finished}
    # Part headers up to 64 KB: a long file name is shortened for display, not a parse error.
    parser = MultipartParser(boundary, callbacks, max_header_size=MAX_PART_HEADER_BYTES)
    try:
        await stream_into(parser, request, job, limit_bytes, state)
    except UploadError:
        raise
    except ClientDisconnect:
        raise UploadError(400, "incomplete upload: the client went away") from None
    except MultipartParseError as error:
        raise UploadError(400, f"malformed upload ({one_line(error)})") from None
    except Exception as error:  # anything else the parser or the connection raises
        raise UploadError(400, f"malformed upload ({type(error).__name__})") from None
    finally:
        if state["handle"] is not None:
            state["handle"].close()
    check_complete(parser)
    if not job.files:
        raise UploadError(400, "no 'file' field in the upload")


async def stream_into(parser: MultipartParser, request: Request, job: Job, limit_bytes: int, state: dict) -> None:
    """Feed the body to ``parser`` as it arrives, stopping at ``limit_bytes`` (413) or a part's error;
    a body whose length differs from its Content-Length is incomplete."""
    declared = request.headers.get("content-length")
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        job.touched = time.time()  # a slow upload is in use, not abandoned (see JobStore.expire)
        if received > limit_bytes:
            raise UploadError(413, f"upload too large: over the server's limit of {limit_bytes / 2**20:g} MB (--max-upload-mb)")
        parser.write(chunk)
        if state["error"] is not None:
            raise state["error"]
    parser.finalize()
    if declared and declared.isdigit() and received != int(declared):
        raise UploadError(400, f"incomplete upload: {received} bytes received, Content-Length says {declared}")


def check_complete(parser: MultipartParser) -> None:
    """A body that stops before its closing boundary (cut off, or longer than its Content-Length,
    which cuts it at that length) is refused: a part of a recording is not the recording."""
    if parser.state != MultipartState.END:
        raise UploadError(400, "incomplete upload: the body ends before the multipart closing boundary")


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


async def finished_or_abandoned(request: Request, job: Job, poll_seconds: float = 0.25) -> bool:
    """Wait for the job's files; False as soon as the client has gone away."""
    waiting = {asyncio.wrap_future(future) for future in job.futures}
    while waiting:
        _, waiting = await asyncio.wait(waiting, timeout=poll_seconds)
        if waiting and await request.is_disconnected():
            return False
    return True


def host_name(header: str) -> str:
    """The Host header without its port ("[::1]:8000" -> "[::1]")."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


def create_app(denoiser, config: ServeConfig | None = None, store: JobStore | None = None, allowed_hosts: set[str] | None = None,
               model_name: str | None = None) -> FastAPI:
    """The application around one loaded Denoiser. ``allowed_hosts`` None: loopback names when bound to loopback, else any."""
    config = config or ServeConfig()
    config.validate()  # an empty token must not turn authentication off here either
    store = store or JobStore(denoiser, config.workers, config.max_jobs, config.keep_minutes)
    limit_bytes = int(config.max_upload_mb * 2**20)
    if allowed_hosts is None and config.loopback:
        allowed_hosts = LOOPBACK_HOSTS
    expire_every = max(1.0, min(30.0, config.keep_minutes * 60 / 4))

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

    app = FastAPI(title="hushnet", version=hushnet.__version__, lifespan=lifespan,
                  description="Speech denoising on this machine. Upload recordings, poll the job, fetch the results. "
                              "With --token, send 'Authorization: Bearer TOKEN' or ?token=TOKEN.")
    app.state.store = store

    def refusal(request: Request) -> JSONResponse | None:
        """The answer to a request that must not reach the app (host, origin, token), or None."""
        # DNS rebinding: a page on another domain resolving to 127.0.0.1 must not reach the API.
        host = host_name(request.headers.get("host", ""))
        if allowed_hosts is not None and host not in allowed_hosts:
            return JSONResponse({"detail": f"host '{host}' not allowed"}, status_code=400)
        # No CORS, and no cross-site form posts either: browsers send Origin on those.
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            return JSONResponse({"detail": "cross-origin requests are not allowed"}, status_code=403)
        if config.token is not None and request.url.path.startswith("/api/"):
            header = request.headers.get("authorization", "")
            given = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("token", "")
            if not secrets.compare_digest(given.encode(), config.token.encode()):
                return JSONResponse({"detail": "missing or wrong token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return None

    app.add_middleware(Guard, refusal=refusal)

    def job_or_404(job_id: str) -> Job:
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job (wrong id, deleted, or expired)")
        return job

    def done_file(job_id: str, n: int) -> tuple[Job, FileEntry]:
        job = job_or_404(job_id)
        if not 0 <= n < len(job.files):
            raise HTTPException(404, "no such file in this job")
        entry = job.files[n]
        if entry.state == "failed":
            raise HTTPException(422, entry.error or "failed")
        if entry.state != "done":
            raise HTTPException(409, f"not ready: {entry.state}")
        return job, entry

    def audio_response(path: Path, download_name: str, download: bool) -> FileResponse:
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"), filename=download_name,
                            content_disposition_type="attachment" if download else "inline", headers={"Cache-Control": "no-store"})

    async def upload(request: Request, max_files: int) -> Job:
        try:
            job = store.create()
        except TooManyJobs as error:
            raise HTTPException(429, str(error), headers={"Retry-After": "10"}) from None
        try:
            await receive_upload(request, job, limit_bytes, max_files)
        except UploadError as error:
            store.delete(job.id)
            raise HTTPException(error.status, str(error)) from None
        except BaseException:
            store.delete(job.id)
            raise
        store.submit(job)
        return job

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health", summary="model, version, engine, sample rate, limits")
    def health() -> dict:
        return {"status": "ok", "model": model_name or getattr(config, "model", None) or "hushnet-dfl", "version": hushnet.__version__,
                "engine": denoiser.engine_name, "device": str(denoiser.device), "sample_rate": denoiser.config.sample_rate,
                "workers": config.workers, "max_upload_mb": config.max_upload_mb, "max_jobs": config.max_jobs, "keep_minutes": config.keep_minutes}

    @app.post("/api/denoise", summary="denoise one file and return it (same format, rate, channels, length; WAV where the format cannot be written)",
              openapi_extra=MULTIPART_BODY, response_class=FileResponse,
              responses={200: {"content": {"audio/*": {}}}, 413: {"description": "too large"}, 422: {"description": "not readable audio"}, 429: {"description": "too many jobs"}})
    async def denoise(request: Request) -> Response:
        job = await upload(request, max_files=1)
        try:
            if not await finished_or_abandoned(request, job):
                store.delete(job.id)  # stops its worker: nobody is waiting for the result
                return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
            entry = job.files[0]
            if entry.state != "done":
                raise HTTPException(422, entry.error or "failed")
            path = await asyncio.get_running_loop().run_in_executor(None, store.mixed, job, entry, job.dry)
        except BaseException:
            store.delete(job.id)
            raise
        response = audio_response(path, entry.status()["download_name"], download=True)
        response.headers["X-Hushnet-Notes"] = "; ".join(entry.notes).encode("ascii", "replace").decode()
        response.background = BackgroundTask(store.delete, job.id)  # the files go once the answer is sent
        return response

    @app.post("/api/jobs", status_code=201, summary="upload one or more files; returns the job id and state", openapi_extra=MULTIPART_BODY,
              responses={413: {"description": "too large"}, 429: {"description": "too many jobs"}})
    async def create_job(request: Request) -> dict:
        job = await upload(request, max_files=MAX_FILES_PER_JOB)
        return job.status()

    @app.get("/api/jobs/{job_id}", summary="state and per-file progress")
    def job_status(job_id: str) -> dict:
        return job_or_404(job_id).status()

    @app.get("/api/jobs/{job_id}/events", summary="server-sent events: the job's state each time it changes, until it is finished",
             response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
    async def job_events(job_id: str) -> StreamingResponse:
        job = job_or_404(job_id)

        async def events() -> AsyncIterator[str]:
            last = None
            while True:
                status = json.dumps(job.status())
                if status != last:
                    yield f"data: {status}\n\n"
                    last = status
                if job.finished or job.deleted:
                    return
                job.touched = time.time()
                await asyncio.sleep(0.25)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.delete("/api/jobs/{job_id}", summary="stop the job and delete its files")
    def delete_job(job_id: str) -> dict:
        if not store.delete(job_id):
            raise HTTPException(404, "no such job (wrong id, deleted, or expired)")
        return {"deleted": job_id}

    def held(job: Job, response: Response, then: BackgroundTask | None = None) -> Response:
        """``response`` sending a file of ``job``: the job's folder stays until it is sent."""
        release = store.hold(job)

        async def after() -> None:
            try:
                if then is not None:
                    await then()
            finally:
                release()

        response.background = BackgroundTask(after)
        return response

    @app.exception_handler(JobDeleted)
    async def job_deleted(request: Request, error: JobDeleted) -> JSONResponse:
        return JSONResponse({"detail": "job deleted"}, status_code=410)

    @app.get("/api/jobs/{job_id}/files/{n}/input", summary="the uploaded recording")
    def input_audio(job_id: str, n: int, download: bool = False) -> FileResponse:
        job = job_or_404(job_id)
        if not 0 <= n < len(job.files):
            raise HTTPException(404, "no such file in this job")
        entry = job.files[n]
        if entry.state == "queued" and not job.uploaded:
            raise HTTPException(409, "still uploading")
        return held(job, audio_response(entry.input, entry.name, download))

    @app.get("/api/jobs/{job_id}/files/{n}/output", summary="the denoised recording, with ?dry= of the input mixed back")
    def output_audio(job_id: str, n: int, dry: OptionalDryQuery = None, download: bool = False) -> FileResponse:
        job, entry = done_file(job_id, n)
        path = store.mixed(job, entry, job.dry if dry is None else dry)
        return held(job, audio_response(path, entry.status()["download_name"], download))

    @app.get("/api/jobs/{job_id}/files/{n}/spectrogram", summary="log-power spectrogram the page draws (uint8 dB, base64, rows x columns)")
    def spectrogram(job_id: str, n: int, which: Annotated[str, Query(pattern="^(input|output)$")] = "output", dry: DryQuery = 0.0) -> dict:
        job, entry = done_file(job_id, n)
        return store.spectrogram(job, entry, which, dry)

    @app.get("/api/jobs/{job_id}/zip", summary="every denoised file in one ZIP; dry= one value, or one per file separated by commas")
    def zip_all(job_id: str, dry: str | None = None) -> FileResponse:
        job = job_or_404(job_id)
        if not any(entry.state == "done" for entry in job.files):
            raise HTTPException(409, "no file of this job is done")
        try:
            values = [job.dry] if dry is None else [float(value) for value in dry.split(",")]
        except ValueError:
            raise HTTPException(422, "dry must be numbers between 0 and 1, separated by commas") from None
        if not all(0 <= value <= 1 for value in values) or len(values) not in (1, len(job.files)):
            raise HTTPException(422, "dry must be one value, or one per file, each between 0 and 1")
        path = store.zip_outputs(job, values)
        return held(job, FileResponse(path, media_type="application/zip", filename="denoised.zip"), BackgroundTask(path.unlink, missing_ok=True))

    return app
