"""Measured properties of a speech recording: the things that make a "clean" target less than clean.

Each is a plain number per utterance, so that a manifest can carry them and a data builder can filter
on them (``hushnet build-data``):

- ``level_db``: the speech level, the 95th percentile of 32-ms frame RMS levels, DC removed (dBFS);
- ``floor_db``: the noise floor, the 10th percentile of those levels (dBFS); ``snr_db`` is the gap;
- ``bandwidth_hz``: the frequency below which 99 % of the energy lies;
- ``dc``: the mean sample value relative to the RMS (a DC offset of 0.1 is a tenth of the signal);
- ``clipped``: the fraction of samples within 0.1 % of full scale;
- ``silence``: the fraction of frames more than 30 dB below the speech level;
- ``lead_s``, ``trail_s``: silence before the first and after the last speech frame.

The level-in-pauses SNR and the roll-off bandwidth are written here by hand: they are a few lines of
numpy each, and no maintained package computes them on raw arrays without a feature pipeline around
them.
"""

from __future__ import annotations

import numpy as np

FRAME_SECONDS = 0.032
SILENCE_BELOW_DB = 30.0  # a frame this far under the speech level counts as a pause
ENERGY_FRACTION = 0.99
FULL_SCALE = 0.999
PROPERTY_NAMES = ("level_db", "floor_db", "snr_db", "bandwidth_hz", "dc", "clipped", "silence", "lead_s", "trail_s")
_TINY = 1e-10


def frame_levels_db(audio: np.ndarray, rate: int) -> np.ndarray:
    """RMS level of each non-overlapping 32-ms frame, dBFS (a file shorter than a frame is one frame)."""
    frame = max(1, int(FRAME_SECONDS * rate))
    count = max(1, len(audio) // frame)
    frames = np.resize(audio, count * frame).reshape(count, frame) if len(audio) >= frame else audio[None, :]
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + _TINY)


def bandwidth_hz(audio: np.ndarray, rate: int, fraction: float = ENERGY_FRACTION) -> float:
    """The frequency below which ``fraction`` of the signal's energy (DC removed) lies."""
    from scipy.signal import welch

    samples = np.asarray(audio, dtype=np.float64)
    samples = samples - samples.mean()
    if len(samples) < 16 or not np.any(samples):
        return 0.0
    frequencies, power = welch(samples, fs=rate, nperseg=min(1024, len(samples)))
    cumulative = np.cumsum(power)
    return float(frequencies[int(np.searchsorted(cumulative, fraction * cumulative[-1]))])


def measure(audio: np.ndarray, rate: int) -> dict[str, float]:
    """The properties of one mono recording (see the module docstring)."""
    samples = np.asarray(audio, dtype=np.float64).reshape(-1)
    offset = float(samples.mean()) if len(samples) else 0.0
    levels = frame_levels_db(samples - offset, rate)  # the DC offset is a property of its own, not a floor
    level, floor = np.percentile(levels, 95), np.percentile(levels, 10)
    speech = np.flatnonzero(levels > level - SILENCE_BELOW_DB)
    rms = float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
    return {
        "level_db": round(float(level), 2),
        "floor_db": round(float(floor), 2),
        "snr_db": round(float(level - floor), 2),
        "bandwidth_hz": round(bandwidth_hz(samples, rate), 1),
        "dc": round(offset / rms if rms > 0 else 0.0, 5),
        "clipped": round(float(np.mean(np.abs(samples) >= FULL_SCALE)) if len(samples) else 0.0, 6),
        "silence": round(float(np.mean(levels <= level - SILENCE_BELOW_DB)), 4),
        "lead_s": round(float(speech[0] * FRAME_SECONDS) if len(speech) else 0.0, 3),
        "trail_s": round(float((len(levels) - 1 - speech[-1]) * FRAME_SECONDS) if len(speech) else 0.0, 3),
    }


def trim_silence(audio: np.ndarray, rate: int, keep_seconds: float = 0.1) -> np.ndarray:
    """``audio`` without the pauses before its first and after its last speech frame, keeping ``keep_seconds``."""
    levels = frame_levels_db(audio - np.mean(audio), rate)
    speech = np.flatnonzero(levels > np.percentile(levels, 95) - SILENCE_BELOW_DB)
    if not len(speech):
        return audio
    frame = max(1, int(FRAME_SECONDS * rate))
    keep = int(keep_seconds * rate)
    start = max(0, speech[0] * frame - keep)
    stop = min(len(audio), (speech[-1] + 1) * frame + keep)
    return audio[start:stop]
