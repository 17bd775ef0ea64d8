"""What the server renders from a finished file: dry/wet mixes, spectrograms, the ZIP of a job.

Mixes are ``enhanced + dry * (input - enhanced)`` at the upload's rate, in the output's format,
cached per file (a few dry values); spectrograms are small pictures of any length, for the page.
"""

from __future__ import annotations

import base64
import math
import secrets
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from hushnet.audio.formats import MODEL_RATE
from hushnet.audio.read import open_audio, read_resampled
from hushnet.audio.write import AtomicAudioWriter
from hushnet.serve.jobs import FileEntry, Job, JobStore, denoised_name

MAX_MIXES_PER_FILE = 4  # cached dry/wet renders kept per file
SPECTROGRAM_ROWS = 128
SPECTROGRAM_COLUMNS = 800
SPECTROGRAM_RANGE_DB = 80.0
_FFT = 512
_HOP = 256


def mixed(store: JobStore, job: Job, entry: FileEntry, dry: float) -> Path:
    """The output with ``dry`` of the input mixed back: enhanced + dry * (input - enhanced).

    Renders are cached per file (a few dry values), in the output's own format and rate."""
    key = int(round(dry * 100))
    if key == 0:
        return entry.output
    with store.using(job), entry.lock:
        if key in entry.mixes and entry.mixes[key].exists():
            entry.mixes.move_to_end(key)
            return entry.mixes[key]
        info = sf.info(str(entry.output))
        path = job.folder / f"{entry.index}.mix{key:03d}{entry.output.suffix}"
        writer = AtomicAudioWriter(path, info.samplerate, info.channels, info.format, info.subtype)
        try:
            for block in mixed_blocks(entry, key / 100):
                writer.write(block)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        entry.mixes[key] = path
        while len(entry.mixes) > MAX_MIXES_PER_FILE:
            _, old = entry.mixes.popitem(last=False)
            old.unlink(missing_ok=True)
        return path


def spectrogram(store: JobStore, job: Job, entry: FileEntry, which: str, dry: float = 0.0) -> dict:
    """A log-power spectrogram of the input or the (mixed) output, for the page to draw; JobDeleted
    when the job is deleted first (its files are kept until the picture is made).

    Both share the input's top level, so that what was removed shows as darker regions."""
    with store.using(job):
        return _spectrogram(entry, which, dry)


def _spectrogram(entry: FileEntry, which: str, dry: float) -> dict:
    key = (which, int(round(dry * 100)) if which == "output" else 0)
    with entry.lock:
        if key in entry.spectrograms:
            return entry.spectrograms[key]
    if ("input", 0) not in entry.spectrograms:
        power = _spectrogram_power(mixed_blocks(entry, 1.0), entry.frames, entry.sample_rate)
        entry.spectrograms[("input", 0)] = _encode(power, entry.seconds, None)
    if which == "input":
        return entry.spectrograms[("input", 0)]
    power = _spectrogram_power(mixed_blocks(entry, key[1] / 100), entry.frames, entry.sample_rate)
    result = _encode(power, entry.seconds, entry.spectrograms[("input", 0)]["top_db"])
    with entry.lock:
        if len(entry.spectrograms) > 2 * MAX_MIXES_PER_FILE:
            entry.spectrograms = {("input", 0): entry.spectrograms[("input", 0)]}
        entry.spectrograms[key] = result
    return result


def zip_outputs(store: JobStore, job: Job, dry: list[float]) -> Path:
    """One ZIP of every denoised file (with its dry value), named as the CLI names outputs."""
    path = job.folder / f"outputs-{secrets.token_hex(4)}.zip"
    names: set[str] = set()
    with store.using(job), zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for entry in job.files:
            if entry.state != "done":
                continue
            name = denoised_name(entry.name, entry.output.suffix)
            while name in names:  # two uploads of the same name
                name = f"{entry.index + 1}_{name}"
            names.add(name)
            archive.write(mixed(store, job, entry, dry[entry.index] if len(dry) > 1 else dry[0]), name)
    return path


