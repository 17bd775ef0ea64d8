"""The reproducible synthetic test set: held-out speakers mixed with held-out noise recordings.

Everything it uses is in the ``test`` split of :mod:`hushnet.data.splits`, which no training recipe
reads. Additive noise only, at the four SNRs of the Valentini test set (2.5/7.5/12.5/17.5 dB), the
clean speech at its recorded level, 16-bit FLAC like the corpora it is compared with.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from hushnet.data.mixing import random_crop, scale_noise_to_snr
from hushnet.data.sources import AudioCache, impulse_responses, noise_clips, speech_utterances
from hushnet.data.splits import select

TEST_SNRS_DB = (2.5, 7.5, 12.5, 17.5)
DEFAULT_SEED = 2026
DEFAULT_COUNT = 96
MIN_SECONDS, MAX_SECONDS = 1.5, 10.0


def build_test_set(
    data: str | os.PathLike, output: str | os.PathLike, count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED
) -> Path:
    """Write ``clean/``, ``noisy/`` and ``manifest.csv`` under ``output``; same files for the same data and seed."""
    data, output = Path(data), Path(output)
    cache = AudioCache()
    utterances = sorted(select(speech_utterances(data / "speech"), "test"), key=lambda u: u.path.as_posix())
    noises = sorted(select(noise_clips(data / "noise"), "test"), key=lambda n: n.path.as_posix())
    if not utterances or not noises:
        raise ValueError(
            f"'{data}' has no test-split speech or noise (needs speech/ and noise/ with manifests or folders)"
        )
    by_speaker: dict[str, list] = {}
    for utterance in utterances:
        if utterance.seconds == 0 or MIN_SECONDS <= utterance.seconds:
            by_speaker.setdefault(utterance.speaker, []).append(utterance)
    # Draw a noise *source* first (an ESC-10 class, or one recording), then a clip of it, so that
    # the 40 short ESC-10 clips do not outnumber the long recordings.
    noise_groups: dict[str, list] = {}
    for clip in noises:
        noise_groups.setdefault(clip.label if clip.corpus == "esc10" else clip.recording, []).append(clip)
    group_names = sorted(noise_groups)
    rng = np.random.default_rng(seed)
    speakers = sorted(by_speaker)
    speakers = [speakers[i] for i in rng.permutation(len(speakers))]
    for folder in ("clean", "noisy"):
        (output / folder).mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    max_samples = int(MAX_SECONDS * cache.rate)
    for k in range(count):
        speaker = speakers[k % len(speakers)]
        fresh = [u for u in by_speaker[speaker] if u.path not in used] or by_speaker[speaker]
        utterance = fresh[int(rng.integers(len(fresh)))]
        used.add(utterance.path)
        clean = cache(utterance.path)
        if clean.size > max_samples:
            start = int(rng.integers(0, clean.size - max_samples + 1))
            clean = clean[start : start + max_samples]
        group = noise_groups[group_names[int(rng.integers(len(group_names)))]]
        clip = group[int(rng.integers(len(group)))]
        snr_db = TEST_SNRS_DB[k % len(TEST_SNRS_DB)]
        noise = scale_noise_to_snr(clean, random_crop(cache(clip.path), clean.size, rng), snr_db)
        noisy = clean + noise
        peak = float(np.max(np.abs(noisy)))
        gain = 0.99 / peak if peak > 0.99 else 1.0
        name = f"synth_{k:03d}_{speaker}"
        sf.write(output / "clean" / f"{name}.flac", clean * gain, cache.rate, subtype="PCM_16")
        sf.write(output / "noisy" / f"{name}.flac", noisy * gain, cache.rate, subtype="PCM_16")
        rows.append(
            {
                "name": name,
                "clean": f"clean/{name}.flac",
                "noisy": f"noisy/{name}.flac",
                "speaker": speaker,
                "speech": utterance.path.relative_to(data).as_posix(),
                "noise": clip.path.relative_to(data).as_posix(),
                "noise_label": clip.label,
                "snr_db": snr_db,
                "seconds": round(clean.size / cache.rate, 3),
            }
        )
    with open(output / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return output


def reserved_summary(data: str | os.PathLike) -> dict:
    """What the test split holds (for documentation): speakers, noise recordings, rooms, minutes."""
    data = Path(data)
    speech = select(speech_utterances(data / "speech"), "test")
    noise = select(noise_clips(data / "noise"), "test")
    rooms = select(impulse_responses(data / "rir"), "test") if (data / "rir").exists() else []
    return {
        "speakers": sorted({u.speaker for u in speech}),
        "speech_minutes": round(sum(u.seconds for u in speech) / 60, 1),
        "noise_recordings": sorted({n.recording for n in noise if n.corpus != "esc10"}) + ["esc10 fold 5"],
        "noise_minutes": round(sum(n.seconds for n in noise) / 60, 1),
        "rooms": sorted(r.path.stem for r in rooms),
    }
