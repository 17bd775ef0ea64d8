"""Work arrays for long recordings: in RAM when small, else memmaps of files unlinked at once.

A staged file is unlinked (and its folder removed) as soon as it is mapped: the mapping keeps the
data, and the OS reclaims the space when the process ends, however it ends (``kill -9`` included).
Folders of dead processes left by the short window before unlinking are removed (``temporaries``).
"""

from __future__ import annotations

import mmap
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from hushnet.audio.formats import AudioInfo
from hushnet.audio.read import read_resampled
from hushnet.errors import AudioError
from hushnet.temporaries import clean_stale_scratch, scratch_folder

# Signals larger than this (bytes at 16 kHz float32, all channels) are staged in memmaps on disk.
IN_MEMORY_LIMIT_BYTES = 64 * 2**20


def clean_stale_staging(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove scratch folders (staging, decoding, serving) in the temp folder whose process is gone; returns them."""
    return clean_stale_scratch(folder)


class Staging:
    """[channels, samples] float32 work arrays of one file.

    Pages touched stay mapped and count toward resident memory, which would grow with the file's length
    (benchmarks/results/inference_long_3h.md);
    ``release()`` hands them back (MADV_DONTNEED; the data stays in the file), so memory stays bounded.
    """

    RELEASE_EVERY = 1 << 22  # samples between releases (16 MB per channel)

    def __init__(self, channels: int, samples: int) -> None:
        self.channels, self.samples = channels, samples
        self.maps: list[np.memmap] = []
        self.on_disk = channels * samples * 4 > IN_MEMORY_LIMIT_BYTES
        self._since_release = 0

    def allocate(self, name: str) -> np.ndarray:
        """A zeroed [channels, samples] array."""
        if not self.on_disk:
            return np.zeros((self.channels, self.samples), dtype=np.float32)
        folder = scratch_folder("stage")  # stale ones of dead processes are removed first
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
        """Hand the touched pages of every map back to the OS."""
        self._since_release = 0
        for array in self.maps:
            if hasattr(array._mmap, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                array._mmap.madvise(mmap.MADV_DONTNEED)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc_info) -> None:
        self.maps.clear()


@dataclass
class StagedInput:
    """A file read at 16 kHz into a staged array, with what was seen while reading it."""

    signal: np.ndarray  # [channels, capacity]; the first ``samples`` hold the file
    samples: int
    sum_of_squares: np.ndarray
    nonzero: np.ndarray  # per channel: any sample not zero
    peak: float

    @property
    def energy(self) -> tuple[np.ndarray, int]:
        return self.sum_of_squares, self.samples

    def notes(self, info: AudioInfo) -> list[str]:
        """What the user should know about the input (clipping, silence, a short file)."""
        notes = []
        if self.peak >= 0.999:
            notes.append("input is clipped (peaks at full scale); clipped speech stays distorted")
        if not self.nonzero.any():
            notes.append("input is digital silence; output is silence")
        if info.frames_read < info.frames:
            notes.append(f"truncated: {info.frames_read} of the {info.frames} frames its header promises could be read")
        return notes


def stage_input(handle: sf.SoundFile, info: AudioInfo, staging: Staging) -> StagedInput:
    """Read the whole file, resampled to 16 kHz, into ``staging``'s input array."""
    staged = staging.allocate("input")
    filled = 0
    sum_of_squares = np.zeros(info.channels, dtype=np.float64)
    nonzero = np.zeros(info.channels, dtype=bool)
    peak = 0.0
    for block in read_resampled(handle, info):
        take = min(block.shape[1], staging.samples - filled)
        staged[:, filled : filled + take] = block[:, :take]
        filled += take
        sum_of_squares += np.square(block[:, :take], dtype=np.float64).sum(axis=1)
        nonzero |= np.any(block != 0, axis=1)
        peak = max(peak, float(np.abs(block).max(initial=0.0)))
        staging.advanced(take)
    if filled == 0:
        raise AudioError("contains no audio samples")
    return StagedInput(staged, filled, sum_of_squares, nonzero, peak)
