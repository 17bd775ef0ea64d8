"""Data: splits, on-the-fly mixing (SNR, determinism), file pairs (Valentini layout), the synthetic test set."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from hushnet.data.mixing import MixingConfig, MixtureDataset, direct_path_aligned, random_crop, scale_noise_to_snr
from hushnet.data.pairs import PairDataset, folder_pairs, split_pairs, valentini_pairs
from hushnet.data.sources import NoiseClip, impulse_responses, noise_clips, speech_utterances
from hushnet.data.splits import noise_split, select, speaker_split
from hushnet.data.testset import build_test_set

from helpers import SHARED, speechlike


def snr_of(speech: np.ndarray, noise: np.ndarray) -> float:
    return 10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))


def test_scale_noise_to_snr_hits_the_target():
    rng = np.random.default_rng(1)
    speech, noise = rng.standard_normal(8000).astype(np.float32), 3 * rng.standard_normal(8000).astype(np.float32)
    for target in (-5.0, 0.0, 7.3, 20.0):
        assert abs(snr_of(speech, scale_noise_to_snr(speech, noise, target)) - target) < 1e-3


def test_random_crop_loops_short_signals():
    rng = np.random.default_rng(0)
    crop = random_crop(np.arange(10, dtype=np.float32), 25, rng)
    assert crop.size == 25 and set(np.unique(crop)) <= set(range(10))
    assert random_crop(np.zeros(0, np.float32), 5, rng).tolist() == [0.0] * 5


def test_direct_path_aligned_starts_at_the_peak():
    response = np.array([0.0, 0.1, -2.0, 0.5, 0.25], np.float32)
    assert direct_path_aligned(response).tolist() == pytest.approx([1.0, -0.25, -0.125])


@pytest.fixture
def mixtures(tiny_corpus):
    speech = speech_utterances(tiny_corpus / "speech")
    noise = noise_clips(tiny_corpus / "noise")
    rooms = impulse_responses(tiny_corpus / "rir")
    config = MixingConfig(segment_seconds=0.5, reverb_probability=0.5, babble_probability=0.3, babble_talkers=(2, 3))
    return lambda seed=0: MixtureDataset(speech, noise, rooms, config, seed=seed, length=100)


def test_mixture_snr_within_0_1_db_of_the_draw(mixtures):
    dataset = mixtures()
    for index in range(40):
        item = dataset[index]
        speech = item["noisy"] - item["noise"]
        assert abs(snr_of(speech, item["noise"]) - item["snr_db"]) < 0.1
        assert -5 <= item["snr_db"] <= 20
        assert item["noisy"].shape == item["clean"].shape == (8000,)
        assert np.abs(item["noisy"]).max() <= 0.99 + 1e-6


def test_mixtures_are_deterministic_per_seed_and_index(mixtures):
    first, again, other = mixtures(0), mixtures(0), mixtures(1)
    for index in (0, 7, 42):
        assert np.array_equal(first[index]["noisy"], again[index]["noisy"])
        assert not np.array_equal(first[index]["noisy"], other[index]["noisy"])
    # Order of access does not matter (workers fetch items in any order).
    assert np.array_equal(mixtures(0)[42]["clean"], first[42]["clean"])


def test_mixture_levels_follow_the_drawn_range(mixtures):
    dataset = mixtures()
    levels = [20 * np.log10(np.sqrt(np.mean(dataset[i]["noisy"] ** 2))) for i in range(30)]
    assert min(levels) >= -35.5 and max(levels) <= -14.5


def test_speakers_and_noise_recordings_split_consistently():
    assert speaker_split("p226") == speaker_split("p287") == "test"
    assert speaker_split("asterisk_allison") == "train"
    segments = [NoiseClip(__import__("pathlib").Path(f"x/rec_s0{i}.flac"), "l", "x/rec", "blanket") for i in range(3)]
    assert len({noise_split(clip) for clip in segments}) == 1
    assert noise_split(NoiseClip(__import__("pathlib").Path("a.flac"), "dog", "a", "esc10", "5")) == "test"
    assert noise_split(NoiseClip(__import__("pathlib").Path("a.flac"), "dog", "a", "esc10", "1")) == "train"


@pytest.mark.skipif(not (SHARED / "data" / "speech" / "manifest.csv").is_file(), reason="shared data not present")
def test_shared_data_splits_are_disjoint_and_sized():
    speech = speech_utterances(SHARED / "data" / "speech")
    noise = noise_clips(SHARED / "data" / "noise")
    speakers = {split: {u.speaker for u in select(speech, split)} for split in ("train", "validation", "test")}
    assert not speakers["train"] & speakers["test"] and not speakers["train"] & speakers["validation"]
    recordings = {split: {n.recording for n in select(noise, split)} for split in ("train", "test")}
    assert not recordings["train"] & recordings["test"]
    test_minutes = sum(u.seconds for u in select(speech, "test")) / 60
    assert 5 < test_minutes < 20


def _valentini_fixture(root, rate=48000):
    for clean_name, noisy_name, speakers in (
        ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav", ("p226", "p286", "p287")),
        ("clean_testset_wav", "noisy_testset_wav", ("p232",)),
    ):
        for speaker in speakers:
            for k in (1, 2):
                clean = speechlike(0.5 + 0.1 * k, rate, seed=k)[0]
                noisy = clean + 0.01 * np.random.default_rng(k).standard_normal(clean.size).astype(np.float32)
                for folder, signal in ((clean_name, clean), (noisy_name, noisy)):
                    (root / folder).mkdir(parents=True, exist_ok=True)
                    sf.write(root / folder / f"{speaker}_{k:03d}.wav", signal, rate)
    return root


def test_valentini_layout_pairs_split_and_resamples(tmp_path):
    root = _valentini_fixture(tmp_path)
    pairs = valentini_pairs(root, "train")
    assert [p[0].name for p in pairs] == [
        "p226_001.wav",
        "p226_002.wav",
        "p286_001.wav",
        "p286_002.wav",
        "p287_001.wav",
        "p287_002.wav",
    ]
    assert all(c.parent.name.startswith("clean") and n.parent.name.startswith("noisy") for c, n in pairs)
    training, validation = split_pairs(pairs, ("p286", "p287"))
    assert len(training) == 2 and len(validation) == 4
    assert len(valentini_pairs(root, "test")) == 2
    dataset = PairDataset(training, 4000, seed=3)
    item = dataset[0]
    assert item["clean"].shape == item["noisy"].shape == (4000,)
    # 48 kHz files were resampled: a 0.6 s file at 16 kHz is 9600 samples.
    assert dataset.cache(training[0][0]).size == 9600
    assert np.array_equal(PairDataset(training, 4000, seed=3)[5]["noisy"], dataset[5]["noisy"])
    with pytest.raises(FileNotFoundError, match="not a Valentini folder"):
        valentini_pairs(tmp_path / "clean_testset_wav")


def test_folder_pairs_report_unmatched_files(tmp_path):
    root = _valentini_fixture(tmp_path)
    (root / "noisy_testset_wav" / "p232_001.wav").unlink()
    with pytest.raises(ValueError, match="1 files have no partner"):
        folder_pairs(root / "clean_testset_wav", root / "noisy_testset_wav")


def test_pair_dataset_pads_short_files(tmp_path):
    root = _valentini_fixture(tmp_path, rate=16000)
    item = PairDataset(valentini_pairs(root, "test"), 20000)[0]
    assert item["clean"].shape == (20000,) and item["clean"][-100:].tolist() == [0.0] * 100


def test_test_set_is_reproducible_and_uses_only_test_split(tiny_corpus, tmp_path):
    # Rename so the tiny corpus has test speakers and test noise (the hash rule sends ~10 % there).
    first = build_test_set(_with_test_split(tiny_corpus, tmp_path), tmp_path / "a", count=4, seed=5)
    second = build_test_set(tmp_path / "corpus", tmp_path / "b", count=4, seed=5)
    manifest = (first / "manifest.csv").read_text()
    assert manifest == (second / "manifest.csv").read_text()
    for name in sorted(p.name for p in (first / "noisy").iterdir()):
        assert (first / "noisy" / name).read_bytes() == (second / "noisy" / name).read_bytes()
    assert "p226" in manifest and "ms_snsd/AirConditioner_6" in manifest
    clean, _ = sf.read(first / "clean" / sorted(p.name for p in (first / "clean").iterdir())[0])
    noisy, _ = sf.read(first / "noisy" / sorted(p.name for p in (first / "noisy").iterdir())[0])
    assert abs(snr_of(clean, noisy - clean) - 2.5) < 0.1


def _with_test_split(corpus, tmp_path):
    """A copy of the tiny corpus with a test speaker (p226) and a test noise recording."""
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(corpus, root)
    shutil.move(root / "speech" / "spk0", root / "speech" / "p226")
    (root / "noise" / "ms_snsd").mkdir()
    shutil.move(root / "noise" / "hum" / "hum_0.wav", root / "noise" / "ms_snsd" / "AirConditioner_6.wav")
    return root


def _band_energy_above(signal: np.ndarray, hz: float, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(signal)) ** 2
    return float(spectrum[int(hz / (rate / 2) * spectrum.size) :].sum() / max(spectrum.sum(), 1e-20))


def test_easy_items_are_valentini_like_and_the_rest_degraded(tiny_corpus):
    speech = speech_utterances(tiny_corpus / "speech")
    noise = noise_clips(tiny_corpus / "noise")
    rooms = impulse_responses(tiny_corpus / "rir")
    config = MixingConfig(
        segment_seconds=0.5,
        reverb_probability=1.0,
        babble_probability=0.0,
        easy_every=4,
        easy_snr_db=(5.0, 10.0),
        bandlimit_probability=1.0,
        bandlimit_hz=(3400.0, 3400.0),
        hiss_probability=1.0,
        hiss_snr_db=(20.0, 20.0),
    )
    dataset = MixtureDataset(speech, noise, rooms, config, seed=3, length=100)
    plain = MixtureDataset(
        speech,
        noise,
        rooms,
        MixingConfig(segment_seconds=0.5, reverb_probability=1.0, babble_probability=0.0),
        seed=3,
        length=100,
    )
    for index in range(12):
        item = dataset[index]
        if index % 4 == 0:  # Valentini-like: dry target, SNR in the easy range, full band
            assert 5.0 <= item["snr_db"] <= 10.0
            speech_part = item["noisy"] - item["noise"]
            np.testing.assert_allclose(speech_part, item["clean"], atol=1e-6)  # no reverb
        else:  # band-limited at 3.4 kHz on target and input alike; hiss keeps the input full band
            assert _band_energy_above(item["clean"], 5000) < 1e-4
            assert _band_energy_above(item["noisy"], 4000) > 1e-3
            assert _band_energy_above(plain[index]["clean"], 4000) > 1e-3


def test_hiss_goes_into_the_noise_not_the_target(mixtures):
    dataset = mixtures()
    config = MixingConfig(**{**dataset.config.to_dict(), "hiss_probability": 1.0, "hiss_snr_db": (10.0, 10.0)})
    hissy = MixtureDataset(dataset.utterances, dataset.noises, dataset.responses, config, seed=0, length=100)
    for index in (0, 5, 9):
        item, plain = hissy[index], dataset[index]
        scale = np.sqrt(np.mean(item["clean"] ** 2) / np.mean(plain["clean"] ** 2))  # the level draw rescales
        np.testing.assert_allclose(item["clean"], plain["clean"] * scale, atol=1e-5)
        assert np.mean((item["noise"] - plain["noise"] * scale) ** 2) > 1e-8


def test_active_speech_level_ignores_pauses_and_active_snr_makes_noisier_mixtures(tiny_corpus):
    from hushnet.data.mixing import MixingConfig, MixtureDataset, active_speech_power
    from hushnet.data.sources import noise_clips, speech_utterances

    rate = 16000
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    with_pauses = np.concatenate([np.zeros(rate), tone, np.zeros(2 * rate)])
    tone_db = 10 * np.log10(np.mean(tone**2))
    assert abs(10 * np.log10(active_speech_power(tone, rate)) - tone_db) < 0.3
    # Three quarters silence: the plain RMS is 6 dB down, the active level within 1.2 dB of the tone's.
    assert 10 * np.log10(np.mean(with_pauses**2)) < tone_db - 5.9
    assert abs(10 * np.log10(active_speech_power(with_pauses, rate)) - tone_db) < 1.2
    assert active_speech_power(np.zeros(100), rate) == 0.0
    speech, noise = speech_utterances(tiny_corpus / "speech"), noise_clips(tiny_corpus / "noise")

    def measured_snr(reference: str) -> list[float]:
        config = MixingConfig(segment_seconds=0.5, easy_every=1, snr_reference=reference)
        items = [MixtureDataset(speech, noise, [], config, 0, 8)[i] for i in range(8)]
        return [10 * np.log10(np.mean(x["clean"] ** 2) / np.mean(x["noise"] ** 2)) for x in items]

    rms, active = measured_snr("rms"), measured_snr("active")
    assert all(a <= r + 1e-6 for r, a in zip(rms, active))  # the active level is never below the RMS
