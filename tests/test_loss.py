"""Losses: frozen loss network, no gradient through the clean branch, calibration, waveform baselines."""

from __future__ import annotations

import pytest
import torch

from hushnet.loss import FeatureLoss, LossConfig, TrainingLoss

from helpers import tiny_lossnet


def signals(seed: int = 0, batch: int = 2, samples: int = 3000):
    generator = torch.Generator().manual_seed(seed)
    clean = 0.1 * torch.randn(batch, samples, generator=generator)
    return clean, clean + 0.05 * torch.randn(batch, samples, generator=generator)


def test_feature_loss_is_zero_for_identical_signals_and_grows_with_noise():
    loss = FeatureLoss(tiny_lossnet(), layers=6)
    clean, _ = signals()
    assert float(loss(clean, clean)[0]) == 0.0
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(clean.shape, generator=generator)
    values = [float(loss(clean + level * noise, clean)[0]) for level in (0.001, 0.01, 0.1)]
    assert values[0] < values[1] < values[2]


def test_lossnet_is_frozen_and_the_clean_branch_gets_no_gradient():
    loss = FeatureLoss(tiny_lossnet(), layers=4)
    loss.train()
    assert not loss.lossnet.training
    assert all(not p.requires_grad for p in loss.lossnet.parameters())
    clean, noisy = signals()
    clean.requires_grad_(True)
    denoised = noisy.clone().requires_grad_(True)
    loss(denoised, clean)[0].backward()
    assert clean.grad is None
    assert denoised.grad is not None and denoised.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.lossnet.parameters())


def test_calibration_sets_weights_to_inverse_mean_distances():
    loss = FeatureLoss(tiny_lossnet(), layers=3, calibration_steps=3)
    seen = []
    for step in range(3):
        assert torch.equal(loss.weights, torch.ones(3))  # equal weights during calibration
        clean, noisy = signals(seed=step)
        _, distances = loss(noisy, clean)
        seen.append(distances.detach().double())
        ended = loss.record(distances)
        assert ended == (step == 2)
    loss.finish_calibration()
    expected = 1.0 / torch.stack(seen).mean(dim=0)
    assert torch.allclose(loss.weights.double(), expected, rtol=1e-6)
    # After calibration every layer contributes exactly 1 on average over the calibration data.
    weighted = torch.stack(
        [loss.weights.double() * loss(*reversed(signals(seed=step)))[1].detach().double() for step in range(3)]
    )
    assert torch.allclose(weighted.mean(dim=0), torch.ones(3, dtype=torch.float64), rtol=1e-5)
    assert not loss.record(torch.ones(3))  # nothing more is recorded
    assert "weights" in loss.state_dict() and "distance_sums" in loss.state_dict()


def test_calibration_reduce_averages_across_processes():
    loss = FeatureLoss(tiny_lossnet(), layers=2, calibration_steps=1)
    loss.record(torch.tensor([2.0, 4.0]))
    loss.finish_calibration(reduce=lambda sums: (sums + torch.tensor([6.0, 4.0], dtype=sums.dtype)) / 2)
    assert loss.weights.tolist() == pytest.approx([0.25, 0.25])


def test_training_loss_combines_terms_with_weights():
    clean, noisy = signals()
    l1 = TrainingLoss(LossConfig(feature=0.0, l1=1.0))
    l2 = TrainingLoss(LossConfig(feature=0.0, l2=1.0))
    both = TrainingLoss(LossConfig(feature=2.0, l1=0.5, l2=3.0, calibration_steps=0), tiny_lossnet())
    total_l1, terms_l1 = l1(noisy, clean)
    assert float(total_l1) == pytest.approx(float((noisy - clean).abs().mean()))
    assert float(l2(noisy, clean)[0]) == pytest.approx(float(((noisy - clean) ** 2).mean()))
    total, terms = both(noisy, clean)
    assert float(total) == pytest.approx(
        2 * float(terms["feature"]) + 0.5 * float(terms["l1"]) + 3 * float(terms["l2"]), rel=1e-6
    )
    assert set(terms_l1) == {"l1"}
    with pytest.raises(ValueError, match="needs a loss network"):
        TrainingLoss(LossConfig(feature=1.0))
    with pytest.raises(ValueError, match="at least one"):
        TrainingLoss(LossConfig(feature=0.0))


def test_stft_term_is_zero_for_identical_signals_and_weighted_in():
    clean, noisy = signals()
    loss = TrainingLoss(LossConfig(feature=0.0, l1=1.0, stft=0.5))
    total, terms = loss(noisy, clean)
    assert float(total) == pytest.approx(float(terms["l1"]) + 0.5 * float(terms["stft"]), rel=1e-6)
    assert float(terms["stft"]) > 0.1
    assert float(loss(clean, clean)[1]["stft"]) < 1e-3
