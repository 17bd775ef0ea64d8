"""Speech-enhancement metrics as the literature reports them.

- PESQ (wide-band P.862.2 by default, narrow-band on request) through the ``pesq`` package;
- STOI and extended STOI through ``pystoi``;
- SI-SDR and segmental SNR;
- the composite measures CSIG, CBAK, COVL of Hu & Loizou (2008), with wide-band PESQ plugged in as
  most papers since SEGAN do. No maintained PyPI package computes them, so LLR, WSS and segmental SNR
  are written here from the definitions in Loizou's ``composite.m`` (30 ms Hann frames, 75 % overlap,
  its frame count, which drops the last full frame, and the 95 % trimmed means of LLR and WSS);
- for the loss network's sound tagging, average precision and the equal error rate (DCASE 2016
  task 4's metric), hand-written: two short formulas, not worth a scikit-learn dependency.

The signal metrics take 1-D float arrays at the same sample rate. ``score`` aligns a constant delay, trims
lengths and resamples to 16 kHz first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.signal import correlate

METRIC_RATE = 16000
COMPOSITE_NOTE = "CSIG/CBAK/COVL: Hu & Loizou (2008) composite measures with wide-band PESQ plugged in"

# Critical bands of Loizou's wss.m (centre frequencies and bandwidths in Hz).
_CENTRE_HZ = [
    50.0,
    120.0,
    190.0,
    260.0,
    330.0,
    400.0,
    470.0,
    540.0,
    617.372,
    703.378,
    798.717,
    904.128,
    1020.38,
    1148.30,
    1288.72,
    1442.54,
    1610.70,
    1794.16,
    1993.93,
    2211.08,
    2446.71,
    2701.97,
    2978.04,
    3276.17,
    3597.63,
]
_BANDWIDTH_HZ = [
    70.0,
    70.0,
    70.0,
    70.0,
    70.0,
    70.0,
    70.0,
    77.3724,
    86.0056,
    95.3398,
    105.411,
    116.256,
    127.914,
    140.423,
    153.823,
    168.154,
    183.457,
    199.776,
    217.153,
    235.631,
    255.255,
    276.072,
    298.126,
    321.465,
    346.136,
]


def _frames(signal: np.ndarray, rate: int) -> np.ndarray:
    """30 ms frames with a 7.5 ms hop, Hann-windowed as in composite.m ([frames, window])."""
    window_length = round(0.030 * rate)
    hop = window_length // 4
    count = int(len(signal) / hop - window_length / hop)  # composite.m's count: the last full frame is dropped
    if count <= 0:
        return np.zeros((0, window_length))
    index = np.arange(window_length)[None, :] + hop * np.arange(count)[:, None]
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, window_length + 1) / (window_length + 1)))
    return signal[index] * window


def segmental_snr(clean: np.ndarray, enhanced: np.ndarray, rate: int = METRIC_RATE) -> float:
    """Mean frame SNR in dB, each frame clipped to [-10, 35] dB (composite.m's ``snr``)."""
    c, e = _frames(clean, rate), _frames(enhanced, rate)
    eps = np.finfo(np.float64).eps
    signal_energy = np.sum(c**2, axis=1)
    noise_energy = np.sum((c - e) ** 2, axis=1)
    frame_snr = 10 * np.log10(signal_energy / (noise_energy + eps) + eps)
    return float(np.mean(np.clip(frame_snr, -10, 35))) if len(frame_snr) else float("nan")


def _lpc(frames: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelations [frames, order+1] and LPC polynomials [frames, order+1] (1, -a1, ..., -ap)."""
    length = frames.shape[1]
    autocorrelation = np.stack(
        [np.sum(frames[:, : length - k] * frames[:, k:], axis=1) for k in range(order + 1)], axis=1
    )
    polynomials = np.ones((len(frames), order + 1))
    for i, r in enumerate(autocorrelation):
        # Levinson-Durbin through scipy; a frame of digital silence has no predictor (all zeros).
        polynomials[i, 1:] = -solve_toeplitz(r[:order], r[1 : order + 1]) if r[0] > 0 else 0.0
    return autocorrelation, polynomials


def llr_frames(clean: np.ndarray, enhanced: np.ndarray, rate: int = METRIC_RATE) -> np.ndarray:
    """Log-likelihood ratio of each frame (composite.m's ``llr``)."""
    order = 10 if rate < 10000 else 16
    c, e = _frames(clean, rate), _frames(enhanced, rate)
    r_clean, a_clean = _lpc(c, order)
    _, a_enhanced = _lpc(e, order)
    out = np.empty(len(c))
    for i in range(len(c)):
        toeplitz = r_clean[i][np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])]
        out[i] = np.log((a_enhanced[i] @ toeplitz @ a_enhanced[i]) / (a_clean[i] @ toeplitz @ a_clean[i]))
    return out


def _band_energies(frames: np.ndarray, rate: int) -> np.ndarray:
    """Critical-band energies in dB [frames, 25] from the power spectrum (wss.m)."""
    window_length = frames.shape[1]
    n_fft = 2 ** math.ceil(math.log2(2 * window_length))
    half = n_fft // 2
    max_freq = rate / 2
    bin_index = np.arange(half)
    min_factor = math.exp(-30.0 / (2.0 * 2.303))
    filters = np.empty((25, half))
    for i, (centre, bandwidth) in enumerate(zip(_CENTRE_HZ, _BANDWIDTH_HZ)):
        f0 = centre / max_freq * half
        bw = bandwidth / max_freq * half
        shape = np.exp(
            -11 * ((bin_index - math.floor(f0)) / bw) ** 2 + math.log(_BANDWIDTH_HZ[0]) - math.log(bandwidth)
        )
        filters[i] = shape * (shape > min_factor)
    spectrum = np.abs(np.fft.fft(frames, n_fft, axis=1)[:, :half]) ** 2
    return 10 * np.log10(np.maximum(spectrum @ filters.T, 1e-10))


def _nearest_peaks(energy: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """For each band, the energy of the "nearest peak", searched exactly as wss.m does.

    wss.m's upward search returns ``clean_energy(n-1)`` with ``n`` the first band whose slope is not
    positive: one band below the actual peak. Kept as written, since published numbers use it
    (checked against the reference values to 0.0004).
    """
    bands = len(energy)
    peaks = np.empty(bands - 1)
    for i in range(bands - 1):
        n = i
        if slope[i] > 0:
            while n < bands - 1 and slope[n] > 0:
                n += 1
            peaks[i] = energy[n - 1]
        else:
            while n >= 0 and slope[n] <= 0:
                n -= 1
            peaks[i] = energy[n + 1]
    return peaks


def wss_frames(clean: np.ndarray, enhanced: np.ndarray, rate: int = METRIC_RATE) -> np.ndarray:
    """Weighted spectral slope distance of each frame (Klatt 1982, as in wss.m)."""
    k_max, k_local_max = 20.0, 1.0
    clean_energy = _band_energies(_frames(clean, rate), rate)
    enhanced_energy = _band_energies(_frames(enhanced, rate), rate)
    out = np.empty(len(clean_energy))
    for f, (ce, ee) in enumerate(zip(clean_energy, enhanced_energy)):
        cs, es = np.diff(ce), np.diff(ee)
        weights = []
        for energy, slope in ((ce, cs), (ee, es)):
            peaks = _nearest_peaks(energy, slope)
            w_max = k_max / (k_max + energy.max() - energy[:-1])
            w_local = k_local_max / (k_local_max + peaks - energy[:-1])
            weights.append(w_max * w_local)
        w = (weights[0] + weights[1]) / 2
        out[f] = np.sum(w * (cs - es) ** 2) / np.sum(w)
    return out


def _trimmed_mean(values: np.ndarray, keep: float = 0.95) -> float:
    """Mean of the lowest ``keep`` fraction (composite.m discards the worst 5 % of frames)."""
    ordered = np.sort(values)
    count = round(len(ordered) * keep)
    return float(np.mean(ordered[:count])) if count else float("nan")


def pesq_score(clean: np.ndarray, enhanced: np.ndarray, rate: int = METRIC_RATE, mode: str = "wb") -> float:
    """PESQ (``wb``: P.862.2 at 16 kHz; ``nb``: P.862 at 8 or 16 kHz); NaN when no speech is found."""
    from pesq import NoUtterancesError, PesqError, pesq

    try:
        return float(pesq(rate, clean.astype(np.float64), enhanced.astype(np.float64), mode))
    except (NoUtterancesError, PesqError):
        return float("nan")


def composite(
    clean: np.ndarray, enhanced: np.ndarray, rate: int = METRIC_RATE, pesq_value: float | None = None
) -> dict[str, float]:
    """CSIG, CBAK, COVL (each clipped to [1, 5]) and their parts: LLR, WSS, segmental SNR, PESQ."""
    eps = np.finfo(np.float64).eps
    length = min(len(clean), len(enhanced))
    c, e = clean[:length].astype(np.float64) + eps, enhanced[:length].astype(np.float64) + eps
    llr = _trimmed_mean(llr_frames(c, e, rate))
    wss = _trimmed_mean(wss_frames(c, e, rate))
    ssnr = segmental_snr(c, e, rate)
    p = pesq_score(clean[:length], enhanced[:length], rate) if pesq_value is None else pesq_value
    csig = 3.093 - 1.029 * llr + 0.603 * p - 0.009 * wss
    cbak = 1.634 + 0.478 * p - 0.007 * wss + 0.063 * ssnr
    covl = 1.594 + 0.805 * p - 0.512 * llr - 0.007 * wss
    clip = lambda v: float(np.clip(v, 1.0, 5.0))  # noqa: E731
    return {
        "csig": clip(csig),
        "cbak": clip(cbak),
        "covl": clip(covl),
        "llr": llr,
        "wss": wss,
        "ssnr_db": ssnr,
        "pesq_wb": p,
    }


def si_sdr(clean: np.ndarray, enhanced: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), on zero-mean signals."""
    c = clean.astype(np.float64) - clean.mean()
    e = enhanced.astype(np.float64) - enhanced.mean()
    energy = np.dot(c, c)
    if energy == 0:
        return float("nan")
    target = np.dot(e, c) / energy * c
    residual = e - target
    return float(10 * np.log10(np.dot(target, target) / max(np.dot(residual, residual), 1e-20)))


def snr(clean: np.ndarray, enhanced: np.ndarray) -> float:
    """Plain SNR in dB of ``enhanced`` against ``clean``."""
    noise = np.sum((clean.astype(np.float64) - enhanced) ** 2)
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / max(noise, 1e-20)))


def estimate_delay(clean: np.ndarray, enhanced: np.ndarray, max_delay: int) -> int:
    """Samples by which ``enhanced`` lags ``clean`` (negative: leads), by cross-correlation."""
    length = min(len(clean), len(enhanced))
    if length == 0 or max_delay <= 0:
        return 0
    correlation = correlate(
        enhanced[:length].astype(np.float64), clean[:length].astype(np.float64), mode="full", method="fft"
    )
    lags = np.arange(-length + 1, length)
    window = np.abs(lags) <= max_delay
    return int(lags[window][np.argmax(correlation[window])])


@dataclass
class Alignment:
    clean: np.ndarray
    enhanced: np.ndarray
    delay: int  # samples at 16 kHz that the enhanced signal lagged by (and was shifted back)
    length_difference: int  # len(enhanced) - len(clean) before alignment, at 16 kHz


def align(clean: np.ndarray, enhanced: np.ndarray, rate: int, max_delay_s: float = 0.1) -> Alignment:
    """Resample both to 16 kHz, remove a constant delay, and trim to the common length."""
    from hushnet.audio.arrays import resample

    if rate != METRIC_RATE:
        clean, enhanced = (
            resample(clean.astype(np.float32), rate, METRIC_RATE),
            resample(enhanced.astype(np.float32), rate, METRIC_RATE),
        )
    difference = len(enhanced) - len(clean)
    delay = estimate_delay(clean, enhanced, int(max_delay_s * METRIC_RATE))
    if delay > 0:
        enhanced = enhanced[delay:]
    elif delay < 0:
        enhanced = np.concatenate([np.zeros(-delay, dtype=enhanced.dtype), enhanced])
    length = min(len(clean), len(enhanced))
    return Alignment(clean[:length], enhanced[:length], delay, difference)


def score(
    clean: np.ndarray, enhanced: np.ndarray, rate: int = METRIC_RATE, align_delay: bool = True, narrowband: bool = False
) -> dict[str, float]:
    """Every metric of ``enhanced`` against ``clean`` (1-D, same rate), after alignment."""
    from pystoi import stoi

    aligned = align(clean, enhanced, rate, max_delay_s=0.1 if align_delay else 0.0)
    c, e = aligned.clean.astype(np.float64), aligned.enhanced.astype(np.float64)
    if not np.any(c):
        raise ValueError("the clean reference is digital silence: nothing to score against")
    p = pesq_score(c, e, METRIC_RATE, "wb")
    out = {"pesq_wb": p}
    if narrowband:
        out["pesq_nb"] = pesq_score(c, e, METRIC_RATE, "nb")
    parts = (
        composite(c, e, METRIC_RATE, pesq_value=p)
        if not math.isnan(p)
        else {"csig": float("nan"), "cbak": float("nan"), "covl": float("nan")}
    )
    out.update({k: parts[k] for k in ("csig", "cbak", "covl")})
    out["ssnr_db"] = segmental_snr(c + np.finfo(np.float64).eps, e + np.finfo(np.float64).eps)
    out["stoi"] = float(stoi(c, e, METRIC_RATE, extended=False))
    out["estoi"] = float(stoi(c, e, METRIC_RATE, extended=True))
    out["si_sdr_db"] = si_sdr(c, e)
    out["snr_db"] = snr(c, e)
    out["delay_samples"] = aligned.delay
    out["length_difference"] = aligned.length_difference
    return out


def dnsmos(signal: np.ndarray, rate: int = METRIC_RATE) -> dict[str, float]:
    """DNSMOS P.835 SIG/BAK/OVRL (Reddy et al. 2022) of one recording, no reference needed.

    Uses the ONNX models inside the ``speechmos`` wheel (extra ``hushnet[dnsmos]``); slow on CPU.
    """
    try:
        from speechmos import dnsmos as speechmos_dnsmos
    except ImportError:
        raise ImportError("DNSMOS needs the optional extra: pip install 'hushnet[dnsmos]'") from None
    from hushnet.audio.arrays import resample

    signal = np.asarray(signal, dtype=np.float32)
    if rate != METRIC_RATE:
        signal = resample(signal[None], rate, METRIC_RATE)[0]
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    if peak > 1.0:  # speechmos rejects samples outside [-1, 1]
        signal = signal / peak
    result = speechmos_dnsmos.run(signal, METRIC_RATE)
    return {f"dnsmos_{key}": float(result[f"{key}_mos"]) for key in ("sig", "bak", "ovrl")}


@dataclass(frozen=True)
class PairedDifference:
    """Mean per-file difference (candidate - reference) with a bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    files: int

    @property
    def win(self) -> bool:
        """Whether the interval lies wholly on one side of 0 (a difference inside it is noise)."""
        return not self.low <= 0.0 <= self.high


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the precision-recall curve as the mean precision at each positive (no interpolation);
    NaN when ``truth`` has no positive."""
    order = np.argsort(-scores, kind="stable")
    hits = truth[order] > 0
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].mean())


def equal_error_rate(scores: np.ndarray, truth: np.ndarray) -> float:
    """The error rate where false-positive and false-negative rates are equal (DCASE 2016 task 4's
    metric), at the score threshold that brings them closest; NaN without both classes."""
    positives, negatives = truth > 0, truth <= 0
    if not positives.any() or not negatives.any():
        return float("nan")
    thresholds = np.unique(scores)
    fpr = np.array([(scores[negatives] >= t).mean() for t in thresholds])
    fnr = np.array([(scores[positives] < t).mean() for t in thresholds])
    best = int(np.argmin(np.abs(fpr - fnr)))
    return float((fpr[best] + fnr[best]) / 2)


def paired_bootstrap(
    candidate, reference, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> PairedDifference:
    """Paired bootstrap interval (BCa, ``scipy.stats.bootstrap``) of the mean of ``candidate - reference``.

    Both are per-file scores of the same files in the same order; files are resampled together, so
    what varies between files (how hard each one is) cancels. Files where either score is NaN (PESQ
    finding no speech) are left out of both.
    """
    from scipy.stats import bootstrap

    a, b = np.asarray(candidate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two 1-D arrays of one length, got shapes {a.shape} and {b.shape}")
    kept = ~(np.isnan(a) | np.isnan(b))
    a, b = a[kept], b[kept]
    if a.size < 2:
        raise ValueError(f"a bootstrap needs at least 2 paired files, got {a.size}")
    difference = a - b
    mean = float(difference.mean())
    if np.ptp(difference) == 0:  # every file moved by the same amount: no spread to resample
        return PairedDifference(mean, mean, mean, int(a.size))
    result = bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return PairedDifference(mean, float(interval.low), float(interval.high), int(a.size))
