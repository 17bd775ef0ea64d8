"""Audio files in and out: any format soundfile reads (ffmpeg for other containers), resampling,
validation with one-line errors, and atomic writes. Knows nothing of models.

Files are read in blocks and resampled with soxr's streaming resampler, so a long recording never has
to sit in memory at its original rate.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf
import soxr

from hushnet.temporaries import PendingFile, default_file_mode, scratch_folder  # noqa: F401  (default_file_mode: re-exported)

MODEL_RATE = 16000
READ_BLOCK_SECONDS = 10.0
# Formats soundfile reads and writes (an output keeps its input's format where it is one of these).
WRITABLE_EXTENSIONS = {
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".aifc",
    ".au",
    ".caf",
    ".w64",
    ".rf64",
}
FFMPEG_ONLY_EXTENSIONS = {".m4a", ".aac", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".wma", ".amr", ".3gp"}
# Extensions we look for when given a folder: soundfile's formats plus what ffmpeg usually holds.
AUDIO_EXTENSIONS = WRITABLE_EXTENSIONS | FFMPEG_ONLY_EXTENSIONS


class AudioError(ValueError):
    """A file that cannot be read or written as audio; the message is one line for the user."""


# The highest rate audio interfaces record at; above it a "sample rate" is a corrupt header or a
# mistake (2**31 - 1 Hz read as "no audio samples", 10**9 Hz made the resampler fail).
MAX_SAMPLE_RATE = 768000
# Below this no recording is speech (telephone audio is 8 kHz); a rate of 1 Hz read a 1-s array as
# 4.4 hours of audio.
MIN_SAMPLE_RATE = 1000


def check_sample_rate(rate: int) -> None:
    """AudioError for a rate no recording has."""
    if rate > MAX_SAMPLE_RATE:
        raise AudioError(f"unsupported sample rate {rate} Hz (at most {MAX_SAMPLE_RATE})")
    if rate < MIN_SAMPLE_RATE:
        raise AudioError(f"unsupported sample rate {rate} Hz (at least {MIN_SAMPLE_RATE})")


@dataclass
class AudioInfo:
    """What a file holds, and the format to write a result in."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str  # soundfile major format of the file actually read (WAV for ffmpeg-decoded input)
    subtype: str
    decoded_by_ffmpeg: bool = False
    frames_read: int = 0  # set by read_resampled: headers (MP3 above all) can promise more than is there

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


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


def one_line(error: BaseException) -> str:
    """An exception as one short line for the user (libsndfile's path prefix removed)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    text = lines[-1] if lines else ""
    if "': " in text:  # libsndfile: "Error opening '<path>': <reason>"
        text = text.split("': ", 1)[1]
    # Only the ends libsndfile pads with: a message may itself start with a quoted path ('../x' ...).
    return text.strip().rstrip(".").strip() or type(error).__name__


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


def output_format(info: AudioInfo, extension: str) -> tuple[str, str]:
    """(format, subtype) to write a result in: the input's own where soundfile can write it."""
    extension = extension.lower().lstrip(".")
    major = {
        "wav": "WAV",
        "flac": "FLAC",
        "ogg": "OGG",
        "oga": "OGG",
        "opus": "OGG",
        "mp3": "MP3",
        "aif": "AIFF",
        "aiff": "AIFF",
        "aifc": "AIFF",
        "au": "AU",
        "caf": "CAF",
        "w64": "W64",
        "rf64": "RF64",
    }.get(extension)
    if major is None:
        raise AudioError(f"cannot write .{extension} files; use .wav or .flac")
    subtype = info.subtype if not info.decoded_by_ffmpeg else "PCM_16"
    if major == "WAV" and info.format == "WAVEX":
        # WAVE_FORMAT_EXTENSIBLE (ffmpeg's choice for 24-bit, float and multichannel WAV) is still .wav.
        major = "WAVEX"
    if major == info.format and sf.check_format(major, subtype):
        return major, subtype
    # Another container: keep the resolution where it can hold it (24-bit WAV to FLAC stays 24-bit;
    # float and 32-bit become 24-bit, FLAC's most).
    if subtype.startswith("PCM") and major not in ("OGG", "MP3") and sf.check_format(major, subtype):
        return major, subtype
    if subtype in ("FLOAT", "DOUBLE", "PCM_32") and major not in ("OGG", "MP3") and sf.check_format(major, "PCM_24"):
        return major, "PCM_24"
    return major, sf.default_subtype(major)


def output_extension(path: Path) -> str:
    """The extension a result for ``path`` is written with: its own where writable, else .wav."""
    extension = path.suffix.lower()
    return extension if extension in WRITABLE_EXTENSIONS else ".wav"


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


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """[channels, samples] or [samples] float32 from one rate to another (soxr, high quality)."""
    if from_rate == to_rate:
        return samples.astype(np.float32, copy=False)
    return np.ascontiguousarray(soxr.resample(samples.T, from_rate, to_rate, quality="HQ").T, dtype=np.float32)


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


