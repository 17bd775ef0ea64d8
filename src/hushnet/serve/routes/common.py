"""What both routers share: query types, the multipart body's schema, uploads into new jobs, audio answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from hushnet.audio.formats import media_type
from hushnet.serve.jobs import Job, JobStore, TooManyJobs
from hushnet.serve.uploads import UploadError, receive_upload

DRY_HELP = "share of the input mixed back: enhanced + dry * (input - enhanced)"
DryQuery = Annotated[float, Query(ge=0.0, le=1.0, description=DRY_HELP)]
OptionalDryQuery = Annotated[float | None, Query(ge=0.0, le=1.0, description=DRY_HELP + " (default: the job's dry)")]
MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "audio file(s)",
                        },
                        "dry": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "default": 0,
                            "description": "dry/wet: 0 denoised only, 1 the input",
                        },
                    },
                }
            }
        },
    }
}


def audio_response(path: Path, download_name: str, download: bool) -> FileResponse:
    """An audio file (Range requests work), inline or as a download under ``download_name``."""
    return FileResponse(
        path,
        media_type=media_type(path.suffix),
        filename=download_name,
        content_disposition_type="attachment" if download else "inline",
        headers={"Cache-Control": "no-store"},
    )


def held(store: JobStore, job: Job, response: Response, then: BackgroundTask | None = None) -> Response:
    """``response`` sending a file of ``job``: the job's folder stays until it is sent (a DELETE
    meanwhile removes it then); ``then`` runs after. JobDeleted (410) when the job is already gone."""
    release = store.hold(job)

    async def after() -> None:
        try:
            if then is not None:
                await then()
        finally:
            release()

    response.background = BackgroundTask(after)
    return response


async def upload(request: Request, store: JobStore, max_files: int) -> Job:
    """A new job holding the request's files, queued on the workers; 429 when the store is full."""
    try:
        job = store.create()
    except TooManyJobs as error:
        raise HTTPException(429, str(error), headers={"Retry-After": "10"}) from None
    try:
        await receive_upload(
            request, job, request.app.state.limit_bytes, max_files, request.app.state.upload_idle_seconds
        )
        store.submit(job)
    except UploadError as error:
        store.delete(job.id)
        raise HTTPException(error.status, str(error)) from None
    except TooManyJobs as error:
        store.delete(job.id)
        raise HTTPException(429, str(error), headers={"Retry-After": "10"}) from None
    except BaseException:
        store.delete(job.id)
        raise
    return job
