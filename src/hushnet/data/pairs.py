"""Noisy/clean file pairs: Valentini noisy-VCTK as downloaded, or any two folders matched by file name."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hushnet.data.sources import AudioCache, audio_files

# Valentini-Botinhao et al.'s folder names, as the Edinburgh DataShare zips unpack.
VALENTINI_FOLDERS = {
    "train": [
        ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
        ("clean_trainset_56spk_wav", "noisy_trainset_56spk_wav"),
    ],
    "test": [("clean_testset_wav", "noisy_testset_wav")],
}
# Speakers kept out of Valentini training for validation (the split facebookresearch/denoiser and
# CMGAN use is by speaker too; these two are in the 28-speaker set).
VALENTINI_VALIDATION_SPEAKERS = ("p286", "p287")
_SPEAKER = re.compile(r"^(p\d+)_")


def folder_pairs(clean: str | os.PathLike, noisy: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(clean, noisy) paths matched by file name (without extension); unmatched files raise with a list."""
    clean_files = {p.relative_to(clean).with_suffix("").as_posix(): p for p in audio_files(Path(clean))}
    noisy_files = {p.relative_to(noisy).with_suffix("").as_posix(): p for p in audio_files(Path(noisy))}
    if not clean_files:
        raise FileNotFoundError(f"no audio files in '{clean}'")
    unmatched = sorted(set(clean_files) ^ set(noisy_files))
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        raise ValueError(f"{len(unmatched)} files have no partner between '{clean}' and '{noisy}': {shown}")
    return [(clean_files[name], noisy_files[name]) for name in sorted(clean_files)]


def valentini_pairs(root: str | os.PathLike, subset: str = "train") -> list[tuple[Path, Path]]:
    """Pairs of the Valentini noisy-VCTK corpus under ``root`` (the folder holding the unzipped sets)."""
    root = Path(root)
    for clean_name, noisy_name in VALENTINI_FOLDERS[subset]:
        if (root / clean_name).is_dir() and (root / noisy_name).is_dir():
            return folder_pairs(root / clean_name, root / noisy_name)
    expected = " or ".join(f"{c}/ + {n}/" for c, n in VALENTINI_FOLDERS[subset])
    raise FileNotFoundError(f"'{root}' is not a Valentini folder: expected {expected}")


def speaker_of(path: Path) -> str:
    match = _SPEAKER.match(path.name)
    return match.group(1) if match else path.parent.name


def split_pairs(pairs: Sequence[tuple[Path, Path]], validation_speakers: Sequence[str]) -> tuple[list, list]:
    """(training, validation) pairs, split by speaker."""
    held = set(validation_speakers)
    training = [p for p in pairs if speaker_of(p[0]) not in held]
    validation = [p for p in pairs if speaker_of(p[0]) in held]
    return training, validation


class PairDataset(torch.utils.data.Dataset):
    """Random ``segment_samples`` crops of file pairs, resampled to 16 kHz on first read and kept.

    Item ``i`` is pair ``permutation(epoch)[i % n]`` with ``epoch = i // n``: an endless, seeded
    shuffle, so a global sample index is a complete data position. Short files are zero-padded.
    """

    def __init__(
        self, pairs: Sequence[tuple[Path, Path]], segment_samples: int, seed: int = 0, cache: AudioCache | None = None
    ) -> None:
        if not pairs:
            raise ValueError("no file pairs")
        self.pairs = list(pairs)
        self.segment_samples = segment_samples
        self.seed = seed
        self.cache = cache or AudioCache()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        count = len(self.pairs)
        order = np.random.default_rng([self.seed, index // count]).permutation(count)
        clean_path, noisy_path = self.pairs[int(order[index % count])]
        clean, noisy = self.cache(clean_path), self.cache(noisy_path)
        length = min(clean.size, noisy.size)
        segment = self.segment_samples
        if length < segment:
            pad = (0, segment - length)
            return {"noisy": np.pad(noisy[:length], pad), "clean": np.pad(clean[:length], pad)}
        start = int(np.random.default_rng([self.seed, index, 1]).integers(0, length - segment + 1))
        return {"noisy": noisy[start : start + segment].copy(), "clean": clean[start : start + segment].copy()}
