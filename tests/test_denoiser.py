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
