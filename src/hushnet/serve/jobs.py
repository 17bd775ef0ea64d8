"""Jobs of the server: uploaded files in a private folder, a bounded pool of workers, expiry.

Nothing the client sends becomes a path: a job's folder is named by its random id, and its files by
their position (``0.in.wav``); the client's file name is kept only as a display and download name.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import re
import secrets
import shutil
import threading
import time
import zipfile
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf
import soxr

from hushnet.audio import AUDIO_EXTENSIONS, MODEL_RATE, AtomicAudioWriter, AudioError, one_line, open_audio, output_extension, read_resampled
from hushnet.denoiser import Denoiser
from hushnet.files import OUTPUT_SUFFIX
from hushnet.temporaries import scratch_folder

log = logging.getLogger("hushnet.serve")

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16)
MAX_MIXES_PER_FILE = 4  # cached dry/wet renders kept per file
SPECTROGRAM_ROWS = 128
SPECTROGRAM_COLUMNS = 800
SPECTROGRAM_RANGE_DB = 80.0
_FFT = 512
_HOP = 256


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
        return {"index": self.index, "name": self.name, "size": self.size, "state": self.state, "progress": round(self.progress, 4),
                "error": self.error, "notes": self.notes, "seconds": self.seconds, "sample_rate": self.sample_rate,
                "channels": self.channels, "frames": self.frames,
                "download_name": denoised_name(self.name, self.output.suffix) if self.state == "done" else None}


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
        entry = FileEntry(index, name, self.folder / f"{index}.in{extension}", self.folder / f"{index}.out{output_extension(Path(name))}")
        self.files.append(entry)
        return entry

    def status(self) -> dict:
        return {"id": self.id, "state": self.state, "dry": self.dry, "created": self.created,
                "files": [entry.status() for entry in self.files]}


class JobStore:
    """Jobs by id, the worker pool that denoises their files, and their deletion."""

    def __init__(self, denoiser: Denoiser, workers: int = 1, max_jobs: int = 32, keep_minutes: float = 60.0, root: Path | None = None) -> None:
        self.denoiser = denoiser
        self.max_jobs = max_jobs
        self.keep_seconds = keep_minutes * 60
        # Uploads of a server that was killed (no cleanup ran) are removed here, at the next start.
        self.root = scratch_folder("serve", root)
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
            if len(self.jobs) >= self.max_jobs:
                raise TooManyJobs(f"the server already holds {self.max_jobs} jobs; delete finished ones or try again later")
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

    def submit(self, job: Job) -> None:
        """Queue every file of a fully uploaded job on the worker pool."""
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
            old = [job.id for job in self.jobs.values() if (job.finished or not job.uploaded) and now - job.touched > self.keep_seconds]
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
            entry.seconds, entry.sample_rate, entry.channels, entry.frames = info.duration, info.samplerate, info.channels, info.frames
            entry.notes = list(result.notes)
            entry.state = "done"
        except Cancelled:
            entry.state, entry.error = "failed", "cancelled"
        except (AudioError, OSError, sf.LibsndfileError, RuntimeError, ValueError, MemoryError) as error:
            entry.state, entry.error = "failed", one_line(error)
        except Exception as error:  # a bug must not take the server down; the log has the traceback
            log.exception("denoising %s failed", entry.name)
            entry.state, entry.error = "failed", f"internal error ({one_line(error)})"

    # --- renders ----------------------------------------------------------------------------------
    def mixed(self, job: Job, entry: FileEntry, dry: float) -> Path:
        """The output with ``dry`` of the input mixed back: enhanced + dry * (input - enhanced).

        Renders are cached per file (a few dry values), in the output's own format and rate."""
        key = int(round(dry * 100))
        if key == 0:
            return entry.output
        with self.using(job), entry.lock:
            if key in entry.mixes and entry.mixes[key].exists():
                entry.mixes.move_to_end(key)
                return entry.mixes[key]
            info = sf.info(str(entry.output))
            path = job.folder / f"{entry.index}.mix{key:03d}{entry.output.suffix}"
            writer = AtomicAudioWriter(path, info.samplerate, info.channels, info.format, info.subtype)
            try:
                for block in mixed_blocks(entry, key / 100):
                    writer.write(block)
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            entry.mixes[key] = path
            while len(entry.mixes) > MAX_MIXES_PER_FILE:
                _, old = entry.mixes.popitem(last=False)
                old.unlink(missing_ok=True)
            return path

    def spectrogram(self, job: Job, entry: FileEntry, which: str, dry: float = 0.0) -> dict:
        """A log-power spectrogram of the input or the (mixed) output, for the page to draw.

        Both share the input's top level, so that what was removed shows as darker regions."""
        with self.using(job):
            return self._spectrogram(entry, which, dry)

    def _spectrogram(self, entry: FileEntry, which: str, dry: float) -> dict:
        key = (which, int(round(dry * 100)) if which == "output" else 0)
        with entry.lock:
            if key in entry.spectrograms:
                return entry.spectrograms[key]
        if ("input", 0) not in entry.spectrograms:
            power = _spectrogram_power(mixed_blocks(entry, 1.0), entry.frames, entry.sample_rate)
            entry.spectrograms[("input", 0)] = _encode(power, entry.seconds, None)
        if which == "input":
            return entry.spectrograms[("input", 0)]
        power = _spectrogram_power(mixed_blocks(entry, key[1] / 100), entry.frames, entry.sample_rate)
        result = _encode(power, entry.seconds, entry.spectrograms[("input", 0)]["top_db"])
        with entry.lock:
            if len(entry.spectrograms) > 2 * MAX_MIXES_PER_FILE:
                entry.spectrograms = {("input", 0): entry.spectrograms[("input", 0)]}
            entry.spectrograms[key] = result
        return result

    def zip_outputs(self, job: Job, dry: list[float]) -> Path:
        """One ZIP of every denoised file (with its dry value), named as the CLI names outputs."""
        path = job.folder / f"outputs-{secrets.token_hex(4)}.zip"
        names: set[str] = set()
        with self.using(job), zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for entry in job.files:
                if entry.state != "done":
                    continue
                name = denoised_name(entry.name, entry.output.suffix)
                while name in names:  # two uploads of the same name
                    name = f"{entry.index + 1}_{name}"
                names.add(name)
                archive.write(self.mixed(job, entry, dry[entry.index] if len(dry) > 1 else dry[0]), name)
        return path


