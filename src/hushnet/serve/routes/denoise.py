"""``POST /api/denoise`` (one file in, the denoised file out) and ``GET /api/health``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

import hushnet
from hushnet.serve import renders
from hushnet.serve.dependencies import Store, require_token
from hushnet.serve.jobs import Job
from hushnet.serve.routes.common import MULTIPART_BODY, audio_response, upload

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)])


async def finished_or_abandoned(request: Request, job: Job, poll_seconds: float = 0.25) -> bool:
    """Wait for the job's files; False as soon as the client has gone away."""
    waiting = {asyncio.wrap_future(future) for future in job.futures}
    while waiting:
        _, waiting = await asyncio.wait(waiting, timeout=poll_seconds)
        if waiting and await request.is_disconnected():
            return False
    return True


@router.get("/health", summary="model, version, engine, precision and why, CPU class, sample rate, limits")
def health(request: Request) -> dict:
    state = request.app.state
    config, denoiser = state.config, state.denoiser
    engine = denoiser.engine
    cpu = getattr(engine, "cpu", None)
    return {
        "status": "ok",
        "model": state.model_name,
        "version": hushnet.__version__,
        "engine": denoiser.engine_name,
        "precision": denoiser.precision,
        "choice": getattr(engine, "choice", None) or f"{engine.name} {denoiser.precision} (given)",
        "cpu_class": cpu.name if cpu is not None else None,
        "cpu_model": cpu.model if cpu is not None else None,
        "device": str(denoiser.device),
        "sample_rate": denoiser.config.sample_rate,
        "workers": config.workers,
        "max_upload_mb": config.max_upload_mb,
        "max_jobs": config.max_jobs,
        "keep_minutes": config.keep_minutes,
    }


@router.post(
    "/denoise",
    summary="denoise one file and return it (same format, rate, channels, length; WAV where the format cannot be written)",
    openapi_extra=MULTIPART_BODY,
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/*": {}}},
        413: {"description": "too large"},
        422: {"description": "not readable audio"},
        429: {"description": "too many jobs"},
    },
)
async def denoise(request: Request, store: Store) -> Response:
    job = await upload(request, store, max_files=1)
    try:
        if not await finished_or_abandoned(request, job):
            store.delete(job.id)  # stops its worker: nobody is waiting for the result
            return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
        entry = job.files[0]
        if entry.state != "done":
            raise HTTPException(422, entry.error or "failed")
        path = await asyncio.get_running_loop().run_in_executor(None, renders.mixed, store, job, entry, job.dry)
    except BaseException:
        store.delete(job.id)
        raise
    response = audio_response(path, entry.status()["download_name"], download=True)
    response.headers["X-Hushnet-Notes"] = "; ".join(entry.notes).encode("ascii", "replace").decode()
    response.background = BackgroundTask(store.delete, job.id)  # the files go once the answer is sent
    return response
