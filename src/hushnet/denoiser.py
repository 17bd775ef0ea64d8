"""The user-facing denoiser: one engine and one plan, fixed when it is made, for arrays, files and streams.

The path of one channel: resample to 16 kHz -> level gain -> chunks (fixed-statistics models, exact) or
crossfaded segments (per-input models; see ``inference.plan``) through the engine (OpenVINO, onnxruntime or
torch) -> level back -> ``out = enhanced + dry * (input - enhanced)`` -> resample back. Files are read and
written by ``audio``, long ones staged on disk by ``staging``; the push streamer is ``stream``.

This module imports no torch: with the onnx engine, denoising needs neither torch nor safetensors.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from hushnet.audio.arrays import checked_rate, like_input, resample, signal_of
from hushnet.audio.formats import MODEL_RATE, output_format
from hushnet.audio.read import open_audio
from hushnet.audio.write import write_resampled
from hushnet.errors import AudioError
from hushnet.inference.choice import choose_precision, kind_of
from hushnet.inference.engines import Engine, TorchEngine, load_engine
from hushnet.inference.plan import (
    DEFAULT_CHUNK_SECONDS,
    Enhancer,
    Scheme,
    choose_scheme,
    fitted_chunk,
    gains_from_energy,
    silent,
)
from hushnet.models.config import DRY_RANGE, LEVEL_DB_RANGE
from hushnet.precision import detect_cpu
from hushnet.runtime_options import validate_runtime_options
from hushnet.staging import Staging, stage_input
from hushnet.temporaries import check_folder_writable

DEFAULT_MEMORY_BUDGET_MB = 512
# Streams of fixed-statistics models: chunks short enough that no output sample waits for more than
# this much input past it (chunk + receptive radius; 1.28 s for the 64-channel CAN).
STREAM_LATENCY_SECONDS = 1.5
LEVEL_SCOPES = ("recording", "segment")
# What denoising one input can fail with, as one line for the user (the CLI and the server catch these).
DENOISE_ERRORS = (ValueError, OSError, sf.LibsndfileError, RuntimeError, MemoryError)


@dataclass
class FileResult:
    """What happened to one file."""

    input: Path
    output: Path
    seconds: float
    sample_rate: int
    channels: int
    clipped_samples: int = 0
    notes: list[str] = field(default_factory=list)


def _fraction(dry) -> float:
    if (
        isinstance(dry, (bool, np.bool_))
        or not isinstance(dry, (int, float, np.integer, np.floating))
        or not DRY_RANGE[0] <= float(dry) <= DRY_RANGE[1]
    ):
        raise AudioError(f"dry must be between 0 (fully denoised) and 1 (the input unchanged), got {dry!r}")
    return float(dry)


def _level(level_db, model_level: float | None) -> float | None:
    if level_db is None:
        return model_level
    if level_db == "off":
        return None
    if (
        isinstance(level_db, (bool, np.bool_))
        or not isinstance(level_db, (int, float, np.integer, np.floating))
        or not LEVEL_DB_RANGE[0] <= float(level_db) <= LEVEL_DB_RANGE[1]
    ):
        low, high = LEVEL_DB_RANGE
        raise AudioError(f"level must be a dBFS value between {low:g} and {high:g}, or 'off'; got {level_db!r}")
    return float(level_db)


def _check_output(input_path: Path, output_path: Path) -> None:
    """AudioError, before any work, for an output that is the input or that has nowhere to go (a long
    file must not be denoised only to find that)."""
    if output_path.exists() and input_path.exists() and output_path.resolve() == input_path.resolve():
        raise AudioError("output path is the input file; refusing to overwrite it")
    try:
        check_folder_writable(output_path.parent)
    except OSError as error:
        raise AudioError(f"cannot write to {output_path.parent}: {error.strerror or error}") from None


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

    def __init__(
        self,
        model,
        device: str = "cpu",
        memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
        *,
        dry: float | None = None,
        level_db: float | str | None = None,
        level_scope: str = "recording",
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        threads: int | None = None,
        precision: str = "auto",
        _checked: bool = False,
    ) -> None:
        """``model``: an :class:`~hushnet.inference.engines.Engine` (``load_engine``; it runs at its own
        precision), or a torch CAN for the torch engine at ``precision``. ``_checked``: the runtime
        options were validated already (:meth:`from_pretrained`)."""
        if not _checked:
            validate_runtime_options(
                threads=threads, device=str(device), chunk_seconds=chunk_seconds, memory_budget_mb=memory_budget_mb
            )
        if isinstance(model, Engine):
            self.engine = model
        else:
            value, _ = choose_precision(precision, "torch", detect_cpu(), kind_of(model.config.norm), str(device))
            self.engine = TorchEngine(model, device=device, threads=threads, precision=value)
        self.config = self.engine.config
        self.device = str(device)
        self.memory_budget_mb, self.chunk_seconds = memory_budget_mb, chunk_seconds
        self.dry = _fraction(self.config.dry if dry is None else dry)
        self.level_db = _level(level_db, self.config.input_rms_db)
        if level_scope not in LEVEL_SCOPES:
            raise AudioError(f"level scope must be one of {', '.join(LEVEL_SCOPES)}, got {level_scope!r}")
        self.level_scope = level_scope
        self.target_rms = None if self.level_db is None else 10 ** (self.level_db / 20)
        self.scheme = self.scheme_for(level_scope)
        self.prepare()

    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | os.PathLike | None = None,
        device: str = "cpu",
        engine: str = "auto",
        threads: int | None = None,
        precision: str = "auto",
        workers: int = 1,
        **options,
    ) -> "Denoiser":
        """Load a model directory by path, or a shipped model by name (default: the package default),
        once, into ``engine`` at ``precision`` (``auto``: the fastest measured for this CPU class that
        keeps the quality rule, :mod:`hushnet.inference.choice`). ``workers``: threads that will call it at once (the server), each with ``threads``."""
        validate_runtime_options(
            threads=threads,
            device=str(device),
            chunk_seconds=options.get("chunk_seconds"),
            memory_budget_mb=options.get("memory_budget_mb"),
        )
        return cls(
            load_engine(
                path_or_name, engine=engine, device=device, threads=threads, precision=precision, streams=workers
            ),
            device=device,
            _checked=True,
            **options,
        )

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def precision(self) -> str:
        """``float32`` or ``bf16``: the arithmetic the engine runs the network in."""
        return self.engine.precision

    def prepare(self, scheme: Scheme | None = None) -> None:
        """Have the engine ready the input shape of ``scheme`` (default: the file scheme) now (a
        fixed-shape engine compiles it), not at the first file or stream block."""
        scheme = scheme or self.scheme
        self.engine.prepare(scheme.length + 2 * scheme.context if scheme.kind == "chunks" else scheme.length)

    @property
    def model(self):
        """The torch model (torch engine only)."""
        return getattr(self.engine, "model", None)

    def scheme_for(self, level_scope: str, streaming: bool = False) -> Scheme:
        """How signals are processed (chunks or segments) with this level scope; ``streaming``: chunks
        within STREAM_LATENCY_SECONDS of lookahead.

        Chunks are cut to the largest chunk whose input (chunk + receptive radius each side) is one of
        the fixed lengths (15.36 s of output for the 64-channel CAN: inputs of 2^18 samples), and no
        longer than the input length a fixed-shape engine runs best at (its ``chunk_input``)."""
        c = self.config
        per_segment = self.target_rms is not None and level_scope == "segment"
        scheme = choose_scheme(
            c.norm,
            c.sample_rate,
            c.receptive_radius,
            c.segment_seconds,
            c.channels,
            per_segment,
            self.chunk_seconds,
            self.memory_budget_mb,
        )
        if scheme.kind != "chunks":
            return scheme
        radius, target = scheme.context, scheme.length
        if self.engine.chunk_input:
            target = min(target, max(1, self.engine.chunk_input - 2 * radius))
        chunk = fitted_chunk(target, radius)
        if streaming:
            chunk = min(chunk, fitted_chunk(max(1, round(STREAM_LATENCY_SECONDS * c.sample_rate) - radius), radius))
        return Scheme("chunks", chunk, context=radius)

    def enhancer(
        self,
        channels: int,
        energy: tuple[np.ndarray, int] | None = None,
        level_scope: str | None = None,
        streaming: bool = False,
    ) -> Enhancer:
        """The incremental processor of ``channels`` channels; ``energy``: (per-channel sum of squares, samples)
        of the whole recording, which a level per recording needs; ``streaming``: the stream plan (:meth:`scheme_for`)."""
        scope = level_scope or self.level_scope
        per_segment = self.target_rms is not None and scope == "segment"
        gains = None
        if self.target_rms is not None and not per_segment:
            if energy is None:
                raise ValueError("a level per recording needs the recording's energy")
            gains = gains_from_energy(*energy, self.target_rms)
        scheme = self.scheme if scope == self.level_scope and not streaming else self.scheme_for(scope, streaming)
        return Enhancer(
            self.engine,
            scheme,
            channels,
            gains=gains,
            segment_level=self.target_rms if per_segment else None,
            dry=self.dry,
        )

    def denoise(
        self,
        audio: np.ndarray,
        sample_rate: int | float,
        progress: Callable[[int], None] | None = None,
        layout: str = "auto",
    ) -> np.ndarray:
        """Denoise ``audio``; returns the same shape, layout, rate and dtype.

        ``layout``: ``auto`` (default) takes a 2-D array as [channels, samples] or [samples, channels]
        only where one reading has at most 64 channels and the other not (a [2, N] or [N, 2] array
        with N > 64); any other 2-D shape is an AudioError asking for ``channels_first`` or
        ``channels_last``. Integer arrays (int8/16/32, uint8) are read as PCM at their full scale and
        the result comes back in the same integer type (rounded, clipped); floats stay floats.
        """
        audio = np.asarray(audio)
        signal, rate, transposed = signal_of(audio, sample_rate, layout)
        x16 = resample(np.ascontiguousarray(signal), rate, MODEL_RATE)
        if x16.shape[1] == 0:
            raise AudioError(f"too short to denoise: {signal.shape[1]} sample(s) at {rate:g} Hz is under one at 16 kHz")
        energy = (np.square(x16, dtype=np.float64).sum(axis=1), x16.shape[1])
        enhancer = self.enhancer(x16.shape[0], energy)
        out = np.concatenate([y for y, _ in enhancer.blocks(x16, x16.shape[1], progress)], axis=1)
        out[~np.any(signal != 0, axis=1) | silent(*energy)] = 0.0
        out = resample(out, MODEL_RATE, rate)
        if not np.isfinite(out).all():
            raise AudioError("the result is not finite (NaN or infinite samples)")
        return like_input(out, audio, transposed)

    def stream(self, sample_rate: int | float = MODEL_RATE, channels: int = 1):
        """A push streamer (:class:`~hushnet.stream.DenoiseStream`): ``feed(chunk)`` returns what is ready, ``flush()`` the rest."""
        from hushnet.stream import DenoiseStream

        return DenoiseStream(self, checked_rate(sample_rate), channels)

    def denoise_file(
        self,
        input_path: str | os.PathLike,
        output_path: str | os.PathLike,
        progress: Callable[[int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        subtype: str | None = None,
    ) -> FileResult:
        """Denoise one file into ``output_path`` (written atomically; the input is never touched).

        The output keeps the input's sample encoding unless ``subtype`` (e.g. "FLOAT") is given.
        ``on_start`` receives the amount of work (16 kHz samples) once the file is opened.
        """
        input_path, output_path = Path(input_path), Path(output_path)
        _check_output(input_path, output_path)
        with open_audio(input_path) as (handle, info):
            if info.frames == 0:
                raise AudioError("contains no audio samples")
            major, own_subtype = output_format(info, output_path.suffix)
            with Staging(info.channels, math.ceil(info.frames * MODEL_RATE / info.sample_rate) + 64) as staging:
                staged = stage_input(handle, info, staging)
                if on_start is not None:
                    on_start(staged.samples)
                out = staging.allocate("output")
                written = 0
                for y, consumed in self.enhancer(info.channels, staged.energy).blocks(
                    staged.signal, staged.samples, progress
                ):
                    out[:, written : written + y.shape[1]] = y
                    written += y.shape[1]
                    staging.advanced(consumed)
                out = out[:, : staged.samples]
                out[~staged.nonzero | silent(*staged.energy)] = 0.0
                result = FileResult(
                    input_path, output_path, info.seconds, info.sample_rate, info.channels, notes=staged.notes(info)
                )
                result.clipped_samples = write_resampled(
                    out,
                    info.sample_rate,
                    info.frames_read,
                    output_path,
                    major,
                    subtype or own_subtype,
                    staging.advanced,
                )
        if result.clipped_samples:
            result.notes.append(f"{result.clipped_samples} output samples exceeded full scale and were clipped")
        return result
