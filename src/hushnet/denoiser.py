"""The user-facing denoiser: a model plus everything between it and real recordings.

Any sample rate (resampled to the model's 16 kHz and back), any number of channels (each denoised on
its own), any length (streamed in bounded memory; long recordings are staged at 16 kHz in a temporary
file on disk rather than in RAM), any level (for models trained with level normalisation).
"""

from __future__ import annotations

import math
import mmap
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soxr
import torch

from hushnet.audio import MODEL_RATE, AtomicAudioWriter, AudioError, open_audio, output_format, read_resampled, resample
from hushnet.model_dir import load_model
from hushnet.inference import DEFAULT_BLOCK, DEFAULT_MEMORY_BUDGET_MB, enhance, per_input_passes
from hushnet.models.can import CAN

# Signals larger than this (bytes at 16 kHz float32, all channels) are staged in memmaps on disk.
IN_MEMORY_LIMIT_BYTES = 64 * 2**20


@dataclass
class FileResult:
    """What happened to one file."""

    input: Path
    output: Path
    seconds: float
    sample_rate: int
    channels: int
    passes: int
    clipped_samples: int = 0
    notes: list[str] = field(default_factory=list)


class _Staging:
    """[channels, samples] float32 work arrays: in RAM when small, else memmaps in a temporary folder.

    A long file's memmaps are touched once from start to end, yet every page touched stays mapped and
    counts toward the process's resident memory (a 3-hour file reached 1.6 GB). ``release()`` unmaps
    them (MADV_DONTNEED): for a shared file mapping the data stays in the page cache and on disk, and a
    later access faults it back in, so memory stays bounded whatever the length.
    """

    RELEASE_EVERY = 1 << 22  # samples between releases (16 MB per channel)

    def __init__(self, channels: int, samples: int) -> None:
        self.channels, self.samples = channels, samples
        self.maps: list[np.memmap] = []
        self.folder = None if channels * samples * 4 <= IN_MEMORY_LIMIT_BYTES else tempfile.TemporaryDirectory(prefix="hushnet-stage-")
        self._since_release = 0

    def allocate(self, name: str) -> np.ndarray:
        if self.folder is None:
            return np.zeros((self.channels, self.samples), dtype=np.float32)
        array = np.lib.format.open_memmap(os.path.join(self.folder.name, f"{name}.npy"), mode="w+", dtype=np.float32, shape=(self.channels, self.samples))
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
        if self.folder is not None:
            self.folder.cleanup()


