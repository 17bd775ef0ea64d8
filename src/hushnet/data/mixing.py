"""On-the-fly noisy mixtures: clean speech + noise (or babble) at a drawn SNR, optional room reverb.

Item ``i`` of a :class:`MixtureDataset` depends only on (seed, i): the same on every worker, process
and run, which is what makes a resumed training run see exactly the data it would have seen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.signal import butter, fftconvolve, sosfilt

from hushnet.data.sources import AudioCache, ImpulseResponse, NoiseClip, Utterance

_TINY = 1e-10


@dataclass
class MixingConfig:
    """How mixtures are drawn. Ranges are uniform [low, high]."""

    segment_seconds: float = 3.0
    snr_db: tuple[float, float] = (-5.0, 20.0)
    level_db: tuple[float, float] = (-35.0, -15.0)  # RMS of the mixture, dBFS
    reverb_probability: float = 0.2
    babble_probability: float = 0.1
    babble_talkers: tuple[int, int] = (3, 7)
    sample_rate: int = 16000
    # Every n-th item (0: none) is a Valentini-like mixture: SNR in ``easy_snr_db``, no reverb, no
    # babble, no degradation. With a batch size that n divides, every batch holds the same share of
    # the conditions the starting model was trained on, which guards what it already knows.
    easy_every: int = 0
    easy_snr_db: tuple[float, float] = (0.0, 15.0)
    # How the SNR of a mixture is defined: "rms", the power ratio over the whole crop, or "active",
    # the speech's active level (ITU-T P.56, what Valentini's 0-15 dB are measured with) against
    # the noise's RMS. Crops with pauses come out noisier under "active".
    snr_reference: str = "rms"
    # Recording-chain degradations of the hard items, applied to speech and noise alike, so that the
    # target keeps the device's character and the model learns to remove noise, not to re-equalise:
    bandlimit_probability: float = 0.0  # low-pass at a cutoff drawn from ``bandlimit_hz`` (old/phone audio)
    bandlimit_hz: tuple[float, float] = (3400.0, 7000.0)
    colouration_probability: float = 0.0  # a random microphone response: tilt and one resonance, ±``colouration_db``
    colouration_db: float = 6.0
    hiss_probability: float = 0.0  # white hiss added on top, ``hiss_snr_db`` below the speech (tape, cheap preamps)
    hiss_snr_db: tuple[float, float] = (15.0, 35.0)

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    def to_dict(self) -> dict:
        return asdict(self)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def active_speech_power(x: np.ndarray, rate: int) -> float:
    """Mean power of ``x`` over its active samples, by ITU-T P.56 method B (as in ``sv56demo``).

    Written here because no maintained Python package implements P.56: an envelope (two one-pole
    smoothers, 30 ms) with 200 ms hangover is compared with thresholds an octave apart; the active
    level is where the level over the samples above a threshold is 15.9 dB above that threshold,
    interpolated between the two thresholds around it. Falls back to the plain mean power when no
    threshold qualifies (silence, or a signal active throughout).
    """
    from scipy.signal import lfilter

    x = np.asarray(x, dtype=np.float64)
    energy = float(np.sum(x * x))
    if x.size == 0 or energy <= _TINY:
        return 0.0
    g = np.exp(-1.0 / (rate * 0.03))
    envelope = lfilter([(1 - g) ** 2], [1, -2 * g, g * g], np.abs(x))  # the two smoothers in series
    hangover = int(np.ceil(0.2 * rate))
    positions = np.arange(x.size)
    margin_db = 15.9
    previous = None
    for threshold in 2.0 ** np.arange(-15, 1):
        above = envelope >= threshold
        if not above.any():
            break
        last_above = np.maximum.accumulate(np.where(above, positions, -hangover - 1))
        active = int(np.count_nonzero(positions - last_above <= hangover))
        level = 10 * np.log10(energy / active)
        excess = level - 20 * np.log10(threshold)
        if excess <= margin_db:
            if previous is None:
                return energy / active
            level_before, excess_before = previous
            fraction = (excess_before - margin_db) / (excess_before - excess)
            return float(10 ** ((level_before + fraction * (level - level_before)) / 10))
        previous = (level, excess)
    return energy / x.size


def scale_noise_to_snr(
    speech: np.ndarray, noise: np.ndarray, snr_db: float, speech_power: float | None = None
) -> np.ndarray:
    """``noise`` scaled so that 10*log10(P_speech / P_noise) == snr_db over the segment (``speech_power``:
    the speech's power by another definition, e.g. its active level)."""
    if speech_power is None:
        speech_power = np.mean(np.square(speech, dtype=np.float64))
    noise_power = np.mean(np.square(noise, dtype=np.float64))
    if speech_power <= _TINY or noise_power <= _TINY:
        return noise
    return (noise * np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))).astype(np.float32)


