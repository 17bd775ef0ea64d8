"""Where audio comes from: manifests of ``../shared/data`` style, plain folders, and a decoded-audio cache.

Knows nothing of models. Every dataset reads audio through :class:`AudioCache`, which decodes a file
once (resampled to 16 kHz, channels averaged) and keeps it.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from hushnet.audio.formats import AUDIO_EXTENSIONS, FFMPEG_ONLY_EXTENSIONS, MODEL_RATE
from hushnet.audio.read import read_audio

log = logging.getLogger(__name__)
_SEGMENT_SUFFIX = re.compile(r"_s\d+$")


@dataclass(frozen=True)
class Utterance:
    """One clean speech file."""

    path: Path
    speaker: str
    sex: str = ""
    corpus: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class NoiseClip:
    """One noise file; ``recording`` names the original recording its segment was cut from."""

    path: Path
    label: str
    recording: str
    corpus: str = ""
    fold: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ImpulseResponse:
    path: Path
    room: str
    corpus: str = ""


# The trainers' default data: the shared folder beside a checkout (relative to the working folder).
DEFAULT_DATA = "../shared/data"
DATA_HELP = (
    "folder with speech/, noise/ [, rir/] to mix on the fly; a relative path is taken from the working folder, "
    "so outside a checkout beside shared/ give your own"
)


def check_data_root(data: str | os.PathLike | None, flag: str = "--data") -> Path:
    """``data`` as a folder with speech/ and noise/, or a FileNotFoundError naming ``flag``.

    The trainers' default (``../shared/data``) is relative to the working folder: it only exists in
    a checkout beside the shared data, so the message says which flag to give.
    """
    if data is None:
        raise FileNotFoundError(f"no training data: give {flag} FOLDER with speech/ and noise/")
    root = Path(data)
    if not (root / "speech").is_dir() or not (root / "noise").is_dir():
        where = f" (from {Path.cwd()})" if not root.is_absolute() else ""
        raise FileNotFoundError(
            f"{flag} '{root}'{where} needs speech/ and noise/ folders (with manifest.csv or audio files): "
            f"give {flag} FOLDER"
        )
    return root


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as handle:
        return list(csv.DictReader(handle))


def _manifest_of(source: Path) -> Path | None:
    if source.is_file() and source.suffix == ".csv":
        return source
    if (source / "manifest.csv").is_file():
        return source / "manifest.csv"
    return None


def audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder``, recursively, in a stable order. Names with an audio extension that
    are not regular files (a FIFO would block the reader) or whose header soundfile cannot read are
    skipped with one ``note:`` line naming them, not found mid-training."""
    usable, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        if path.is_dir():
            continue
        if not path.is_file():
            skipped.append(f"{path.name} (not a regular file)")
            continue
        if path.suffix.lower() not in FFMPEG_ONLY_EXTENSIONS:  # those need ffmpeg to tell: read when used
            try:
                sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError, OSError, ValueError):
                skipped.append(f"{path.name} (not readable audio)")
                continue
        usable.append(path)
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        log.warning("note: skipping %d file%s in %s: %s", len(skipped), "s" if len(skipped) > 1 else "", folder, shown)
    return usable


def speech_utterances(source: str | os.PathLike) -> list[Utterance]:
    """Utterances from a manifest (path, speaker[, sex, set, seconds]) or a folder.

    In a folder without a manifest the speaker is the file's parent folder name (LibriSpeech, VCTK
    and most corpora are laid out that way), or the file name prefix before ``_`` for flat folders.
    """
    source = Path(source)
    manifest = _manifest_of(source)
    if manifest is not None:
        root = manifest.parent
        return [
            Utterance(
                root / r["path"],
                r.get("speaker") or Path(r["path"]).parent.name,
                r.get("sex", ""),
                r.get("set", ""),
                float(r.get("seconds") or 0),
            )
            for r in _rows(manifest)
        ]
    if not source.is_dir():
        raise FileNotFoundError(f"no speech folder or manifest at '{source}'")
    utterances = []
    for path in audio_files(source):
        speaker = path.parent.name if path.parent != source else path.stem.split("_")[0]
        utterances.append(Utterance(path, speaker, corpus=source.name))
    return utterances


def noise_clips(source: str | os.PathLike) -> list[NoiseClip]:
    """Noise clips from a manifest (path, label[, fold, set]) or a folder (label = parent folder)."""
    source = Path(source)
    manifest = _manifest_of(source)
    if manifest is not None:
        root = manifest.parent
        clips = []
        for r in _rows(manifest):
            recording = _SEGMENT_SUFFIX.sub("", Path(r["path"]).with_suffix("").as_posix())
            clips.append(
                NoiseClip(
                    root / r["path"],
                    r.get("label", ""),
                    recording,
                    r.get("set", ""),
                    r.get("fold", ""),
                    float(r.get("seconds") or 0),
                )
            )
        return clips
    if not source.is_dir():
        raise FileNotFoundError(f"no noise folder or manifest at '{source}'")
    return [
        NoiseClip(
            p, p.parent.name, _SEGMENT_SUFFIX.sub("", p.relative_to(source).with_suffix("").as_posix()), source.name
        )
        for p in audio_files(source)
    ]


def impulse_responses(source: str | os.PathLike) -> list[ImpulseResponse]:
    source = Path(source)
    manifest = _manifest_of(source)
    if manifest is not None:
        return [
            ImpulseResponse(manifest.parent / r["path"], r.get("room", ""), r.get("set", "")) for r in _rows(manifest)
        ]
    if not source.is_dir():
        raise FileNotFoundError(f"no impulse-response folder or manifest at '{source}'")
    return [ImpulseResponse(p, p.stem, source.name) for p in audio_files(source)]


class AudioCache:
    """Decodes each file once to float32 mono at 16 kHz and keeps it (our sets are ~1 GB decoded at most)."""

    def __init__(self, rate: int = MODEL_RATE) -> None:
        self.rate = rate
        self._store: dict[Path, np.ndarray] = {}

    def __call__(self, path: Path) -> np.ndarray:
        samples = self._store.get(path)
        if samples is None:
            audio, _ = read_audio(path, self.rate)
            samples = np.ascontiguousarray(audio.mean(axis=0), dtype=np.float32)
            self._store[path] = samples
        return samples