# --- arrays as the Python API takes them -----------------------------------------------------------

MAX_CHANNELS = 64
LAYOUTS = ("auto", "channels_first", "channels_last")
# Integer sample formats: full scale of each (uint8 is offset binary, as in 8-bit WAV).
_INTEGER_SCALE = {
    np.dtype(np.int8): (128.0, 0.0),
    np.dtype(np.int16): (32768.0, 0.0),
    np.dtype(np.int32): (2147483648.0, 0.0),
    np.dtype(np.uint8): (128.0, 128.0),
}


def checked_rate(value) -> int:
    """A sample rate as an int: ints and integral floats (16000.0) pass; anything else is an AudioError."""
    if isinstance(value, (bool, np.bool_)):
        raise AudioError(f"invalid sample rate {value!r}")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or not float(value).is_integer():
            raise AudioError(f"sample rate must be a whole number of Hz, got {value!r}")
        value = int(value)
    if not isinstance(value, (int, np.integer)) or value <= 0:
        raise AudioError(f"invalid sample rate {value!r}")
    check_sample_rate(int(value))
    return int(value)


def to_channels_first(audio: np.ndarray, layout: str) -> tuple[np.ndarray, bool]:
    """([channels, samples] view, whether it was transposed) of a 2-D array in ``layout``;
    ``auto`` decides only where one reading is possible, else AudioError."""
    if layout not in LAYOUTS:
        raise AudioError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    rows, columns = audio.shape
    if layout == "channels_first":
        signal = audio
    elif layout == "channels_last":
        signal = audio.T
    else:
        first_ok, last_ok = rows <= MAX_CHANNELS, columns <= MAX_CHANNELS
        if first_ok and last_ok and min(rows, columns) > 1:
            raise AudioError(
                f"ambiguous shape {audio.shape}: pass layout='channels_first' ([channels, samples]) or 'channels_last' ([samples, channels])"
            )
        if not first_ok and not last_ok:
            raise AudioError(f"shape {audio.shape} has more than {MAX_CHANNELS} channels either way")
        # One reading has at most MAX_CHANNELS channels (a row vector or column vector is mono).
        signal = audio.T if (last_ok and not first_ok) or (columns == 1 and rows > 1) else audio
    if signal.shape[0] > MAX_CHANNELS:
        raise AudioError(
            f"{signal.shape[0]} channels in layout {layout} (at most {MAX_CHANNELS}): "
            "for [samples, channels] arrays pass layout='channels_last'"
        )
    return signal, signal is not audio


def to_float(audio: np.ndarray) -> np.ndarray:
    """float32 samples of a float or integer PCM array (integers at their full scale)."""
    if audio.dtype in _INTEGER_SCALE:
        scale, offset = _INTEGER_SCALE[audio.dtype]
        return ((audio.astype(np.float32) - offset) / scale).astype(np.float32)
    if audio.dtype.kind != "f":
        raise AudioError(f"unsupported sample type {audio.dtype} (use float, int8/16/32 or uint8)")
    return audio.astype(np.float32, copy=False)


def from_float(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``y`` in ``dtype``: integer PCM rounded and clipped at full scale, floats as they are."""
    if dtype in _INTEGER_SCALE:
        scale, offset = _INTEGER_SCALE[dtype]
        info = np.iinfo(dtype)
        return np.clip(np.round(y.astype(np.float64) * scale + offset), info.min, info.max).astype(dtype)
    return y.astype(dtype, copy=False)


def finite_float(audio: np.ndarray) -> np.ndarray:
    """:func:`to_float`, refusing NaN and infinite samples."""
    signal = to_float(audio)
    if not np.isfinite(signal).all():
        raise AudioError("contains NaN or infinite samples")
    return signal


def signal_of(audio: np.ndarray, sample_rate, layout: str) -> tuple[np.ndarray, int, bool]:
    """A user's array as float32 [channels, samples], its checked rate, and whether it was transposed
    (a [samples, channels] array); AudioError in one line for what cannot be audio."""
    if audio.ndim not in (1, 2) or audio.size == 0:
        raise AudioError("audio must be a non-empty [samples], [channels, samples] or [samples, channels] array")
    rate = checked_rate(sample_rate)
    signal, transposed = to_channels_first(
        audio[None] if audio.ndim == 1 else audio, "channels_first" if audio.ndim == 1 else layout
    )
    return finite_float(signal), rate, transposed


def like_input(y: np.ndarray, audio: np.ndarray, transposed: bool) -> np.ndarray:
    """[channels, samples] float32 ``y`` in the length, shape, layout and dtype of the user's ``audio``."""
    length = audio.shape[-1] if audio.ndim == 1 or not transposed else audio.shape[0]
    y = y[:, :length] if y.shape[1] >= length else np.pad(y, ((0, 0), (0, length - y.shape[1])))
    y = y[0] if audio.ndim == 1 else (y.T if transposed else y)
    return from_float(np.ascontiguousarray(y), audio.dtype)
