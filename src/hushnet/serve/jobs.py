"""Jobs of the server: uploaded files in a private folder, a bounded pool of workers, expiry (renders: ``renders``).

Nothing the client sends becomes a path: a job's folder is named by its random id, and its files by
their position (``0.in.wav``); the client's file name is kept only as a display and download name.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import soundfile as sf

from hushnet.audio.formats import AUDIO_EXTENSIONS, output_extension
from hushnet.denoiser import DENOISE_ERRORS, Denoiser
from hushnet.errors import one_line
from hushnet.files import OUTPUT_SUFFIX
from hushnet.temporaries import scratch_folder

log = logging.getLogger("hushnet.serve")

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16)


def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand freed heap memory back to the OS. A file's buffers are freed when it is done, but glibc
    keeps freed memory in each thread's arena: measured, 30 small uploads at once took the server
    from 371 to 796 MB for good (benchmarks/serve.py --burst-only)."""
    if _TRIM is not None:
        _TRIM(0)


class TooManyJobs(Exception):
    """The server holds --max-jobs jobs already."""


class JobDeleted(Exception):
    """The job was deleted while a request was rendering or sending one of its files."""


class Cancelled(Exception):
    """The job was deleted (or the server is stopping) while a file was being denoised."""


def display_name(client_name: str | None, index: int) -> str:
    """A harmless name for showing and downloading: the last path part, odd characters replaced."""
    name = re.split(r"[\\/]", client_name or "")[-1]
    name = re.sub(r"[^\w.\- ()]+", "_", name).strip(" .")[:120]
    return name or f"file{index + 1}"


