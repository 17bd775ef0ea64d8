"""What the routes depend on (FastAPI ``Depends``): the token check, the store, a job, a finished file."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from hushnet.serve.jobs import FileEntry, Job, JobStore

NO_SUCH_JOB = "no such job (wrong id, deleted, or expired)"


def require_token(request: Request) -> None:
    """With ``--token``: 'Authorization: Bearer TOKEN' or ``?token=TOKEN``, else 401 (router-wide)."""
    token = request.app.state.config.token
    if token is None:  # an empty token is refused when a ServeConfig is made: it must not turn the check off
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("token", "")
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})


def get_store(request: Request) -> JobStore:
    return request.app.state.store


Store = Annotated[JobStore, Depends(get_store)]


def get_job(job_id: str, store: Store) -> Job:
    """The job of the path's ``job_id``, or 404."""
    job = store.get(job_id)
    if job is None:
        raise HTTPException(404, NO_SUCH_JOB)
    return job


JobOf = Annotated[Job, Depends(get_job)]


def get_entry(job: JobOf, n: int) -> FileEntry:
    """File ``n`` of the job, or 404."""
    if not 0 <= n < len(job.files):
        raise HTTPException(404, "no such file in this job")
    return job.files[n]


EntryOf = Annotated[FileEntry, Depends(get_entry)]


def get_done_entry(entry: EntryOf) -> FileEntry:
    """File ``n`` of the job once denoised: 422 when it failed, 409 while it is not ready."""
    if entry.state == "failed":
        raise HTTPException(422, entry.error or "failed")
    if entry.state != "done":
        raise HTTPException(409, f"not ready: {entry.state}")
    return entry


DoneEntry = Annotated[FileEntry, Depends(get_done_entry)]
