"""A derived training-data folder: the speech of a ``../shared/data``-style folder measured, filtered and cleaned.

The source stays untouched (the shared folder is read-only): the result is a folder with

- ``speech/properties.csv``: every source utterance with its measured properties
  (:mod:`hushnet.data.properties`), whether it was kept and why not;
- ``speech/manifest.csv``: the kept utterances, the source's columns plus the properties; a row's
  path is the source file itself unless a cleaning step changed the audio, when it is a FLAC under
  ``speech/audio/``;
- ``noise/``, ``rir/``, ``scenes/``: links to the source's folders, so that ``--data OUTPUT`` trains
  on the same noise and rooms;
- ``build.json``: the options it was built with (rebuilds it: ``hushnet build-data --config``-free,
  every option is a flag).

The build is written in a temporary folder beside the output and renamed into place, so a failed or
interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hushnet.data.properties import PROPERTY_NAMES, measure, trim_silence

LINKED_FOLDERS = ("noise", "rir", "scenes")


@dataclass
class Selection:
    """Which utterances are kept, and what is done to them; ``None`` means no limit."""

    sets: list[str] | None = None
    exclude_sets: list[str] | None = None
    speakers: list[str] | None = None
    min_snr_db: float | None = None
    min_bandwidth_hz: float | None = None
    max_silence: float | None = None
    max_clipped: float | None = None
    max_dc: float | None = None
    remove_dc: bool = False
    trim_silence: bool = False

    def rejection(self, row: dict) -> str:
        """Why ``row`` (a manifest row with its properties) is left out, or '' when it is kept."""
        if self.sets is not None and row.get("set") not in self.sets:
            return "set not selected"
        if self.exclude_sets and row.get("set") in self.exclude_sets:
            return "set excluded"
        if self.speakers is not None and row.get("speaker") not in self.speakers:
            return "speaker not selected"
        limits = (
            ("snr_db", self.min_snr_db, lambda value, limit: value >= limit, "SNR below"),
            ("bandwidth_hz", self.min_bandwidth_hz, lambda value, limit: value >= limit, "bandwidth below"),
            ("silence", self.max_silence, lambda value, limit: value <= limit, "silence above"),
            ("clipped", self.max_clipped, lambda value, limit: value <= limit, "clipping above"),
            ("dc", self.max_dc, lambda value, limit: abs(value) <= limit, "DC offset above"),
        )
        for name, limit, passes, words in limits:
            if limit is not None and not passes(float(row[name]), limit):
                return f"{words} {limit:g}"
        return ""

    @property
    def changes_audio(self) -> bool:
        return self.remove_dc or self.trim_silence


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as handle:
        return list(csv.DictReader(handle))


def _speech_rows(speech: Path) -> list[dict]:
    """The rows of a speech folder with absolute paths (its manifest, or every audio file of the folder)."""
    from hushnet.data.sources import speech_utterances

    if not speech.is_dir():
        raise FileNotFoundError(f"no speech folder at '{speech}'")
    manifest = speech / "manifest.csv"
    if manifest.is_file():
        rows = _rows(manifest)
        for row in rows:
            row["path"] = str((manifest.parent / row["path"]).resolve())
        return rows
    return [
        {"path": str(u.path.resolve()), "set": u.corpus, "speaker": u.speaker, "sex": u.sex}
        for u in speech_utterances(speech)
    ]


def measure_rows(rows: list[dict], rate: int = 16000) -> list[dict]:
    """Each row with its measured properties (and ``seconds``) added."""
    from hushnet.audio.read import read_audio

    measured = []
    for row in rows:
        audio, _ = read_audio(row["path"], rate)
        mono = audio.mean(axis=0)
        measured.append({**row, "seconds": f"{len(mono) / rate:.3f}", **measure(mono, rate)})
    return measured


def _clean(row: dict, selection: Selection, folder: Path, source_speech: Path, rate: int) -> dict:
    """Apply the selection's audio changes to one kept row; its new path is relative to ``folder``."""
    import soundfile as sf

    from hushnet.audio.read import read_audio

    audio, _ = read_audio(row["path"], rate)
    mono = audio.mean(axis=0).astype(np.float64)
    if selection.remove_dc:
        mono = mono - mono.mean()
    if selection.trim_silence:
        mono = trim_silence(mono, rate)
    try:
        relative = Path(row["path"]).relative_to(source_speech.resolve()).with_suffix(".flac")
    except ValueError:
        relative = Path(Path(row["path"]).name).with_suffix(".flac")
    target = folder / "audio" / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, np.clip(mono, -1.0, 1.0).astype(np.float32), rate, subtype="PCM_16")
    return {**row, **measure(mono, rate), "seconds": f"{len(mono) / rate:.3f}", "path": str(Path("audio") / relative)}


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def build(
    source: str | os.PathLike,
    output: str | os.PathLike,
    selection: Selection,
    extra_speech: list[str | os.PathLike] = (),
    rate: int = 16000,
) -> dict:
    """Write the derived folder ``output`` from ``source``; returns a summary (kept count and hours per set).

    ``extra_speech``: more speech folders (a manifest of the same columns, or audio files) whose
    utterances join the source's before the selection.

    Refuses an ``output`` that exists and was not made by this function (no ``build.json``), so a
    user's folder is never replaced.
    """
    source, output = Path(source), Path(output)
    if not (source / "speech").is_dir():
        raise FileNotFoundError(f"'{source}' has no speech/ folder")
    if output.exists() and not (output / "build.json").is_file():
        raise FileExistsError(f"'{output}' exists and is not a folder made by hushnet build-data: give a new -o")
    rows = _speech_rows(source / "speech")
    for folder in extra_speech:
        rows += _speech_rows(Path(folder))
    rows = measure_rows(rows, rate)
    if not rows:
        raise ValueError(f"no audio in {source / 'speech'}")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        speech = staging / "speech"
        speech.mkdir()
        kept, table = [], []
        for row in rows:
            why = selection.rejection(row)
            table.append({**row, "kept": int(not why), "why": why})
            if not why:
                kept.append(_clean(row, selection, speech, source / "speech", rate) if selection.changes_audio else row)
        if not kept:
            raise ValueError("no utterance left after the selection")
        _write_csv(speech / "properties.csv", table)
        _write_csv(speech / "manifest.csv", kept)
        for name in LINKED_FOLDERS:
            if (source / name).is_dir():
                (staging / name).symlink_to((source / name).resolve(), target_is_directory=True)
        summary = _summary(kept)
        record = {
            "source": str(source.resolve()),
            "extra_speech": [str(Path(folder).resolve()) for folder in extra_speech],
            "selection": asdict(selection),
            "kept": summary,
        }
        (staging / "build.json").write_text(json.dumps(record, indent=2) + "\n")
        if output.exists():
            shutil.rmtree(output)
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _summary(rows: list[dict]) -> dict:
    sets: dict[str, dict] = {}
    for row in rows:
        entry = sets.setdefault(row.get("set", ""), {"utterances": 0, "hours": 0.0, "speakers": set()})
        entry["utterances"] += 1
        entry["hours"] += float(row["seconds"]) / 3600
        entry["speakers"].add(row.get("speaker", ""))
    return {
        name: {"utterances": e["utterances"], "hours": round(e["hours"], 4), "speakers": len(e["speakers"])}
        for name, e in sorted(sets.items())
    }


def property_table(rows: list[dict], group: str = "set") -> list[dict]:
    """Per ``group`` value: hours and the median of each property (for the data report)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get(group, ""), []).append(row)
    table = []
    for name, members in sorted(groups.items()):
        entry = {group: name, "utterances": len(members), "hours": sum(float(r["seconds"]) for r in members) / 3600}
        for prop in PROPERTY_NAMES:
            entry[prop] = float(np.median([float(r[prop]) for r in members]))
        table.append(entry)
    return table