class Denoiser:
    """Denoise arrays and files with a CAN model.

    >>> denoiser = Denoiser.from_pretrained()          # the model shipped in the package
    >>> clean = denoiser.denoise(noisy, sample_rate)   # [samples] or [channels, samples]
    """

    def __init__(self, model: CAN, device: str | torch.device = "cpu", memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, block: int = DEFAULT_BLOCK) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.memory_budget_mb = memory_budget_mb
        self.block = block

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike | None = None, device: str | torch.device = "cpu", **options) -> "Denoiser":
        """Load a model directory by path, or a shipped model by name (default: the package default)."""
        return cls(load_model(path_or_name, kind="can"), device=device, **options)

    @property
    def config(self):
        return self.model.config

    def passes(self, samples_16k: int) -> int:
        """Streaming passes over the signal this model needs for a file of that length at 16 kHz."""
        if self.config.norm == "batch":
            return 1
        return per_input_passes(samples_16k, self.memory_budget_mb, self.model)

    def _level_gain(self, sum_of_squares: float, count: int) -> float:
        """Gain that brings the input to the model's training level (1 for models without one)."""
        if self.config.input_rms_db is None or count == 0 or sum_of_squares <= 0:
            return 1.0
        rms = math.sqrt(sum_of_squares / count)
        return 10 ** (self.config.input_rms_db / 20) / rms

    def _enhance_staged(self, signal: np.ndarray, out: np.ndarray, silent: np.ndarray, gain: float, progress: Callable[[int], None] | None,
                        touched: Callable[[int], None] = lambda samples: None) -> None:
        """Enhance a staged 16 kHz signal in place of ``out``; silent channels stay silent.

        ``touched`` hears of every stretch of the staged arrays swept outside the network (level
        scaling), so that staged memmaps can hand their pages back (see ``_Staging``)."""
        step = 1 << 20
        if gain != 1.0:
            for start in range(0, signal.shape[1], step):
                signal[:, start : start + step] *= gain
                touched(step)
        enhance(self.model, signal, out, self.memory_budget_mb, self.block, progress)
        for start in range(0, out.shape[1], step):
            if gain != 1.0:
                out[:, start : start + step] /= gain
            out[silent, start : start + step] = 0.0
            touched(step)

    def denoise(self, audio: np.ndarray, sample_rate: int, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Denoise ``audio`` ([samples] or [channels, samples], any rate); returns the same shape and rate."""
        audio = np.asarray(audio)
        if audio.ndim not in (1, 2) or audio.size == 0:
            raise AudioError("audio must be a non-empty [samples] or [channels, samples] array")
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise AudioError(f"invalid sample rate {sample_rate!r}")
        if not np.isfinite(audio).all():
            raise AudioError("contains NaN or infinite samples")
        signal = audio[None] if audio.ndim == 1 else audio
        length = signal.shape[1]
        x16 = resample(signal.astype(np.float32), sample_rate, MODEL_RATE)
        silent = ~np.any(signal != 0, axis=1)
        gain = self._level_gain(float(np.square(x16, dtype=np.float64).sum()), x16.size)
        out = np.empty_like(x16)
        self._enhance_staged(x16, out, silent, gain, progress)
        y = resample(out, MODEL_RATE, sample_rate)
        y = y[:, :length] if y.shape[1] >= length else np.pad(y, ((0, 0), (0, length - y.shape[1])))
        return y[0] if audio.ndim == 1 else y

    def denoise_file(self, input_path: str | os.PathLike, output_path: str | os.PathLike, progress: Callable[[int], None] | None = None,
                     on_start: Callable[[int], None] | None = None, subtype: str | None = None) -> FileResult:
        """Denoise one file into ``output_path`` (written atomically; the input is never touched).

        The output keeps the input's sample encoding unless ``subtype`` (e.g. "FLOAT") is given.
        ``on_start`` receives the amount of work (16 kHz samples x passes) once the file is opened.
        """
        input_path, output_path = Path(input_path), Path(output_path)
        if output_path.exists() and input_path.exists() and output_path.resolve() == input_path.resolve():
            raise AudioError("output path is the input file; refusing to overwrite it")
        with open_audio(input_path) as (handle, info):
            if info.frames == 0:
                raise AudioError("contains no audio samples")
            major, own_subtype = output_format(info, output_path.suffix)
            subtype = subtype or own_subtype
            capacity = math.ceil(info.frames * MODEL_RATE / info.sample_rate) + 64
            with _Staging(info.channels, capacity) as staging:
                staged = staging.allocate("input")
                filled = 0
                sum_of_squares = 0.0
                nonzero = np.zeros(info.channels, dtype=bool)
                peak = 0.0
                for block in read_resampled(handle, info):
                    take = min(block.shape[1], capacity - filled)
                    staged[:, filled : filled + take] = block[:, :take]
                    filled += take
                    sum_of_squares += float(np.square(block, dtype=np.float64).sum())
                    nonzero |= np.any(block != 0, axis=1)
                    peak = max(peak, float(np.abs(block).max(initial=0.0)))
                    staging.advanced(take)
                if filled == 0:
                    raise AudioError("contains no audio samples")
                signal = staged[:, :filled]
                passes = self.passes(filled)
                if on_start is not None:
                    on_start(filled * passes)
                out = staging.allocate("output")[:, :filled]

                def advanced(samples: int) -> None:
                    staging.advanced(samples)
                    if progress is not None:
                        progress(samples)

                self._enhance_staged(signal, out, ~nonzero, self._level_gain(sum_of_squares, signal.size), advanced, staging.advanced)
                result = FileResult(input_path, output_path, info.seconds, info.sample_rate, info.channels, passes)
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
