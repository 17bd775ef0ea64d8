import csv

import numpy as np
import pytest
import soundfile as sf

from hushnet.metrics import (
    align,
    average_precision,
    composite,
    equal_error_rate,
    estimate_delay,
    paired_bootstrap,
    score,
    segmental_snr,
    si_sdr,
    snr,
)

from helpers import DEV, REFERENCE, needs_shared, require_shared, speechlike


def clean_speech():
    require_shared()
    samples, rate = sf.read(DEV / "clean" / "p287_001.flac", dtype="float32")
    return samples, rate


def test_identical_signals_score_perfectly():
    clean, rate = clean_speech()
    s = score(clean, clean.copy(), rate)
    assert s["pesq_wb"] > 4.5 and s["stoi"] > 0.999 and s["estoi"] > 0.999
    assert s["si_sdr_db"] > 100 and s["delay_samples"] == 0
    assert s["ssnr_db"] == pytest.approx(35.0)  # every frame at the 35 dB ceiling
    assert s["csig"] == 5.0 and s["covl"] == 5.0


def test_known_snr_and_si_sdr():
    rng = np.random.default_rng(1)
    clean = rng.standard_normal(32000)
    noise = rng.standard_normal(32000)
    noise *= np.linalg.norm(clean) / np.linalg.norm(noise) / 10 ** (10 / 20)
    assert snr(clean, clean + noise) == pytest.approx(10.0, abs=1e-9)
    assert si_sdr(clean, 3.0 * clean) > 100  # scale does not matter
    assert si_sdr(clean, clean + noise) == pytest.approx(10.0, abs=0.2)


def test_segmental_snr_clips_frames():
    x = speechlike(1.0)[0].astype(np.float64)
    assert segmental_snr(x, np.zeros_like(x)) == pytest.approx(0.0, abs=1e-6)  # noise == signal
    assert segmental_snr(x, -x) == pytest.approx(10 * np.log10(0.25), abs=1e-6)


@pytest.mark.parametrize("delay", [0, 37, 320, -80])
def test_delayed_copy_is_aligned_and_reported(delay):
    clean, rate = clean_speech()
    if delay >= 0:
        shifted = np.concatenate([np.zeros(delay, dtype=np.float32), clean])[: len(clean) + 5]
    else:
        shifted = clean[-delay:]
    assert estimate_delay(clean, shifted, 1600) == delay
    s = score(clean, shifted, rate)
    assert s["delay_samples"] == delay
    assert s["pesq_wb"] > 4.4 and s["stoi"] > 0.99


def test_other_sample_rates_are_resampled():
    clean, _ = clean_speech()
    from hushnet.audio import resample

    clean48 = resample(clean, 16000, 48000)
    s = score(clean48, clean48.copy(), 48000)
    assert s["pesq_wb"] > 4.4
    assert align(clean48, clean48, 48000).clean.shape[0] == pytest.approx(len(clean), abs=2)


def test_silent_reference_is_a_clear_error():
    with pytest.raises(ValueError, match="silence"):
        score(np.zeros(16000), speechlike(1.0)[0])


