"""The channels-last layout and bf16 autocast compute the networks that the conv1d float32 path does."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from hushnet.loss import LossConfig, TrainingLoss
from hushnet.model_dir import load_model
from hushnet.precision import cpu_bf16_flag
from hushnet.training import fastpath

from helpers import SHARED, tiny_can, tiny_lossnet

REAL = SHARED / "data" / "real_noisy_dev"
PAIRS = SHARED / "data" / "valentini_test_dev"
needs_real = pytest.mark.skipif(
    not (REAL / "manifest.csv").is_file() or not (PAIRS / "manifest.csv").is_file(),
    reason="shared real recordings not present",
)
# About bf16 arithmetic as the hardware does it: elsewhere torch emulates bf16, with other roundings.
needs_bf16_units = pytest.mark.skipif(cpu_bf16_flag() is None, reason="this CPU has no native bf16 units")


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


def real_clips(count: int = 3, seconds: float = 3.0) -> torch.Tensor:
    """The first ``seconds`` of the first ``count`` real noisy recordings, as a batch."""
    files = sorted(REAL.glob("*.flac"))[:count]
    return torch.stack([torch.from_numpy(sf.read(f, dtype="float32", frames=int(seconds * 16000))[0]) for f in files])


def in_both_layouts(network: torch.nn.Module, x: torch.Tensor):
    """(conv1d output, channels-last output) of ``network`` for ``x``."""
    with torch.no_grad():
        network.channels_last = False
        expected = network(x)
        network.channels_last = True
        return expected, network(x)


@pytest.mark.parametrize("norm", ["per-input", "batch"])
def test_channels_last_float32_equals_the_conv1d_path(norm):
    model = tiny_can(norm=norm, channels=8, dilated_layers=4).eval()
    expected, got = in_both_layouts(model, 0.1 * torch.randn(2, 3001, generator=torch.Generator().manual_seed(0)))
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_loss_network_features_are_the_same_in_both_layouts():
    expected, got = in_both_layouts(
        tiny_lossnet(), 0.1 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(1))
    )
    assert [f.shape for f in got] == [f.shape for f in expected]
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@needs_real
@pytest.mark.parametrize("name", ["authors-dfl", "hushnet-dfl"])
def test_bf16_forward_of_the_shipped_models_is_within_40_db_of_float32(name):
    """Median over 8 real recordings >= 40 dB. One quiet clip (a -52 dBFS violin, whose output rides on
    a DC offset ten times its own level after the network) gets 22-30 dB: bf16 rounds that offset, not
    the signal, and no single layer is to blame (each one kept in float32 changes it by < 1 dB)."""
    model = load_model(name, kind="can").eval()
    x = real_clips(count=8)
    if model.config.input_rms_db is not None:  # as the Denoiser feeds it
        x = x * (10 ** (model.config.input_rms_db / 20) / x.pow(2).mean(dim=1, keepdim=True).sqrt())
    with torch.no_grad():
        reference = model(x).numpy()
        with fastpath.autocast(torch.device("cpu"), "bf16"):
            fast = model(x).float().numpy()
    snrs = [snr_db(one, other) for one, other in zip(reference, fast)]
    assert np.median(snrs) >= 40.0 and min(snrs) >= 20.0, snrs


@needs_real
@needs_bf16_units
def test_bf16_gradients_of_one_training_step_point_where_float32_ones_do():
    """Each tensor's bf16 gradient points where its float32 one does. The scalar parameters (each
    layer's two norm weights, the output bias) are compared as one vector: the cosine of two single
    numbers is only their signs, and a scalar whose gradient is near zero may flip sign in any
    arithmetic that sums in another order."""
    model = load_model("authors-dfl", kind="can")
    loss = TrainingLoss(LossConfig(calibration_steps=0), load_model("authors-lossnet", kind="lossnet"))
    names = sorted(p.stem for p in (PAIRS / "clean").glob("*.flac"))[:4]
    frames = int(2.0 * 16000)
    clean, noisy = (
        torch.stack(
            [torch.from_numpy(sf.read(PAIRS / side / f"{n}.flac", dtype="float32", frames=frames)[0]) for n in names]
        )
        for side in ("clean", "noisy")
    )

    def gradients(precision: str) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with fastpath.autocast(torch.device("cpu"), precision):
            total, _ = loss(model(noisy).float(), clean)
        total.backward()
        return {name: p.grad.detach().clone().flatten() for name, p in model.named_parameters()}

    exact, fast = gradients("float32"), gradients("bf16")
    assert exact.keys() == fast.keys()
    assert all(exact[name].abs().max() > 0 for name in exact)
    scalars = [name for name in exact if exact[name].numel() == 1]
    assert len(scalars) == 2 * len(model.layers) + 1
    for grads in (exact, fast):
        grads["scalars"] = torch.cat([grads.pop(name) for name in scalars])
    cosines = {
        name: float(torch.nn.functional.cosine_similarity(exact[name].double(), fast[name].double(), dim=0))
        for name in exact
    }
    # The 1x1 output conv and the last layer see the last activations, whose bf16 rounding errors do
    # not average out in their gradient (a sum over time of activations riding on a large offset):
    # measured 0.91-0.95 for the output conv, 0.97-0.98 for the last shift and 0.989-0.99 for the last
    # conv (Zen 5), against >= 0.99 for every earlier tensor (0.993 on Zen 5). The oneDNN kernels sum
    # in a different order on each CPU, so the last layer's bar leaves that room. The 100-step comparison in
    # benchmarks/results/precision.md is what says whether this matters for training. The scalars
    # sum over every sample and channel too, and with the same rounding errors.
    final = len(model.layers) - 1
    last = {"output.weight", f"layers.{final}.norm.beta", f"layers.{final}.conv.weight", "scalars"}
    assert min(c for name, c in cosines.items() if name not in last) >= 0.99, cosines
    assert min(cosines[name] for name in last) >= 0.9, cosines
