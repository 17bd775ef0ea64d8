"""The user-facing denoiser: a model plus everything between it and real recordings.

Any sample rate (resampled to the model's 16 kHz and back), any number of channels (each denoised on
its own, with its own level gain), any length (chunks or segments in bounded memory; long recordings
are staged at 16 kHz on disk, in files unlinked as soon as they are mapped, so nothing is left behind
even after ``kill -9``), any level (level normalisation), and a dry/wet mix.

The path of one channel: resample to 16 kHz -> level gain -> chunks (fixed-statistics models, exact) or
crossfaded segments (per-input models; see ``inference.plan``) through the engine (onnxruntime or torch)
-> level back -> ``out = enhanced + dry * (input - enhanced)`` -> resample back.

This module imports no torch: with the onnx engine, denoising needs neither torch nor safetensors.
"""

from __future__ import annotations

import math
import mmap
import numbers
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soxr

from hushnet.audio import MODEL_RATE, AtomicAudioWriter, AudioError, check_sample_rate, open_audio, output_format, read_resampled, resample
from hushnet.inference.engines import OnnxEngine, TorchEngine, load_engine
from hushnet.inference.plan import Enhancer, Scheme
from hushnet.runtime_options import validate_runtime_options
from hushnet.temporaries import check_folder_writable, clean_stale_scratch, scratch_folder

# Signals larger than this (bytes at 16 kHz float32, all channels) are staged in memmaps on disk.
IN_MEMORY_LIMIT_BYTES = 64 * 2**20
DEFAULT_MEMORY_BUDGET_MB = 512
# Fixed-statistics models: output samples per chunk (plus the receptive radius of context each side,
# 8192 samples for the 64-channel CAN: 6 % overhead at 16 s).
DEFAULT_CHUNK_SECONDS = 16.0
# Per-input models: the crossfade between segments (issue 11 measured 4-s segments with a 1-s linear
# crossfade as the best of those tried: PESQ-WB 2.191 vs 2.202 per file and 2.088 whole-file).
CROSSFADE_SECONDS = 1.0
# Segment length when levels are normalised per segment and the model names none.
DEFAULT_SEGMENT_SECONDS = 4.0
# Activation memory of one whole-input per-input forward, per sample (input, conv output, tail copy).
_WHOLE_BYTES_PER_SAMPLE = 3 * 64 * 4
MAX_CHANNELS = 64
LAYOUTS = ("auto", "channels_first", "channels_last")
LEVEL_SCOPES = ("recording", "segment")
STAGE_PREFIX = "hushnet-stage-"
FEED_SAMPLES = 1 << 18  # staged samples handed to the enhancer at a time


@dataclass
class FileResult:
    """What happened to one file."""

    input: Path
    output: Path
    seconds: float
    sample_rate: int
    channels: int
    passes: int = 1
    clipped_samples: int = 0
    notes: list[str] = field(default_factory=list)


