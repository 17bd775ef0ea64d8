"""Sets for training the loss network: acoustic scenes (single label) and sound tags (multi-label).

Three sources, each giving labelled clips with a recording id (segments of one recording always
share a fold):

- DCASE 2016 task 1, TUT Acoustic Scenes 2016 (``meta.txt``, ``audio/``,
  ``evaluation_setup/fold{k}_train.txt`` / ``fold{k}_evaluate.txt``), 15 scenes;
- DCASE 2016 task 4, CHiME-Home (``chunks/NAME.csv`` with the ``majorityvote`` tag string over
  c, m, f, v, p, b, o; ``chunks/NAME.16kHz.wav``; ``development_chunks_refined.csv`` and
  ``development_chunks_refined_crossval_dcase2016.csv``), 7 tags;
- our own, from ``../shared/data``: scenes = the noise recordings' labels (ESC-10 folds, the split of
  :mod:`hushnet.data.splits` for the rest); tags = random sums of a male and/or a female speaker and
  noise clips of known class, tagged with what was mixed in.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hushnet.data.mixing import random_crop, rms
from hushnet.data.sources import AudioCache, NoiseClip, Utterance, noise_clips, speech_utterances
from hushnet.data.splits import split_of

CHIME_TAGS = ("c", "m", "f", "v", "p", "b", "o")
CHIME_TAG_NAMES = (
    "child speech",
    "adult male speech",
    "adult female speech",
    "video game/tv",
    "percussive sounds",
    "broadband noise",
    "other",
)


@dataclass(frozen=True)
class SceneClip:
    path: Path
    label: int
    recording: str


@dataclass(frozen=True)
class TagClip:
    path: Path
    tags: tuple[int, ...]  # indices of the tags present


# --- DCASE 2016 task 1 ----------------------------------------------------------------------------


def _tab_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines() if line.strip()]


def dcase2016_scenes(root: str | os.PathLike, fold: int = 1) -> tuple[list[SceneClip], list[SceneClip], list[str]]:
    """(train, evaluate, class names) of one cross-validation fold of TUT Acoustic Scenes 2016."""
    root = Path(root)
    meta = root / "meta.txt"
    setup = root / "evaluation_setup"
    if not meta.is_file() or not (setup / f"fold{fold}_train.txt").is_file():
        raise FileNotFoundError(
            f"'{root}' is not a TUT Acoustic Scenes 2016 folder (needs meta.txt and evaluation_setup/fold{fold}_train.txt)"
        )
    recording_of = {row[0]: row[2] if len(row) > 2 else Path(row[0]).stem for row in _tab_rows(meta)}
    names = sorted({row[1] for row in _tab_rows(meta)})

    def clips(list_file: Path) -> list[SceneClip]:
        return [
            SceneClip(root / row[0], names.index(row[1]), recording_of.get(row[0], row[0]))
            for row in _tab_rows(list_file)
        ]

    return clips(setup / f"fold{fold}_train.txt"), clips(setup / f"fold{fold}_evaluate.txt"), names


# --- DCASE 2016 task 4 (CHiME-Home) ------------------------------------------------------------------


def _chunk_tags(chunk_csv: Path) -> tuple[int, ...]:
    with open(chunk_csv, newline="") as handle:
        fields = {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2}
    if "majorityvote" not in fields:
        raise ValueError(f"{chunk_csv}: no majorityvote row")
    return tuple(i for i, tag in enumerate(CHIME_TAGS) if tag in fields["majorityvote"])


def chime_home(root: str | os.PathLike, fold: int = 0) -> tuple[list[TagClip], list[TagClip], list[str]]:
    """(train, evaluate, tag names) of one DCASE 2016 cross-validation fold of CHiME-Home's refined chunks."""
    root = Path(root)
    folds_file = root / "development_chunks_refined_crossval_dcase2016.csv"
    if not (root / "chunks").is_dir() or not folds_file.is_file():
        raise FileNotFoundError(f"'{root}' is not a CHiME-Home folder (needs chunks/ and {folds_file.name})")
    train, evaluate = [], []
    with open(folds_file, newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 3:
                continue
            chunk, chunk_fold = row[1], int(row[2])
            audio = root / "chunks" / f"{chunk}.16kHz.wav"
            if not audio.is_file():
                audio = root / "chunks" / f"{chunk}.48kHz.wav"
            clip = TagClip(audio, _chunk_tags(root / "chunks" / f"{chunk}.csv"))
            (evaluate if chunk_fold == fold else train).append(clip)
    return train, evaluate, list(CHIME_TAG_NAMES)


# --- our own tasks from ../shared/data --------------------------------------------------------------


def noise_scenes(
    data: str | os.PathLike, min_recordings: int = 2
) -> tuple[list[SceneClip], list[SceneClip], list[str]]:
    """Scene task over the noise labels with at least ``min_recordings`` recordings; held out = not train split."""
    clips = noise_clips(Path(data) / "noise")
    recordings: dict[str, set[str]] = {}
    for clip in clips:
        recordings.setdefault(clip.label, set()).add(clip.recording)
    names = sorted(label for label, held in recordings.items() if len(held) >= min_recordings and label != "misc")
    train, held_out = [], []
    for clip in clips:
        if clip.label in names:
            scene = SceneClip(clip.path, names.index(clip.label), clip.recording)
            (train if split_of(clip) == "train" else held_out).append(scene)
    return train, held_out, names


class SceneDataset(torch.utils.data.Dataset):
    """Crops of labelled clips, with gain augmentation; item i depends on (seed, i) only."""

    def __init__(
        self, clips: Sequence[SceneClip], seed: int = 0, gain_db: float = 10.0, cache: AudioCache | None = None
    ) -> None:
        if not clips:
            raise ValueError("no scene clips")
        self.clips, self.seed, self.gain_db = list(clips), seed, gain_db
        self.cache = cache or AudioCache()

    def __len__(self) -> int:
        return len(self.clips)

    def item(self, index: int, samples: int) -> tuple[np.ndarray, int]:
        rng = np.random.default_rng([self.seed, index])
        clip = self.clips[int(rng.integers(len(self.clips)))] if index >= len(self.clips) else self.clips[index]
        audio = random_crop(self.cache(clip.path), samples, rng)
        return (audio * 10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20)).astype(np.float32), clip.label


