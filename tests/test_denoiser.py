"""The Denoiser API: level normalisation makes the output independent of the recording level."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import speechlike, tiny_can
from hushnet.denoiser import Denoiser


@pytest.mark.parametrize("gain_db", [-40.0, -12.0, 6.0])
def test_level_normalised_model_output_follows_the_input_level(gain_db):
    denoiser = Denoiser(tiny_can(input_rms_db=-23.0))
    x = 0.1 * speechlike(1.5)
    gain = 10 ** (gain_db / 20)
    reference = denoiser.denoise(x, 16000)
    scaled = denoiser.denoise(gain * x, 16000) / gain
    assert np.abs(scaled - reference).max() <= 1e-5 * np.abs(reference).max()


def test_without_level_normalisation_the_level_changes_the_result():
    """The check above can fail: a model fed the raw level (the authors') behaves differently at -40 dB."""
    denoiser = Denoiser(tiny_can(input_rms_db=None))
    x = 0.1 * speechlike(1.5)
    reference = denoiser.denoise(x, 16000)
    scaled = denoiser.denoise(0.01 * x, 16000) / 0.01
    assert np.abs(scaled - reference).max() > 1e-2 * np.abs(reference).max()


def test_digital_silence_stays_silent_with_level_normalisation():
    denoiser = Denoiser(tiny_can(input_rms_db=-23.0))
    assert not np.any(denoiser.denoise(np.zeros(16000, np.float32), 16000))


def test_long_file_staging_releases_pages_and_gives_the_same_result(tmp_path, monkeypatch):
    """Files staged on disk (as long ones are) hand their pages back as work proceeds; nothing changes."""
    import soundfile as sf

    from hushnet import denoiser as module

    path = tmp_path / "in.wav"
    sf.write(path, speechlike(3.0)[0].astype(np.float32), 16000, subtype="FLOAT")
    denoiser = Denoiser(tiny_can(input_rms_db=-23.0))
    denoiser.denoise_file(path, tmp_path / "in_memory.wav", subtype="FLOAT")
    releases = []
    monkeypatch.setattr(module, "IN_MEMORY_LIMIT_BYTES", 0)
    monkeypatch.setattr(module._Staging, "RELEASE_EVERY", 4000)
    monkeypatch.setattr(module, "FEED_SAMPLES", 4000)
    original = module._Staging.release
    monkeypatch.setattr(module._Staging, "release", lambda self: (releases.append(len(self.maps)), original(self)))
    denoiser.denoise_file(path, tmp_path / "staged.wav", subtype="FLOAT")
    assert len(releases) >= 5 and max(releases) == 2  # input and output memmaps, released many times
    a, _ = sf.read(tmp_path / "in_memory.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "staged.wav", dtype="float32")
    assert np.array_equal(a, b)
