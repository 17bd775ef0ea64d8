"""The job API: upload several files, follow them, fetch inputs, outputs, spectrograms and a ZIP, delete."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from hushnet.serve import renders
from hushnet.serve.dependencies import NO_SUCH_JOB, DoneEntry, EntryOf, JobOf, Store, require_token
from hushnet.serve.routes.common import MULTIPART_BODY, DryQuery, OptionalDryQuery, audio_response, held, upload

MAX_FILES_PER_JOB = 100
router = APIRouter(prefix="/api/jobs", dependencies=[Depends(require_token)])


@router.post(
    "",
    status_code=201,
    summary="upload one or more files; returns the job id and state",
    openapi_extra=MULTIPART_BODY,
    responses={413: {"description": "too large"}, 429: {"description": "too many jobs"}},
)
async def create_job(request: Request, store: Store) -> dict:
    job = await upload(request, store, max_files=MAX_FILES_PER_JOB)
    return job.status()


@router.get("/{job_id}", summary="state and per-file progress")
def job_status(job: JobOf) -> dict:
    return job.status()


@router.get(
    "/{job_id}/events",
    summary="server-sent events: the job's state each time it changes, until it is finished",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(job: JobOf) -> StreamingResponse:
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


@router.delete("/{job_id}", summary="stop the job and delete its files")
def delete_job(job_id: str, store: Store) -> dict:
    if not store.delete(job_id):
        raise HTTPException(404, NO_SUCH_JOB)
    return {"deleted": job_id}


@router.get("/{job_id}/files/{n}/input", summary="the uploaded recording")
def input_audio(job: JobOf, entry: EntryOf, store: Store, download: bool = False) -> FileResponse:
    if entry.state == "queued" and not job.uploaded:
        raise HTTPException(409, "still uploading")
    return held(store, job, audio_response(entry.input, entry.name, download))


@router.get("/{job_id}/files/{n}/output", summary="the denoised recording, with ?dry= of the input mixed back")
def output_audio(
    job: JobOf, entry: DoneEntry, store: Store, dry: OptionalDryQuery = None, download: bool = False
) -> FileResponse:
    path = renders.mixed(store, job, entry, job.dry if dry is None else dry)
    return held(store, job, audio_response(path, entry.status()["download_name"], download))


@router.get(
    "/{job_id}/files/{n}/spectrogram", summary="log-power spectrogram the page draws (uint8 dB, base64, rows x columns)"
)
def spectrogram(
    job: JobOf,
    entry: DoneEntry,
    store: Store,
    which: Annotated[str, Query(pattern="^(input|output)$")] = "output",
    dry: DryQuery = 0.0,
) -> dict:
    return renders.spectrogram(store, job, entry, which, dry)


@router.get(
    "/{job_id}/zip", summary="every denoised file in one ZIP; dry= one value, or one per file separated by commas"
)
def zip_all(job: JobOf, store: Store, dry: str | None = None) -> FileResponse:
    if not any(entry.state == "done" for entry in job.files):
        raise HTTPException(409, "no file of this job is done")
    try:
        values = [job.dry] if dry is None else [float(value) for value in dry.split(",")]
    except ValueError:
        raise HTTPException(422, "dry must be numbers between 0 and 1, separated by commas") from None
    if not all(0 <= value <= 1 for value in values) or len(values) not in (1, len(job.files)):
        raise HTTPException(422, "dry must be one value, or one per file, each between 0 and 1")
    path = renders.zip_outputs(store, job, values)
    return held(
        store,
        job,
        FileResponse(path, media_type="application/zip", filename="denoised.zip"),
        BackgroundTask(path.unlink, missing_ok=True),
    )