def mixed_blocks(entry: FileEntry, dry: float) -> Iterator[np.ndarray]:
    """[channels, samples] blocks of enhanced + dry * (input - enhanced) at the upload's rate.

    The input is read with the CLI's reader; ``dry`` 0 reads only the output, 1 only the input."""
    with sf.SoundFile(str(entry.output)) as output:
        if dry == 0:
            while True:
                block = output.read(1 << 18, dtype="float32", always_2d=True)
                if not block.shape[0]:
                    return
                yield block.T
        with open_audio(entry.input) as (handle, info):
            for block in read_resampled(handle, info, rate=info.sample_rate):
                if dry == 1:
                    yield block[:, : max(0, output.frames - output.tell())]
                    output.seek(min(output.frames, output.tell() + block.shape[1]))
                    continue
                enhanced = output.read(block.shape[1], dtype="float32", always_2d=True).T
                block = block[:, : enhanced.shape[1]]
                yield enhanced + np.float32(dry) * (block - enhanced)


def _spectrogram_power(blocks: Iterator[np.ndarray], frames: int, rate: int) -> np.ndarray:
    """Mean power per (column, bin): the mono mix at 16 kHz, 512-point Hann frames, hop 256,
    frames averaged into at most SPECTROGRAM_COLUMNS columns (so any length gives a small picture)."""
    expected = max(1, math.ceil(frames * MODEL_RATE / max(rate, 1) / _HOP))
    columns = min(SPECTROGRAM_COLUMNS, expected)
    sums = np.zeros((columns, _FFT // 2 + 1))
    counts = np.zeros(columns)
    window = np.hanning(_FFT).astype(np.float32)
    scale = (window.sum() / 2) ** 2  # a full-scale sine peaks near 0 dB
    resampler = None if rate == MODEL_RATE else soxr.ResampleStream(rate, MODEL_RATE, 1, dtype="float32", quality="HQ")
    pending = np.zeros(0, dtype=np.float32)
    frame_index = 0

    def consume(samples: np.ndarray, last: bool) -> None:
        nonlocal pending, frame_index
        signal = np.concatenate([pending, samples])
        if last and signal.size and (signal.size < _FFT or (signal.size - _FFT) % _HOP):
            # the tail: zero-pad to whole frames so that the last samples show too
            signal = np.pad(signal, (0, _FFT + (-max(signal.size - _FFT, 0)) % _HOP - min(signal.size, _FFT)))
        count = 0 if signal.size < _FFT else 1 + (signal.size - _FFT) // _HOP
        if count:
            framed = np.lib.stride_tricks.sliding_window_view(signal, _FFT)[::_HOP][:count]
            power = np.abs(np.fft.rfft(framed * window, axis=1)) ** 2 / scale
            where = np.minimum((np.arange(frame_index, frame_index + count) * columns) // expected, columns - 1)
            np.add.at(sums, where, power)
            np.add.at(counts, where, 1)
            frame_index += count
        pending = signal[count * _HOP :]

    for block in blocks:
        mono = block.mean(axis=0).astype(np.float32)
        consume(mono if resampler is None else resampler.resample_chunk(mono), False)
    consume(
        np.zeros(0, np.float32) if resampler is None else resampler.resample_chunk(np.zeros(0, np.float32), last=True),
        True,
    )
    used = counts > 0
    sums[used] /= counts[used, None]
    # 257 bins to 128 rows (pairs of bins above DC), low frequencies first.
    return sums[:, 1:].reshape(columns, SPECTROGRAM_ROWS, 2).mean(axis=2)


def _encode(power: np.ndarray, seconds: float, top_db: float | None) -> dict:
    """dB values as one byte each (0 = top - 80 dB or below, 255 = top), base64, row 0 the lowest frequency."""
    db = 10 * np.log10(power + 1e-12)
    if top_db is None:
        top_db = float(db.max()) if db.size else 0.0
    scaled = np.clip((db - (top_db - SPECTROGRAM_RANGE_DB)) / SPECTROGRAM_RANGE_DB, 0, 1)
    data = np.round(scaled.T * 255).astype(np.uint8)  # [rows, columns]
    return {
        "rows": data.shape[0],
        "columns": data.shape[1],
        "seconds": seconds,
        "max_hz": MODEL_RATE // 2,
        "top_db": round(top_db, 2),
        "range_db": SPECTROGRAM_RANGE_DB,
        "data": base64.b64encode(data.tobytes()).decode("ascii"),
    }