def clean_stale_staging(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove scratch folders (staging, decoding, serving) in the temp folder whose process is gone; returns them."""
    return clean_stale_scratch(folder)


class _Staging:
    """[channels, samples] float32 work arrays: in RAM when small, else memmaps of unlinked files.

    A staged file is unlinked (and its folder removed) as soon as it is mapped: the mapping keeps the
    data, and the OS reclaims the space when the process ends, however it ends (``kill -9`` included).
    Folders of dead processes left by the short window before unlinking are removed at start.

    Pages touched stay mapped and count toward resident memory (a 3-hour file reached 1.6 GB);
    ``release()`` hands them back (MADV_DONTNEED; the data stays in the file), so memory stays bounded.
    """

    RELEASE_EVERY = 1 << 22  # samples between releases (16 MB per channel)

    def __init__(self, channels: int, samples: int) -> None:
        self.channels, self.samples = channels, samples
        self.maps: list[np.memmap] = []
        self.on_disk = channels * samples * 4 > IN_MEMORY_LIMIT_BYTES
        self._since_release = 0

    def allocate(self, name: str) -> np.ndarray:
        if not self.on_disk:
            return np.zeros((self.channels, self.samples), dtype=np.float32)
        folder = scratch_folder("stage")
        try:
            path = os.path.join(folder, f"{name}.f32")
            array = np.memmap(path, mode="w+", dtype=np.float32, shape=(self.channels, self.samples))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.maps.append(array)
        return array

    def advanced(self, samples: int) -> None:
        """Work moved on by ``samples``: hand the pages back every RELEASE_EVERY samples."""
        self._since_release += samples
        if self._since_release >= self.RELEASE_EVERY:
            self.release()

    def release(self) -> None:
        self._since_release = 0
        for array in self.maps:
            if hasattr(array._mmap, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                array._mmap.madvise(mmap.MADV_DONTNEED)

    def __enter__(self) -> "_Staging":
        return self

    def __exit__(self, *exc_info) -> None:
        self.maps.clear()


def _is_real(value) -> bool:
    """A real number, NumPy's included (np.float32(0.5) as well as 0.5), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _sample_rate(value) -> int:
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


def _to_channels_first(audio: np.ndarray, layout: str) -> tuple[np.ndarray, bool]:
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
            raise AudioError(f"ambiguous shape {audio.shape}: pass layout='channels_first' ([channels, samples]) or 'channels_last' ([samples, channels])")
        if not first_ok and not last_ok:
            raise AudioError(f"shape {audio.shape} has more than {MAX_CHANNELS} channels either way")
        # One reading has at most MAX_CHANNELS channels (a row vector or column vector is mono).
        signal = audio.T if (last_ok and not first_ok) or (columns == 1 and rows > 1) else audio
    if signal.shape[0] > MAX_CHANNELS:
        raise AudioError(f"{signal.shape[0]} channels in layout {layout} (at most {MAX_CHANNELS}): "
                         "for [samples, channels] arrays pass layout='channels_last'")
    return signal, signal is not audio


# Integer sample formats: full scale of each (uint8 is offset binary, as in 8-bit WAV).
_INTEGER_SCALE = {np.dtype(np.int8): (128.0, 0.0), np.dtype(np.int16): (32768.0, 0.0), np.dtype(np.int32): (2147483648.0, 0.0),
                  np.dtype(np.uint8): (128.0, 128.0)}


def _to_float(audio: np.ndarray) -> np.ndarray:
    if audio.dtype in _INTEGER_SCALE:
        scale, offset = _INTEGER_SCALE[audio.dtype]
        return ((audio.astype(np.float32) - offset) / scale).astype(np.float32)
    if audio.dtype.kind != "f":
        raise AudioError(f"unsupported sample type {audio.dtype} (use float, int8/16/32 or uint8)")
    return audio.astype(np.float32, copy=False)


def _from_float(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype in _INTEGER_SCALE:
        scale, offset = _INTEGER_SCALE[dtype]
        info = np.iinfo(dtype)
        return np.clip(np.round(y.astype(np.float64) * scale + offset), info.min, info.max).astype(dtype)
    return y.astype(dtype, copy=False)


def _enhance_blocks(enhancer: Enhancer, signal: np.ndarray, length: int,
                    progress: Callable[[int], None] | None) -> Iterator[tuple[np.ndarray, int]]:
    """Feed the first ``length`` samples of ``signal`` to ``enhancer`` FEED_SAMPLES at a time (staged
    memmaps are read a block at a time); yields (output ready, input samples consumed), the flushed
    rest with the last block."""
    for start in range(0, length, FEED_SAMPLES):
        stop = min(start + FEED_SAMPLES, length)
        y = enhancer.feed(np.asarray(signal[:, start:stop]))
        if stop == length:
            y = np.concatenate([y, enhancer.flush()], axis=1)
        if progress is not None:
            progress(stop - start)
        yield y, stop - start


class Denoiser:
    """Denoise arrays, files and streams with a CAN model.

    >>> denoiser = Denoiser.from_pretrained()          # the model shipped in the package
    >>> clean = denoiser.denoise(noisy, sample_rate)   # [samples], [channels, samples] or [samples, channels]

    Options (each defaults to the model's config):
    - ``dry``: fraction of the input mixed back, ``out = enhanced + dry * (input - enhanced)``;
      0 = fully denoised, 1 = the input unchanged.
    - ``level_db``: RMS level (dBFS) the input is brought to before the network and restored after;
      None = the model's ``input_rms_db``, ``"off"`` = feed the input as is.
    - ``level_scope``: ``"recording"`` (one gain per channel for the whole recording) or ``"segment"``
      (one gain per channel and segment; the signal then goes through crossfaded segments).
    """

    def __init__(self, model, device: str = "cpu", memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, block: int | None = None, *,
                 dry: float | None = None, level_db: float | str | None = None, level_scope: str = "recording",
                 chunk_seconds: float = DEFAULT_CHUNK_SECONDS, threads: int | None = None) -> None:
        """``model``: a torch CAN (torch engine) or an engine from ``inference.load_engine``.
        ``block`` is accepted for compatibility and unused (the chunk plan replaced block streaming)."""
        validate_runtime_options(threads=threads, device=str(device), chunk_seconds=chunk_seconds, memory_budget_mb=memory_budget_mb)
        if isinstance(model, (OnnxEngine, TorchEngine)):
            self.engine = model
        else:
            self.engine = TorchEngine(model, device=device, threads=threads)
        self.config = self.engine.config
        self.device = str(device)
        self.memory_budget_mb = memory_budget_mb
        self.chunk_seconds = chunk_seconds
        dry = self.config.dry if dry is None else dry
        if not _is_real(dry) or not 0.0 <= float(dry) <= 1.0:
            raise AudioError(f"dry must be between 0 (fully denoised) and 1 (the input unchanged), got {dry!r}")
        self.dry = float(dry)
        if level_db is None:
            level_db = self.config.input_rms_db
        elif level_db == "off":
            level_db = None
        elif not _is_real(level_db) or not -100.0 <= float(level_db) <= 0.0:
            raise AudioError(f"level must be a dBFS value between -100 and 0, or 'off'; got {level_db!r}")
        self.level_db = None if level_db is None else float(level_db)
        if level_scope not in LEVEL_SCOPES:
            raise AudioError(f"level scope must be one of {', '.join(LEVEL_SCOPES)}, got {level_scope!r}")
        self.level_scope = level_scope

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike | None = None, device: str = "cpu", engine: str = "auto",
                        threads: int | None = None, **options) -> "Denoiser":
        """Load a model directory by path, or a shipped model by name (default: the package default),
        once, into ``engine`` (auto: onnxruntime when installed and the directory has model.onnx)."""
        validate_runtime_options(threads=threads, device=str(device), chunk_seconds=options.get("chunk_seconds"),
                                 memory_budget_mb=options.get("memory_budget_mb"))
        return cls(load_engine(path_or_name, engine=engine, device=device, threads=threads), device=device, **options)

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def model(self):
        """The torch model (torch engine only)."""
        return getattr(self.engine, "model", None)

    def passes(self, samples_16k: int) -> int:
        """Passes over the signal (always 1: long per-input inputs are segmented, not re-streamed)."""
        return 1

    # -- the plan ---------------------------------------------------------------------------------
    def _target_rms(self) -> float | None:
        return None if self.level_db is None else 10 ** (self.level_db / 20)

    def scheme(self, level_scope: str | None = None) -> Scheme:
        """How signals are processed (chunks or segments) with this level scope (default: the denoiser's)."""
        rate = self.config.sample_rate
        segment_level = self.level_db is not None and (level_scope or self.level_scope) == "segment"
        if self.config.norm == "batch" and not segment_level:
            return Scheme("chunks", max(1, round(self.chunk_seconds * rate)), context=self.config.receptive_radius)
        if self.config.segment_seconds:
            length = round(self.config.segment_seconds * rate)
        elif self.config.norm == "batch":
            length = round(DEFAULT_SEGMENT_SECONDS * rate)
        else:
            # A per-input model without a segment length: the whole input, up to what the memory
            # budget allows in one forward; longer inputs are cut into segments of that length.
            limit = int(self.memory_budget_mb * 2**20 / (_WHOLE_BYTES_PER_SAMPLE * self.config.channels / 64))
            length = max(3, limit)
        overlap = min(round(CROSSFADE_SECONDS * rate), length // 3)
        return Scheme("segments", length, overlap=overlap)

    def _enhancer(self, channels: int, gains: np.ndarray | None, scope: str | None = None) -> Enhancer:
        """The incremental processor for ``channels`` channels; ``gains``: per-channel recording gains."""
        scope = scope or self.level_scope
        target = self._target_rms()
        segment_level = target if (target is not None and scope == "segment") else None
        if target is not None and scope == "recording" and gains is None:
            raise ValueError("recording-level normalisation needs the gains")
        return Enhancer(self.engine, self.scheme(scope), channels, gains=None if segment_level is not None else gains,
                        segment_level=segment_level, dry=self.dry)

    def _recording_gains(self, sum_of_squares: np.ndarray, count: int) -> np.ndarray | None:
        """Per-channel gains to the target level (recording scope), 1 for silent channels."""
        target = self._target_rms()
        if target is None or self.level_scope != "recording":
            return None
        rms = np.sqrt(np.asarray(sum_of_squares, dtype=np.float64) / max(count, 1))
        return np.where(rms > 0, target / np.where(rms > 0, rms, 1.0), 1.0)

    # -- arrays -----------------------------------------------------------------------------------
    @staticmethod
    def _validate(audio: np.ndarray, sample_rate, layout: str) -> tuple[np.ndarray, int, bool]:
        if audio.ndim not in (1, 2) or audio.size == 0:
            raise AudioError("audio must be a non-empty [samples], [channels, samples] or [samples, channels] array")
        rate = _sample_rate(sample_rate)
        signal, transposed = _to_channels_first(audio[None] if audio.ndim == 1 else audio, "channels_first" if audio.ndim == 1 else layout)
        signal = _to_float(signal)
        if not np.isfinite(signal).all():
            raise AudioError("contains NaN or infinite samples")
        return signal, rate, transposed

    def denoise(self, audio: np.ndarray, sample_rate: int | float, progress: Callable[[int], None] | None = None, layout: str = "auto") -> np.ndarray:
        """Denoise ``audio``; returns the same shape, layout, rate and dtype.

        ``layout``: ``auto`` (default) takes a 2-D array as [channels, samples] or [samples, channels]
        only where one reading has at most 64 channels and the other not (a [2, N] or [N, 2] array
        with N > 64); any other 2-D shape is an AudioError asking for ``channels_first`` or
        ``channels_last``. Integer arrays (int8/16/32, uint8) are read as PCM at their full scale and
        the result comes back in the same integer type (rounded, clipped); floats stay floats.
        """
        audio = np.asarray(audio)
        signal, rate, transposed = self._validate(audio, sample_rate, layout)
        length = signal.shape[1]
        x16 = resample(np.ascontiguousarray(signal), rate, MODEL_RATE)
        gains = self._recording_gains(np.square(x16, dtype=np.float64).sum(axis=1), x16.shape[1])
        out = np.concatenate([y for y, _ in _enhance_blocks(self._enhancer(x16.shape[0], gains), x16, x16.shape[1], progress)], axis=1)
        silent = ~np.any(signal != 0, axis=1)
        out[silent] = 0.0
        y = resample(out, MODEL_RATE, rate)
        y = y[:, :length] if y.shape[1] >= length else np.pad(y, ((0, 0), (0, length - y.shape[1])))
        y = y[0] if audio.ndim == 1 else (y.T if transposed else y)
        return _from_float(np.ascontiguousarray(y), audio.dtype)

    def stream(self, sample_rate: int | float = MODEL_RATE, channels: int = 1) -> "DenoiseStream":
        """A push streamer: ``feed(chunk)`` returns what is ready, ``flush()`` the rest."""
        return DenoiseStream(self, _sample_rate(sample_rate), channels)

    # -- files ------------------------------------------------------------------------------------
    def denoise_file(self, input_path: str | os.PathLike, output_path: str | os.PathLike, progress: Callable[[int], None] | None = None,
                     on_start: Callable[[int], None] | None = None, subtype: str | None = None) -> FileResult:
        """Denoise one file into ``output_path`` (written atomically; the input is never touched).

        The output keeps the input's sample encoding unless ``subtype`` (e.g. "FLOAT") is given.
        ``on_start`` receives the amount of work (16 kHz samples) once the file is opened.
        """
        input_path, output_path = Path(input_path), Path(output_path)
        if output_path.exists() and input_path.exists() and output_path.resolve() == input_path.resolve():
            raise AudioError("output path is the input file; refusing to overwrite it")
        try:  # before any work: a long file must not be denoised only to find nowhere to put it
            check_folder_writable(output_path.parent)
        except OSError as error:
            raise AudioError(f"cannot write to {output_path.parent}: {error.strerror or error}") from None
        with open_audio(input_path) as (handle, info):
            if info.frames == 0:
                raise AudioError("contains no audio samples")
            major, own_subtype = output_format(info, output_path.suffix)
            subtype = subtype or own_subtype
            capacity = math.ceil(info.frames * MODEL_RATE / info.sample_rate) + 64
            with _Staging(info.channels, capacity) as staging:
                staged = staging.allocate("input")
                filled = 0
                sum_of_squares = np.zeros(info.channels, dtype=np.float64)
                nonzero = np.zeros(info.channels, dtype=bool)
                peak = 0.0
                for block in read_resampled(handle, info):
                    take = min(block.shape[1], capacity - filled)
                    staged[:, filled : filled + take] = block[:, :take]
                    filled += take
                    sum_of_squares += np.square(block[:, :take], dtype=np.float64).sum(axis=1)
                    nonzero |= np.any(block != 0, axis=1)
                    peak = max(peak, float(np.abs(block).max(initial=0.0)))
                    staging.advanced(take)
                if filled == 0:
                    raise AudioError("contains no audio samples")
                if on_start is not None:
                    on_start(filled)
                out = staging.allocate("output")
                enhancer = self._enhancer(info.channels, self._recording_gains(sum_of_squares, filled))
                written = 0
                for y, consumed in _enhance_blocks(enhancer, staged, filled, progress):
                    out[:, written : written + y.shape[1]] = y
                    written += y.shape[1]
                    staging.advanced(consumed)
                out = out[:, :filled]
                out[~nonzero] = 0.0
                result = FileResult(input_path, output_path, info.seconds, info.sample_rate, info.channels)
                if peak >= 0.999:
                    result.notes.append("input is clipped (peaks at full scale); clipped speech stays distorted")
                if not nonzero.any():
                    result.notes.append("input is digital silence; output is silence")
                if info.frames_read < info.frames:
                    result.notes.append(f"truncated: {info.frames_read} of the {info.frames} frames its header promises could be read")
                result.clipped_samples = self._write(out, info.sample_rate, info.frames_read, output_path, major, subtype, staging.advanced)
                if result.clipped_samples:
                    result.notes.append(f"{result.clipped_samples} output samples exceeded full scale and were clipped")
        return result

    def _write(self, out: np.ndarray, rate: int, frames: int, path: Path, major: str, subtype: str,
               advanced: Callable[[int], None] = lambda samples: None) -> int:
        """Resample the 16 kHz result back to ``rate`` in blocks and write exactly ``frames`` frames."""
        writer = AtomicAudioWriter(path, rate, out.shape[0], major, subtype)
        try:
            resampler = None if rate == MODEL_RATE else soxr.ResampleStream(MODEL_RATE, rate, out.shape[0], dtype="float32", quality="HQ")
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


class DenoiseStream:
    """Push-style streaming: ``feed(chunk)`` returns the output that is final, ``flush()`` the rest.

    Chunks are [samples] (mono) or [channels, samples] float arrays at ``sample_rate``. The output,
    concatenated, equals ``Denoiser.denoise`` of the whole signal (same options), except that a level
    normalised per recording, which needs the whole recording, is normalised per segment here (as
    ``level_scope="segment"``). ``latency`` is the most audio (seconds) that must be fed past an
    output sample before that sample is returned (not counting the resamplers' own short delay).
    """

    def __init__(self, denoiser: Denoiser, sample_rate: int, channels: int = 1) -> None:
        if not 1 <= channels <= MAX_CHANNELS:
            raise AudioError(f"channels must be between 1 and {MAX_CHANNELS}")
        self.denoiser, self.sample_rate, self.channels = denoiser, sample_rate, channels
        # A level per recording needs the whole recording: streams normalise it per segment.
        scope = "segment" if denoiser.level_db is not None else denoiser.level_scope
        self.level_scope = scope
        self.enhancer = denoiser._enhancer(channels, None, scope)
        self.scheme = self.enhancer.scheme
        make = lambda a, b: soxr.ResampleStream(a, b, channels, dtype="float32", quality="HQ")  # noqa: E731
        self._in = None if sample_rate == MODEL_RATE else make(sample_rate, MODEL_RATE)
        self._out = None if sample_rate == MODEL_RATE else make(MODEL_RATE, sample_rate)
        self.received = 0
        self.returned = 0
        self._mono: bool | None = None
        self.flushed = False

    @property
    def latency(self) -> float:
        """Seconds of lookahead (see the class docstring)."""
        return self.scheme.lookahead / MODEL_RATE

    def _shape(self, chunk) -> np.ndarray:
        chunk = np.asarray(chunk)
        mono = chunk.ndim == 1
        if self._mono is None:
            self._mono = mono
        if chunk.ndim not in (1, 2) or (mono and self.channels != 1) or (not mono and chunk.shape[0] != self.channels):
            raise AudioError(f"expected [samples] or [{self.channels}, samples] chunks, got shape {chunk.shape}")
        signal = _to_float(chunk[None] if mono else chunk)
        if not np.isfinite(signal).all():
            raise AudioError("contains NaN or infinite samples")
        return signal

    def _emit(self, y16: np.ndarray, last: bool) -> np.ndarray:
        y = y16 if self._out is None else self._out.resample_chunk(np.ascontiguousarray(y16.T), last=last).T
        y = y[:, : max(0, self.received - self.returned)]
        if last:  # exactly as many samples out as came in
            y = np.pad(y, ((0, 0), (0, self.received - self.returned - y.shape[1])))
        self.returned += y.shape[1]
        y = np.ascontiguousarray(y, dtype=np.float32)
        return y[0] if self._mono else y

    def feed(self, chunk) -> np.ndarray:
        """Push samples; returns the denoised samples that are ready (possibly none)."""
        if self.flushed:
            raise AudioError("this stream has been flushed (its input ended): start another with Denoiser.stream()")
        signal = self._shape(chunk)
        self.received += signal.shape[1]
        x16 = signal if self._in is None else self._in.resample_chunk(np.ascontiguousarray(signal.T)).T
        return self._emit(self.enhancer.feed(np.ascontiguousarray(x16)), last=False)

    def flush(self) -> np.ndarray:
        """The rest of the output: the input has ended."""
        if self.flushed:
            raise AudioError("this stream has already been flushed: start another with Denoiser.stream()")
        self.flushed = True
        if self._in is not None:
            tail = self._in.resample_chunk(np.zeros((0, self.channels), dtype=np.float32), last=True).T
            rest = self.enhancer.feed(np.ascontiguousarray(tail))
        else:
            rest = np.zeros((self.channels, 0), dtype=np.float32)
        rest = np.concatenate([rest, self.enhancer.flush()], axis=1)
        return self._emit(rest, last=True)
