"""Training losses: the deep feature loss through a frozen loss network, and waveform L1/L2 baselines.

Deep feature loss (Germain et al. 2018): sum over the first ``layers`` loss-network layers of
``weight_l * mean|phi_l(clean) - phi_l(denoised)|``. The weights start equal; after a calibration
period each becomes 1 / (that layer's mean distance over the period), so every layer contributes
about equally. The calibrated weights are buffers: they travel in every checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hushnet.models.lossnet import LossNet


class FeatureLoss(nn.Module):
    """Deep feature loss with layer-weight calibration; the loss network is frozen."""

    def __init__(self, lossnet: LossNet, layers: int = 6, calibration_steps: int = 0) -> None:
        super().__init__()
        if not 1 <= layers <= len(lossnet.layers):
            raise ValueError(f"layers must be in 1..{len(lossnet.layers)}, got {layers}")
        self.lossnet = lossnet.eval().requires_grad_(False)
        self.layers = layers
        self.calibration_steps = calibration_steps
        self.register_buffer("weights", torch.ones(layers))
        self.register_buffer("distance_sums", torch.zeros(layers, dtype=torch.float64))
        self.register_buffer("calibrated_steps", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> "FeatureLoss":
        super().train(mode)
        self.lossnet.eval()  # always frozen, whatever the caller does
        return self

    @property
    def calibrating(self) -> bool:
        return int(self.calibrated_steps) < self.calibration_steps

    def distances(self, denoised: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Mean absolute feature difference per layer, shape [layers]."""
        with torch.no_grad():  # no gradient ever flows through the clean branch
            targets = self.lossnet(clean, self.layers)
        outputs = self.lossnet(denoised, self.layers)
        return torch.stack([F.l1_loss(o.float(), t.float()) for o, t in zip(outputs, targets)])

    def record(self, distances: torch.Tensor) -> bool:
        """Add one step's distances to the calibration; True when this step ended the period.

        The caller then runs :meth:`finish_calibration` (with a cross-process average under data
        parallelism, so that every process gets the same weights).
        """
        if not self.calibrating:
            return False
        self.distance_sums += distances.detach().double().to(self.distance_sums.device)
        self.calibrated_steps += 1
        return not self.calibrating

    def finish_calibration(self, reduce=None) -> None:
        """weights = 1 / mean distance of each layer over the period; ``reduce`` averages sums across processes."""
        sums = self.distance_sums.clone()
        if reduce is not None:
            sums = reduce(sums)
        means = sums / max(int(self.calibrated_steps), 1)
        self.weights.copy_((1.0 / means.clamp_min(1e-12)).float())

    def forward(self, denoised: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weighted loss, per-layer distances)."""
        distances = self.distances(denoised, clean)
        return (self.weights * distances).sum(), distances


@dataclass
class LossConfig:
    """Weights of each term; a zero weight leaves the term out."""

    feature: float = 1.0
    l1: float = 0.0
    l2: float = 0.0
    # Multi-resolution STFT magnitude loss (spectral convergence + log magnitude, auraloss).
    stft: float = 0.0
    # L2-SP (Li et al. 2018): ``anchor * sum((w - w_start)^2)``, a pull toward the starting weights
    # that guards what a fine-tuned model already knew. Applied by the training loop, which holds them.
    anchor: float = 0.0
    lossnet: str = "authors-lossnet"
    feature_layers: int = 6
    calibration_steps: int = 100
    # Calibrate the layer weights on the starting model, over ``calibration_steps`` batches drawn
    # before step 1, instead of training the first steps with equal weights.
    calibrate_before_training: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class TrainingLoss(nn.Module):
    """Weighted sum of the deep feature loss and the waveform L1/L2 losses."""

    def __init__(self, config: LossConfig, lossnet: LossNet | None = None) -> None:
        super().__init__()
        self.config = config
        if config.feature and lossnet is None:
            raise ValueError("the feature loss needs a loss network")
        if not (config.feature or config.l1 or config.l2 or config.stft):
            raise ValueError("at least one loss weight must be non-zero")
        self.feature = FeatureLoss(lossnet, config.feature_layers, config.calibration_steps) if config.feature else None
        self.stft = None
        if config.stft:
            from auraloss.freq import MultiResolutionSTFTLoss

            # Resolutions of 16/32/64 ms windows at 16 kHz: phonemes to pitch harmonics.
            self.stft = MultiResolutionSTFTLoss(
                fft_sizes=[512, 1024, 256], hop_sizes=[128, 256, 64], win_lengths=[512, 1024, 256]
            )

    def forward(self, denoised: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, the terms by name; ``feature_layers`` holds the per-layer distances)."""
        total = denoised.new_zeros((), dtype=torch.float32)
        terms: dict[str, torch.Tensor] = {}
        if self.feature is not None:
            loss, distances = self.feature(denoised, clean)
            terms["feature"], terms["feature_layers"] = loss, distances
            total = total + self.config.feature * loss
        if self.config.l1:
            terms["l1"] = F.l1_loss(denoised.float(), clean.float())
            total = total + self.config.l1 * terms["l1"]
        if self.config.l2:
            terms["l2"] = F.mse_loss(denoised.float(), clean.float())
            total = total + self.config.l2 * terms["l2"]
        if self.stft is not None:
            terms["stft"] = self.stft(denoised.float().unsqueeze(1), clean.float().unsqueeze(1))
            total = total + self.config.stft * terms["stft"]
        return total, terms