class TagDataset(torch.utils.data.Dataset):
    """Multi-label clips: a file list (CHiME-Home), or mixtures of speech and classed noise.

    Mixtures: each of "adult male speech" and "adult female speech" is present with probability 1/2,
    each noise class with probability ``noise_probability``; every source at a random level within
    ``level_range_db`` of the others; the tags are what was mixed in (at least one source).
    """

    def __init__(
        self,
        files: Sequence[TagClip] = (),
        speech: Sequence[Utterance] = (),
        noises: Sequence[NoiseClip] = (),
        noise_classes: Sequence[str] = (),
        seed: int = 0,
        noise_probability: float = 0.25,
        level_range_db: float = 20.0,
        gain_db: float = 10.0,
        cache: AudioCache | None = None,
    ) -> None:
        self.files = list(files)
        self.seed, self.noise_probability, self.level_range_db, self.gain_db = (
            seed,
            noise_probability,
            level_range_db,
            gain_db,
        )
        self.cache = cache or AudioCache()
        self.speakers = {sex: [u for u in speech if u.sex == sex] for sex in ("M", "F")}
        self.noise_classes = list(noise_classes)
        self.noises = {name: [n for n in noises if n.label == name] for name in self.noise_classes}
        if not self.files and not (self.speakers["M"] and self.speakers["F"] and all(self.noises.values())):
            raise ValueError("a tag set needs files, or male and female speech and noise clips of every class")

    @property
    def tag_names(self) -> list[str]:
        return (
            list(CHIME_TAG_NAMES) if self.files else ["adult male speech", "adult female speech", *self.noise_classes]
        )

    def __len__(self) -> int:
        return len(self.files) or 10**9

    def item(self, index: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        target = np.zeros(len(self.tag_names), np.float32)
        if self.files:
            clip = (
                self.files[index % len(self.files)]
                if index < len(self.files)
                else self.files[int(rng.integers(len(self.files)))]
            )
            audio = random_crop(self.cache(clip.path), samples, rng)
            target[list(clip.tags)] = 1.0
        else:
            sources = [("M", 0), ("F", 1)] + [(name, 2 + i) for i, name in enumerate(self.noise_classes)]
            present = [s for s in sources if rng.random() < (0.5 if s[1] < 2 else self.noise_probability)]
            if not present:
                present = [sources[int(rng.integers(len(sources)))]]
            audio = np.zeros(samples, np.float32)
            for name, tag in present:
                pool = self.speakers[name] if tag < 2 else self.noises[name]
                signal = random_crop(self.cache(pool[int(rng.integers(len(pool)))].path), samples, rng)
                audio += signal / max(rms(signal), 1e-4) * 10 ** (-rng.uniform(0, self.level_range_db) / 20)
                target[tag] = 1.0
            audio *= 0.05
        return (audio * 10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20)).astype(np.float32), target


def speech_and_noise_tags(
    data: str | os.PathLike, classes: Sequence[str], split: str, seed: int = 0, cache: AudioCache | None = None
) -> TagDataset:
    """Our tagging task on one side of the split (``train``, or ``held-out`` = validation + test)."""
    data = Path(data)
    keep = (lambda item: split_of(item) == "train") if split == "train" else (lambda item: split_of(item) != "train")
    speech = [u for u in speech_utterances(data / "speech") if keep(u)]
    noises = [n for n in noise_clips(data / "noise") if n.label in classes and keep(n)]
    return TagDataset(speech=speech, noises=noises, noise_classes=classes, seed=seed, cache=cache)