def safe_extension(name: str) -> str:
    """The name's extension if it is a known audio extension (it guides decoding), else none."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix in AUDIO_EXTENSIONS else ""


def denoised_name(name: str, extension: str) -> str:
    """``talk.mp3`` -> ``talk_denoised.mp3`` (the CLI's naming), with the output's extension."""
    stem = Path(name).stem if Path(name).suffix else name
    return f"{stem}{OUTPUT_SUFFIX}{extension}"


@dataclass
class FileEntry:
    """One uploaded file of a job and what became of it."""

    index: int
    name: str
    input: Path
    output: Path
    size: int = 0
    state: str = "queued"  # queued, running, done, failed
    total: int = 0
    done: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    frames: int = 0
    mixes: OrderedDict = field(default_factory=OrderedDict)
    spectrograms: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def progress(self) -> float:
        if self.state == "done":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def status(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "size": self.size,
            "state": self.state,
            "progress": round(self.progress, 4),
            "error": self.error,
            "notes": self.notes,
            "seconds": self.seconds,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frames": self.frames,
            "download_name": denoised_name(self.name, self.output.suffix) if self.state == "done" else None,
        }


@dataclass
class Job:
    """A set of files uploaded together; its folder holds their inputs, outputs and renders."""

    id: str
    folder: Path
    dry: float = 0.0
    files: list[FileEntry] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    touched: float = field(default_factory=time.time)
    uploaded: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    futures: list[Future] = field(default_factory=list)
    active: int = 0  # files a worker is on right now (the folder is removed only when none is)
    deleted: bool = False

    @property
    def finished(self) -> bool:
        return self.uploaded and all(entry.finished for entry in self.files)

    @property
    def state(self) -> str:
        if not self.uploaded:
            return "uploading"
        if self.finished:
            return "finished"
        return "running" if any(entry.state != "queued" for entry in self.files) else "queued"

    def add_file(self, client_name: str | None) -> FileEntry:
        index = len(self.files)
        name = display_name(client_name, index)
        extension = safe_extension(name)
        entry = FileEntry(
            index,
            name,
            self.folder / f"{index}.in{extension}",
            self.folder / f"{index}.out{output_extension(Path(name))}",
        )
        self.files.append(entry)
        return entry

    def status(self) -> dict:
        return {
            "id": self.id,
            "state": self.state,
            "dry": self.dry,
            "created": self.created,
            "files": [entry.status() for entry in self.files],
        }


class JobStore:
    """Jobs by id, the worker pool that denoises their files, and their deletion."""

    def __init__(
        self,
        denoiser: Denoiser,
        workers: int = 1,
        max_jobs: int = 32,
        keep_minutes: float = 60.0,
        root: Path | None = None,
    ) -> None:
        self.denoiser = denoiser
        self.max_jobs = max_jobs
        self.keep_seconds = keep_minutes * 60
        # Uploads of a server that was killed (no cleanup ran) are removed here, at the next start.
        self.root = scratch_folder("serve", root)
        # And these at exit, however the process ends short of kill -9: also a Ctrl-C during start-up,
        # before the app's lifespan (which closes the store on a clean stop) has begun.
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hushnet-worker")
        self.closed = False

    # --- life cycle -------------------------------------------------------------------------------
    def create(self, dry: float = 0.0) -> Job:
        """A new empty job with an unguessable id; TooManyJobs when the store is full."""
        with self.lock:
            if self.closed:
                raise TooManyJobs("the server is shutting down")
            self._check_room()
            job_id = secrets.token_urlsafe(16)
            folder = self.root / job_id
            folder.mkdir(mode=0o700)
            job = Job(job_id, folder, dry)
            self.jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None; a lookup in a dict, never a path built from the id."""
        with self.lock:
            job = self.jobs.get(job_id) if ID_PATTERN.match(job_id or "") else None
        if job is not None:
            job.touched = time.time()
        return job

    def _check_room(self) -> None:
        # Only jobs whose body has arrived count: a client that stalls mid-upload must not hold a slot
        # (its upload is dropped after --upload-idle-seconds anyway).
        if sum(1 for job in self.jobs.values() if job.uploaded) >= self.max_jobs:
            raise TooManyJobs(f"the server already holds {self.max_jobs} jobs; delete finished ones or try again later")

    def submit(self, job: Job) -> None:
        """Queue every file of a fully uploaded job on the worker pool; TooManyJobs where uploads that
        finished first took the last slots (the job is then the caller's to delete)."""
        with self.lock:
            self._check_room()
            job.uploaded = True
        job.touched = time.time()
        for entry in job.files:
            job.futures.append(self.pool.submit(self._process, job, entry))

    def delete(self, job_id: str) -> bool:
        """Forget a job, stop its work, and remove its files (now, or when its worker lets go)."""
        with self.lock:
            job = self.jobs.pop(job_id, None)
            if job is None:
                return False
            job.deleted = True
            job.cancelled.set()
            for future in job.futures:
                future.cancel()
            remove_now = job.active == 0
        if remove_now:
            shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def expire(self, now: float | None = None) -> list[str]:
        """Delete finished jobs not used for --keep-minutes; returns their ids."""
        now = time.time() if now is None else now
        with self.lock:
            old = [
                job.id
                for job in self.jobs.values()
                if (job.finished or not job.uploaded) and now - job.touched > self.keep_seconds
            ]
        for job_id in old:
            self.delete(job_id)
        return old

    def close(self) -> None:
        """Stop the workers and delete every job's files (server shutdown)."""
        with self.lock:
            self.closed = True
            ids = list(self.jobs)
        for job_id in ids:
            self.delete(job_id)
        self.pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- work -------------------------------------------------------------------------------------
    def hold(self, job: Job) -> Callable[[], None]:
        """Keep the job's folder until the returned function is called (work on it, or a response
        still sending one of its files); JobDeleted when the job is already deleted."""
        with self.lock:
            if job.deleted:
                raise JobDeleted()
            job.active += 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            job.touched = time.time()
            with self.lock:
                job.active -= 1
                remove = job.deleted and job.active == 0
            if remove:
                shutil.rmtree(job.folder, ignore_errors=True)

        return release

    @contextlib.contextmanager
    def using(self, job: Job) -> Iterator[None]:
        """Work in the job's folder: a deletion meanwhile removes the folder when it ends; JobDeleted
        when the job is already deleted (its files may be gone)."""
        release = self.hold(job)
        try:
            yield
        finally:
            release()

    def _process(self, job: Job, entry: FileEntry) -> None:
        """Denoise one file; every failure becomes the file's one-line error, never an exception."""
        if job.cancelled.is_set():
            return
        try:
            with self.using(job):
                self._denoise(job, entry)
        except JobDeleted:
            entry.state, entry.error = "failed", "cancelled"
        finally:
            release_memory()

    def _denoise(self, job: Job, entry: FileEntry) -> None:
        entry.state = "running"

        def progress(samples: int) -> None:
            if job.cancelled.is_set():
                raise Cancelled()
            entry.done += samples

        def on_start(total: int) -> None:
            entry.total = total

        try:
            result = self.denoiser.denoise_file(entry.input, entry.output, progress=progress, on_start=on_start)
            info = sf.info(str(entry.output))
            entry.seconds, entry.sample_rate, entry.channels, entry.frames = (
                info.duration,
                info.samplerate,
                info.channels,
                info.frames,
            )
            entry.notes = list(result.notes)
            entry.state = "done"
        except Cancelled:
            entry.state, entry.error = "failed", "cancelled"
        except DENOISE_ERRORS as error:
            entry.state, entry.error = "failed", one_line(error)
        except Exception as error:  # a bug must not take the server down; the log has the traceback
            log.exception("denoising %s failed", entry.name)
            entry.state, entry.error = "failed", f"internal error ({one_line(error)})"