def random_crop(signal: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A ``length``-sample window; signals that are too short are looped from a random phase."""
    if signal.size == 0:
        return np.zeros(length, np.float32)
    if signal.size < length:
        repeats = -(-length // signal.size) + 1
        signal = np.tile(signal, repeats)
    start = int(rng.integers(0, signal.size - length + 1))
    return signal[start : start + length]


def lowpass(signal: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """8th-order Butterworth low-pass: the band limit of telephone and old recordings."""
    sos = butter(8, cutoff_hz, btype="low", fs=sample_rate, output="sos")
    return sosfilt(sos, signal).astype(np.float32)


def microphone_response(rng: np.random.Generator, sample_rate: int, max_db: float, taps: int = 257) -> np.ndarray:
    """A random linear-phase FIR: a spectral tilt plus one resonance, within ±``max_db`` dB."""
    frequencies = np.linspace(0, sample_rate / 2, taps // 2 + 1)
    octaves = np.log2(np.maximum(frequencies, 50.0) / 1000.0)
    tilt = rng.uniform(-max_db, max_db) / 4 * octaves
    centre, width = rng.uniform(np.log2(0.3), np.log2(6.0)), rng.uniform(0.3, 1.5)
    resonance = rng.uniform(-max_db, max_db) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    gain_db = np.clip(tilt + resonance, -max_db * 1.5, max_db * 1.5)
    response = np.fft.irfft(10 ** (gain_db / 20), n=taps - 1)
    response = np.roll(response, taps // 2)[: taps - 1] * np.hanning(taps - 1)
    return response.astype(np.float32)


def direct_path_aligned(response: np.ndarray) -> np.ndarray:
    """An impulse response cut at its peak and scaled so the peak is +1: the dry signal is then the
    aligned target, in the same polarity as the direct sound."""
    peak = int(np.argmax(np.abs(response)))
    aligned = response[peak:]
    return (aligned / aligned[0]).astype(np.float32) if aligned[0] != 0 else aligned.astype(np.float32)


class MixtureDataset(torch.utils.data.Dataset):
    """Noisy/clean pairs of ``segment_seconds`` drawn from speech, noise and room responses.

    Returns dicts of float32 arrays: ``noisy``, ``clean`` (the dry speech), ``noise`` (the noise as
    mixed in) and the drawn ``snr_db``. ``length`` is the size of one virtual epoch.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        noises: Sequence[NoiseClip],
        responses: Sequence[ImpulseResponse] = (),
        config: MixingConfig | None = None,
        seed: int = 0,
        length: int = 10_000,
        cache: AudioCache | None = None,
    ) -> None:
        if not utterances:
            raise ValueError("no speech to mix")
        if not noises and (config or MixingConfig()).babble_probability < 1:
            raise ValueError("no noise to mix")
        self.utterances = list(utterances)
        self.noises = list(noises)
        self.responses = list(responses)
        self.config = config or MixingConfig()
        self.seed = seed
        self.length = length
        self.cache = cache or AudioCache(self.config.sample_rate)
        self.by_speaker: dict[str, list[int]] = {}
        for index, utterance in enumerate(self.utterances):
            self.by_speaker.setdefault(utterance.speaker, []).append(index)
        self.speakers = sorted(self.by_speaker)

    def __len__(self) -> int:
        return self.length

    def _speech(self, rng: np.random.Generator, length: int, speaker: str | None = None) -> tuple[np.ndarray, str]:
        """``length`` samples of one speaker: utterances of theirs joined until long enough, then cropped."""
        if speaker is None:
            speaker = self.utterances[int(rng.integers(len(self.utterances)))].speaker
        own = self.by_speaker[speaker]
        pieces, total = [], 0
        while total < length:
            piece = self.cache(self.utterances[own[int(rng.integers(len(own)))]].path)
            pieces.append(piece)
            total += piece.size
            if len(pieces) > 50:  # a speaker whose files are all (near) empty
                break
        return random_crop(np.concatenate(pieces), length, rng), speaker

    def _babble(self, rng: np.random.Generator, length: int, target_speaker: str) -> np.ndarray:
        others = [s for s in self.speakers if s != target_speaker] or self.speakers
        low, high = self.config.babble_talkers
        talkers = rng.choice(len(others), size=min(int(rng.integers(low, high + 1)), len(others)), replace=False)
        babble = np.zeros(length, np.float32)
        for talker in sorted(talkers):
            voice, _ = self._speech(rng, length, others[talker])
            babble += voice / max(rms(voice), 1e-4)
        return babble

    def _degrade(
        self, rng: np.random.Generator, clean: np.ndarray, speech: np.ndarray, noise: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """The recording chain: colouration and band limit on everything, then hiss (noise only)."""
        config, rate = self.config, self.config.sample_rate
        # Draw every random number whatever the probabilities, so that turning one degradation on
        # does not reshuffle the others.
        colour, colour_response = (
            rng.random() < config.colouration_probability,
            microphone_response(rng, rate, config.colouration_db),
        )
        band, cutoff = rng.random() < config.bandlimit_probability, float(rng.uniform(*config.bandlimit_hz))
        hiss, hiss_snr = rng.random() < config.hiss_probability, float(rng.uniform(*config.hiss_snr_db))
        length = clean.size
        if colour:
            clean, speech, noise = (
                np.convolve(x, colour_response, mode="same").astype(np.float32) for x in (clean, speech, noise)
            )
        if band:
            clean, speech, noise = (lowpass(x, cutoff, rate) for x in (clean, speech, noise))
        if hiss:
            white = rng.standard_normal(length).astype(np.float32)
            noise = noise + scale_noise_to_snr(speech, white, hiss_snr)
        return clean, speech, noise

    def __getitem__(self, index: int) -> dict:
        config = self.config
        rng = np.random.default_rng([self.seed, index])
        length = config.segment_samples
        easy = config.easy_every > 0 and index % config.easy_every == 0
        clean, speaker = self._speech(rng, length)
        speech = clean
        if not easy and self.responses and rng.random() < config.reverb_probability:
            response = direct_path_aligned(self.cache(self.responses[int(rng.integers(len(self.responses)))].path))
            speech = fftconvolve(clean, response)[:length].astype(np.float32)
        if self.noises and (easy or rng.random() >= config.babble_probability):
            noise = random_crop(self.cache(self.noises[int(rng.integers(len(self.noises)))].path), length, rng)
        else:
            noise = self._babble(rng, length, speaker)
        snr_db = float(rng.uniform(*(config.easy_snr_db if easy else config.snr_db)))
        reference = active_speech_power(speech, config.sample_rate) if config.snr_reference == "active" else None
        noise = scale_noise_to_snr(speech, noise, snr_db, reference)
        if not easy and (config.colouration_probability or config.bandlimit_probability or config.hiss_probability):
            clean, speech, noise = self._degrade(rng, clean, speech, noise)
        noisy = speech + noise
        gain = 10 ** (rng.uniform(*config.level_db) / 20) / max(rms(noisy), _TINY)
        peak = float(np.max(np.abs(noisy))) * gain
        if peak > 0.99:  # keep the mixture below full scale; the SNR is unchanged
            gain *= 0.99 / peak
        return {
            "noisy": (noisy * gain).astype(np.float32),
            "clean": (clean * gain).astype(np.float32),
            "noise": (noise * gain).astype(np.float32),
            "snr_db": snr_db,
        }