def mixed_blocks(entry: FileEntry, dry: float) -> Iterator[np.ndarray]:
    """[channels, samples] blocks of enhanced + dry * (input - enhanced) at the upload's rate.

    The input is read with the CLI's reader; ``dry`` 0 reads only the output, 1 only the input."""
    with sf.SoundFile(str(entry.output)) as output:
        if dry == 0:
            while True:
                block = output.read(1 << 18, dtype="float32", always_2d=True)
                if not block.shape[0]:
                    return
                yield block.T
        with open_audio(entry.input) as (handle, info):
            for block in read_resampled(handle, info, rate=info.sample_rate):
                if dry == 1:
                    yield block[:, : max(0, output.frames - output.tell())]
                    output.seek(min(output.frames, output.tell() + block.shape[1]))
                    continue
                enhanced = output.read(block.shape[1], dtype="float32", always_2d=True).T
                block = block[:, : enhanced.shape[1]]
                yield enhanced + np.float32(dry) * (block - enhanced)


def _spectrogram_power(blocks: Iterator[np.ndarray], frames: int, rate: int) -> np.ndarray:
    """Mean power per (column, bin): the mono mix at 16 kHz, 512-point Hann frames, hop 256,
    frames averaged into at most SPECTROGRAM_COLUMNS columns (so any length gives a small picture)."""
    expected = max(1, math.ceil(frames * MODEL_RATE / max(rate, 1) / _HOP))
    columns = min(SPECTROGRAM_COLUMNS, expected)
    sums = np.zeros((columns, _FFT // 2 + 1))
    counts = np.zeros(columns)
    window = np.hanning(_FFT).astype(np.float32)
    scale = (window.sum() / 2) ** 2  # a full-scale sine peaks near 0 dB
    resampler = None if rate == MODEL_RATE else soxr.ResampleStream(rate, MODEL_RATE, 1, dtype="float32", quality="HQ")
    pending = np.zeros(0, dtype=np.float32)
    frame_index = 0

    def consume(samples: np.ndarray, last: bool) -> None:
        nonlocal pending, frame_index
        signal = np.concatenate([pending, samples])
        if last and signal.size and (signal.size < _FFT or (signal.size - _FFT) % _HOP):
            # the tail: zero-pad to whole frames so that the last samples show too
            signal = np.pad(signal, (0, _FFT + (-max(signal.size - _FFT, 0)) % _HOP - min(signal.size, _FFT)))
        count = 0 if signal.size < _FFT else 1 + (signal.size - _FFT) // _HOP
        if count:
            framed = np.lib.stride_tricks.sliding_window_view(signal, _FFT)[::_HOP][:count]
            power = np.abs(np.fft.rfft(framed * window, axis=1)) ** 2 / scale
            where = np.minimum((np.arange(frame_index, frame_index + count) * columns) // expected, columns - 1)
            np.add.at(sums, where, power)
            np.add.at(counts, where, 1)
            frame_index += count
        pending = signal[count * _HOP :]

    for block in blocks:
        mono = block.mean(axis=0).astype(np.float32)
        consume(mono if resampler is None else resampler.resample_chunk(mono), False)
    consume(np.zeros(0, np.float32) if resampler is None else resampler.resample_chunk(np.zeros(0, np.float32), last=True), True)
    used = counts > 0
    sums[used] /= counts[used, None]
    # 257 bins to 128 rows (pairs of bins above DC), low frequencies first.
    return sums[:, 1:].reshape(columns, SPECTROGRAM_ROWS, 2).mean(axis=2)


def _encode(power: np.ndarray, seconds: float, top_db: float | None) -> dict:
    """dB values as one byte each (0 = top - 80 dB or below, 255 = top), base64, row 0 the lowest frequency."""
    db = 10 * np.log10(power + 1e-12)
    if top_db is None:
        top_db = float(db.max()) if db.size else 0.0
    scaled = np.clip((db - (top_db - SPECTROGRAM_RANGE_DB)) / SPECTROGRAM_RANGE_DB, 0, 1)
    data = np.round(scaled.T * 255).astype(np.uint8)  # [rows, columns]
    return {"rows": data.shape[0], "columns": data.shape[1], "seconds": seconds, "max_hz": MODEL_RATE // 2,
            "top_db": round(top_db, 2), "range_db": SPECTROGRAM_RANGE_DB, "data": base64.b64encode(data.tobytes()).decode("ascii")}