@needs_shared
def test_reference_values_from_metrics_expected_csv():
    """Every file and signal listed by the reference: within 0.02 (composite), 0.01 (others)."""
    with open(REFERENCE / "metrics_expected.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 14
    for row in rows:
        clean, rate = sf.read(DEV / "clean" / f"{row['file']}.flac", dtype="float32")
        if row["signal"] == "noisy":
            other, _ = sf.read(DEV / "noisy" / f"{row['file']}.flac", dtype="float32")
        else:
            other = np.load(REFERENCE / "expected" / f"{row['file']}.npy")
        s = score(clean, other, rate, align_delay=False)
        for key in ("csig", "cbak", "covl"):
            assert s[key] == pytest.approx(float(row[key]), abs=0.02), (row["file"], row["signal"], key)
        for key in ("pesq_wb", "ssnr_db", "stoi", "estoi"):
            assert s[key] == pytest.approx(float(row[key]), abs=0.01), (row["file"], row["signal"], key)


def test_composite_parts_are_reported():
    clean, rate = clean_speech()
    noisy = clean + 0.01 * np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    parts = composite(clean, noisy, rate)
    assert set(parts) >= {"csig", "cbak", "covl", "llr", "wss", "ssnr_db", "pesq_wb"}
    assert parts["llr"] > 0 and parts["wss"] > 0
    # Hu & Loizou's regressions on the parts reported beside them (here inside (1, 5): not clipped).
    csig = 3.093 - 1.029 * parts["llr"] + 0.603 * parts["pesq_wb"] - 0.009 * parts["wss"]
    cbak = 1.634 + 0.478 * parts["pesq_wb"] - 0.007 * parts["wss"] + 0.063 * parts["ssnr_db"]
    covl = 1.594 + 0.805 * parts["pesq_wb"] - 0.512 * parts["llr"] - 0.007 * parts["wss"]
    assert 1 < csig < 5 and 1 < cbak < 5 and 1 < covl < 5
    assert (parts["csig"], parts["cbak"], parts["covl"]) == pytest.approx((csig, cbak, covl), abs=1e-12)
    # A tenth of the noise scores higher on every scale.
    quieter = composite(clean, clean + 0.1 * (noisy - clean), rate)
    assert all(quieter[key] > parts[key] + 0.5 for key in ("csig", "cbak", "covl", "pesq_wb", "ssnr_db"))


def test_paired_bootstrap_excludes_zero_for_a_clear_shift():
    rng = np.random.default_rng(3)
    reference = rng.uniform(1.5, 3.0, 25)  # files of very different difficulty
    candidate = reference + 0.1 + rng.normal(0, 0.03, 25)
    difference = paired_bootstrap(candidate, reference)
    assert difference.mean == pytest.approx(np.mean(candidate - reference))
    assert 0 < difference.low < difference.mean < difference.high < 0.2 and difference.win
    # Unpaired, the spread between files (0.43) would swamp the 0.1 shift; paired it does not.
    assert difference.high - difference.low < 0.05


def test_paired_bootstrap_includes_zero_for_pure_noise():
    rng = np.random.default_rng(4)
    reference = rng.uniform(1.5, 3.0, 25)
    candidate = reference + rng.normal(0, 0.05, 25)
    candidate -= np.mean(candidate - reference)  # a mean difference of exactly 0
    difference = paired_bootstrap(candidate, reference)
    assert difference.low < 0 < difference.high and not difference.win


def test_paired_bootstrap_is_reproducible_and_drops_nan_pairs():
    rng = np.random.default_rng(5)
    reference = rng.uniform(1.5, 3.0, 12)
    candidate = reference + rng.normal(0.05, 0.1, 12)
    first, second = paired_bootstrap(candidate, reference, seed=7), paired_bootstrap(candidate, reference, seed=7)
    assert first == second
    with_nan = paired_bootstrap(np.append(candidate, np.nan), np.append(reference, 2.0), seed=7)
    assert with_nan == first  # the NaN file is left out of both
    assert paired_bootstrap([2.1, 2.3, 2.0], [2.0, 2.2, 1.9]).low == pytest.approx(
        0.1
    )  # a constant shift: a point interval
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0, 3.0])


def test_average_precision_and_equal_error_rate_on_known_cases():
    truth = np.array([1, 0, 1, 0])
    assert average_precision(np.array([0.9, 0.1, 0.8, 0.2]), truth) == 1.0
    # Ranked: neg, neg, pos (precision 1/3), pos (2/4).
    assert average_precision(np.array([0.1, 0.9, 0.2, 0.8]), truth) == pytest.approx((1 / 3 + 2 / 4) / 2)
    # Ranked: pos (1/1), neg, neg, pos (2/4), neg.
    assert average_precision(np.array([0.9, 0.7, 0.6, 0.5, 0.1]), np.array([1, 0, 0, 1, 0])) == pytest.approx(0.75)
    assert equal_error_rate(np.array([0.9, 0.1, 0.8, 0.2]), truth) == 0.0
    assert equal_error_rate(np.array([0.1, 0.9, 0.2, 0.8]), truth) == 1.0
    # Positives 0.8, 0.4; negatives 0.6, 0.2: at 0.6 one of two negatives passes and one positive misses.
    assert equal_error_rate(np.array([0.8, 0.6, 0.4, 0.2]), np.array([1, 0, 1, 0])) == 0.5
    assert np.isnan(average_precision(np.array([0.3]), np.array([0])))
    assert np.isnan(equal_error_rate(np.array([0.3, 0.4]), np.array([1, 1])))
    assert np.isnan(equal_error_rate(np.array([0.3, 0.4]), np.array([0, 0])))


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_and_equal_error_rate_match_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    truth = (rng.random(200) < 0.3).astype(np.float32)
    scores = np.clip(0.3 * truth + rng.random(200), 0, None)  # informative, distinct scores
    assert average_precision(scores, truth) == pytest.approx(metrics.average_precision_score(truth, scores), abs=1e-12)
    fpr, tpr, thresholds = metrics.roc_curve(truth, scores, drop_intermediate=False)
    fnr = 1 - tpr[1:]  # the first point is scikit-learn's threshold above every score
    gap = np.abs(fpr[1:] - fnr)
    nearest = {round(float(v), 12) for v in ((fpr[1:] + fnr) / 2)[gap == gap.min()]}
    assert round(equal_error_rate(scores, truth), 12) in nearest
    assert 0.1 < equal_error_rate(scores, truth) < 0.45  # informative scores, so neither 0 nor chance
