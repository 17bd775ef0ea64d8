"""Audio files in: any format soundfile reads (ffmpeg for other containers), validated with
one-line errors, read in blocks and resampled with soxr's streaming resampler, so that a long
recording never has to sit in memory at its original rate."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from hushnet.audio.formats import FFMPEG_ONLY_EXTENSIONS, MODEL_RATE, AudioInfo, check_sample_rate
from hushnet.errors import AudioError, one_line
from hushnet.temporaries import scratch_folder

READ_BLOCK_SECONDS = 10.0


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def _decode_with_ffmpeg(path: Path, folder: Path) -> Path:
    """Decode any container with an audio stream to a float32 WAV (RF64 when large) in ``folder``."""
    if not ffmpeg_available():
        raise AudioError(
            f"cannot read {path.suffix or 'this'} files without ffmpeg: install ffmpeg (e.g. apt-get install ffmpeg) or convert to WAV/FLAC"
        )
    target = folder / "decoded.wav"
    command = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-vn",
        "-c:a",
        "pcm_f32le",
        "-rf64",
        "auto",
        str(target),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, preexec_fn=_parent_death_signal())
    except OSError as error:
        raise AudioError(f"cannot run ffmpeg: {one_line(error)}") from None
    if result.returncode != 0 or not target.is_file():
        if "matches no streams" in result.stderr or "does not contain any stream" in result.stderr:
            raise AudioError("no audio stream in this file (video only?)")
        if (
            "No space left on device" in result.stderr
            or "File too large" in result.stderr
            or result.returncode == -signal.SIGXFSZ
        ):
            raise AudioError(
                f"cannot decode: no space left in the temporary folder {folder.parent} (set TMPDIR to a larger one)"
            )
        message = (result.stderr.strip().splitlines() or [f"ffmpeg ended with status {result.returncode}"])[-1]
        message = message.replace(f"{path}: ", "").strip()
        raise AudioError(f"not a readable audio file ({message})")
    return target


def _parent_death_signal():
    """A function for the ffmpeg child to call before it runs: be killed when hushnet dies (``kill -9``
    included) instead of decoding on into a folder nobody will remove. Looked up here, in the parent,
    so that the child (forked, perhaps from a threaded server) only makes one system call."""
    try:
        import ctypes
        import signal

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return lambda: prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def open_audio(path: str | os.PathLike) -> Iterator[tuple[sf.SoundFile, AudioInfo]]:
    """Open ``path`` for block reading: (soundfile handle, info). ffmpeg decodes what soundfile cannot."""
    path = Path(path)
    if not path.exists():
        raise AudioError("no such file")
    if path.is_dir():
        raise AudioError("is a folder, not a file")
    if not path.is_file():
        raise AudioError("not a regular file (a device, pipe or socket)")
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    decoded = False
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        if path.suffix.lower() not in FFMPEG_ONLY_EXTENSIONS and not ffmpeg_available():
            raise AudioError(f"not a readable audio file ({one_line(error)})") from None
        handle = _open_decoded(path)
        decoded = True
    with handle:
        info = AudioInfo(
            path, handle.samplerate, handle.channels, handle.frames, handle.format, handle.subtype, decoded
        )
        if info.sample_rate <= 0 or info.channels <= 0:
            raise AudioError("invalid header (no sample rate or channels)")
        check_sample_rate(info.sample_rate)
        yield handle, info


def _open_decoded(path: Path) -> sf.SoundFile:
    """ffmpeg's decoding of ``path``, open; the decoded file is unlinked (and its folder removed) as
    soon as it is open, so that a ``kill -9`` leaves nothing (the OS frees it with the process)."""
    scratch = scratch_folder("decode")
    try:
        decoded = _decode_with_ffmpeg(path, scratch)
        try:
            return sf.SoundFile(str(decoded))
        except sf.LibsndfileError as error:
            raise AudioError(f"not a readable audio file ({one_line(error)})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def read_resampled(
    handle: sf.SoundFile, info: AudioInfo, rate: int = MODEL_RATE, block_seconds: float = READ_BLOCK_SECONDS
) -> Iterator[np.ndarray]:
    """Blocks of the file as float32 [channels, samples] at ``rate``; NaN/Inf and truncation raise AudioError."""
    resampler = (
        None
        if info.sample_rate == rate
        else soxr.ResampleStream(info.sample_rate, rate, info.channels, dtype="float32", quality="HQ")
    )
    block = max(1, int(block_seconds * info.sample_rate))
    handle.seek(0)
    info.frames_read = 0
    remaining = info.frames
    while True:
        try:
            data = handle.read(block, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"corrupt or truncated audio data ({one_line(error)})") from None
        last = data.shape[0] < block or data.shape[0] >= remaining
        remaining -= data.shape[0]
        info.frames_read += data.shape[0]
        if data.size and not np.isfinite(data).all():
            raise AudioError("contains NaN or infinite samples")
        out = data if resampler is None else resampler.resample_chunk(data, last=last)
        if out.shape[0]:
            yield np.ascontiguousarray(out.T)
        if last:
            break


def read_audio(path: str | os.PathLike, rate: int | None = None) -> tuple[np.ndarray, int]:
    """A whole file as float32 [channels, samples], resampled to ``rate`` when given."""
    with open_audio(path) as (handle, info):
        target = rate or info.sample_rate
        blocks = list(read_resampled(handle, info, target))
    if not blocks:
        raise AudioError("contains no audio samples")
    return np.concatenate(blocks, axis=1), target
