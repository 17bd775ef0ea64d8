"""Audio files out: results written in blocks, resampled from the model's rate, atomically (a
result appears whole or not at all)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import soxr

from hushnet.audio.formats import MODEL_RATE
from hushnet.errors import AudioError, one_line
from hushnet.temporaries import PendingFile


class _ErrorKeepingFile:
    """The pending file as libsndfile's virtual I/O sees it: an OSError (disk full, file too large)
    is kept for the one-line message instead of escaping into the C callback, where it would print
    a traceback and reach us only as "System error"."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            return 0

    def read(self, size: int = -1) -> bytes:
        return self.handle.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def flush(self) -> None:
        self.handle.flush()


class AtomicAudioWriter:
    """Write audio in blocks to a :class:`~hushnet.temporaries.PendingFile`; ``commit`` puts it at
    ``path`` (making its folder then), ``abort`` leaves nothing, and neither does a ``kill -9``."""

    def __init__(self, path: Path, sample_rate: int, channels: int, format: str, subtype: str) -> None:
        self.path = path
        self.integer = (
            subtype.startswith("PCM") or subtype in {"ULAW", "ALAW", "DPCM_8", "DPCM_16"} or format in {"MP3", "OGG"}
        )
        self.clipped = 0
        try:
            self.pending = PendingFile(path)
        except OSError as error:
            raise AudioError(f"cannot write to {path.parent}: {error.strerror or error}") from None
        self.target = _ErrorKeepingFile(self.pending.handle)
        try:
            self.file = sf.SoundFile(self.target, "w", sample_rate, channels, subtype, format=format)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
            self.pending.abort()
            raise self._failure(error) from None

    def _failure(self, error: BaseException) -> AudioError:
        if self.target.error is not None:
            return AudioError(f"cannot write {self.path}: {one_line(self.target.error)}")
        return AudioError(f"cannot write {self.path}: {one_line(error)}")

    def write(self, block: np.ndarray) -> None:
        """Append [channels, samples]; clip to [-1, 1] for formats that cannot hold more."""
        data = block.T
        if not np.isfinite(data).all():  # never a file we would not stand behind
            raise AudioError(f"cannot write {self.path}: the result has NaN or infinite samples")
        if self.integer:
            over = np.abs(data) > 1.0
            if over.any():
                self.clipped += int(over.sum())
                data = np.clip(data, -1.0, 1.0)
        try:
            self.file.write(np.ascontiguousarray(data, dtype=np.float32))
        except (sf.LibsndfileError, RuntimeError, AssertionError) as error:  # soundfile asserts the count written
            raise self._failure(error) from None
        if self.target.error is not None:
            raise self._failure(self.target.error)

    def commit(self) -> None:
        try:
            self.file.close()
            if self.target.error is not None:
                raise self.target.error
            self.pending.commit()
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            raise self._failure(error) from None

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()
        self.pending.abort()


def write_resampled(
    out: np.ndarray,
    rate: int,
    frames: int,
    path: Path,
    major: str,
    subtype: str,
    advanced: Callable[[int], None] = lambda samples: None,
) -> int:
    """Write [channels, samples] at 16 kHz to ``path`` at ``rate``, exactly ``frames`` frames, resampled
    in blocks (``out`` may be a memmap); atomically. Returns the samples clipped to full scale."""
    writer = AtomicAudioWriter(path, rate, out.shape[0], major, subtype)
    try:
        resampler = (
            None
            if rate == MODEL_RATE
            else soxr.ResampleStream(MODEL_RATE, rate, out.shape[0], dtype="float32", quality="HQ")
        )
        written = 0
        step = MODEL_RATE * 10
        for start in range(0, out.shape[1], step):
            block = np.ascontiguousarray(out[:, start : start + step].T)
            last = start + step >= out.shape[1]
            converted = block if resampler is None else resampler.resample_chunk(block, last=last)
            converted = converted[: frames - written]
            if converted.shape[0]:
                writer.write(converted.T)
                written += converted.shape[0]
            advanced(block.shape[0])
        if written < frames:  # the resampler can end a sample or two short of the input length
            writer.write(np.zeros((out.shape[0], frames - written), dtype=np.float32))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return writer.clipped
