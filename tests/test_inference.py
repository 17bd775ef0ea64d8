import numpy as np
import pytest
import torch

from hushnet.inference import enhance, per_input_passes, whole_input_limit

from conftest import speechlike, tiny_can


def whole(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("block", [97, 1000, 4096])
@pytest.mark.parametrize("length", [1, 50, 3001, 20000])
def test_streaming_equals_whole_for_batch_models(block, length):
    model = tiny_can("batch")
    x = speechlike(length / 16000 + 1e-9, channels=2)[:, :length]
    expected = whole(model, x)
    got = enhance(model, x, block=block)
    assert got.shape == x.shape
    assert np.abs(got - expected).max() < 1e-5


def test_streaming_equals_whole_for_the_full_size_network():
    model = tiny_can("batch", channels=64, dilated_layers=12)
    x = speechlike(3.0)
    assert np.abs(enhance(model, x) - whole(model, x)).max() < 1e-5


@pytest.mark.parametrize("length", [999, 5000, 12347])
def test_per_input_streaming_statistics_are_exact(length):
    model = tiny_can("per-input", dilated_layers=6)  # dilations up to 64: zero tails of every size
    x = speechlike(1.0, channels=2)[:, :length]
    expected = whole(model, x)
    streamed = enhance(model, x, memory_budget_mb=1e-6, block=1024)
    assert per_input_passes(length, 1e-6, model) == len(model.layers) + 1
    assert np.abs(streamed - expected).max() < 1e-5


def test_per_input_whole_file_limit_follows_the_budget():
    model = tiny_can("per-input")
    assert per_input_passes(1000, 512, model) == 1
    assert whole_input_limit(512) > 500_000  # about 40 s of 16 kHz audio at the 64-channel size
    assert abs(whole_input_limit(512, channels=8) - 8 * whole_input_limit(512)) <= 8


def test_progress_counts_every_pass():
    model = tiny_can("per-input", dilated_layers=2)
    seen = []
    enhance(model, speechlike(0.5), memory_budget_mb=1e-6, progress=seen.append)
    assert sum(seen) == 8000 * (len(model.layers) + 1)
