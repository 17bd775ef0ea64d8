"""The context aggregation network (CAN) of Germain, Chen & Koltun (2018).

Raw waveform in, waveform of the same length out. A 3-tap conv, ``dilated_layers`` 3-tap convs with
dilation 2^1 .. 2^dilated_layers, one more 3-tap conv, each followed by the adaptive normalisation
``w0*z + w1*BN(z)`` and LeakyReLU(0.2), then a 1x1 conv with bias to one channel.

Two normalisation modes:

``per-input``
    The authors' behaviour: the batch-norm statistics are those of the input being processed, per
    example, at training *and* inference. For dilated layers the statistics also cover the conv
    outputs on the zero tail that pads the layer input to a multiple of the dilation (their graph
    folded the signal to emulate dilation). The output at any instant depends on the whole input.
``batch``
    Ordinary batch norm with running statistics: batch statistics while training, the frozen running
    statistics at inference. The network is then a fixed nonlinear filter of finite support (the
    receptive field), so overlapping chunks reproduce whole-file processing exactly.

Layout: the layers run as 2-D convolutions over ``[batch, channels, 1, time]`` in channels-last
memory (:mod:`hushnet.models.layout`), which is where oneDNN has its fast float32 and bf16 kernels
(AMX, AVX-512 BF16); the weights stay ``Conv1d`` weights, so model files and the ONNX export are
unchanged. ``channels_last = False`` runs the plain ``[batch, channels, time]`` conv1d path.

This module holds the network and nothing else: no files, no training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The config is torch-free (the light runtime reads it); re-exported here for the training code.
from hushnet.models.config import NORM_MODES, CANConfig  # noqa: E402,F401
from hushnet.models.layout import conv, from_rows, reduce_dims, to_rows


class AdaptiveNorm(nn.Module):
    """``w0 * z + w1 * ((z - mean) / sqrt(var + eps) + beta)``; batch norm without a scale (gamma = 1).

    ``coefficients`` reduces the whole thing to a per-channel affine map ``z * scale + shift`` so that
    callers can apply it in one fused op, or supply statistics computed elsewhere (streaming).
    """

    def __init__(self, channels: int, mode: str, eps: float, momentum: float) -> None:
        super().__init__()
        self.mode = mode
        self.eps = eps
        self.momentum = momentum
        self.w0 = nn.Parameter(torch.tensor(1.0))
        self.w1 = nn.Parameter(torch.tensor(0.0))
        self.beta = nn.Parameter(torch.zeros(channels))
        if mode == "batch":
            self.register_buffer("running_mean", torch.zeros(channels))
            self.register_buffer("running_var", torch.ones(channels))

    def statistics(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and biased variance to normalise ``z`` ([batch, channels, time] or [batch, channels, 1, time])
        with, shaped like ``z`` with every dimension but the channels (and, per input, the batch) of size 1.

        Always in float32: under bf16 autocast the conv outputs are bf16, and bf16 sums lose the
        statistics' precision.
        """
        z = z.float()
        if self.mode == "per-input":
            var, mean = torch.var_mean(z, dim=reduce_dims(z), keepdim=True, correction=0)
            return mean, var
        shape = (1, -1) + (1,) * (z.dim() - 2)
        if self.training:
            var, mean = torch.var_mean(z, dim=(0, *reduce_dims(z)), keepdim=True, correction=0)
            with torch.no_grad():
                count = z.numel() // z.shape[1]
                unbiased = var.flatten() * count / max(count - 1, 1)
                self.running_mean.lerp_(mean.flatten(), self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
            return mean, var
        return self.running_mean.view(shape), self.running_var.view(shape)

    def coefficients(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (scale, shift) such that the normalised output is ``z * scale + shift``."""
        inv_std = torch.rsqrt(var + self.eps)
        scale = self.w0 + self.w1 * inv_std
        shift = self.w1 * (self.beta.view((1, -1) + (1,) * (mean.dim() - 2)) - mean * inv_std)
        return scale, shift


class ConvNormAct(nn.Module):
    """3-tap dilated conv (no bias), adaptive normalisation, LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, config: CANConfig) -> None:
        super().__init__()
        self.dilation = dilation
        self.negative_slope = config.negative_slope
        self.conv = nn.Conv1d(in_channels, out_channels, 3, dilation=dilation, padding=dilation, bias=False)
        self.norm = AdaptiveNorm(out_channels, config.norm, config.eps, config.batch_norm_momentum)
        # The authors' graph emulated dilation by zero-padding the layer input to a multiple of the
        # dilation and folding it; their batch-norm statistics therefore include that zero tail.
        self.stats_include_tail = config.norm == "per-input" and dilation > 1

    def tail_length(self, length: int) -> int:
        """Zero samples appended to an input of ``length`` samples before statistics are taken."""
        return (-length) % self.dilation if self.stats_include_tail else 0

    def activate(self, z: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return F.leaky_relu(torch.addcmul(shift, z, scale), self.negative_slope)
        # At inference, work in place: whole-file activations are the memory peak.
        return F.leaky_relu_(z.mul_(scale).add_(shift), self.negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        tail = self.tail_length(length)
        z = conv(self.conv, F.pad(x, (0, tail)) if tail else x)
        scale, shift = self.norm.coefficients(*self.norm.statistics(z))
        return self.activate(z[..., :length] if tail else z, scale, shift)


class CAN(nn.Module):
    """Waveform [batch, samples] or [batch, 1, samples] in, the same shape out."""

    def __init__(self, config: CANConfig | None = None, channels_last: bool = True) -> None:
        super().__init__()
        self.config = config or CANConfig()
        # Not part of the config: a way of computing the same function, not a different network.
        self.channels_last = channels_last
        width = self.config.channels
        dilations = self.config.dilations
        self.layers = nn.ModuleList(
            ConvNormAct(1 if i == 0 else width, width, d, self.config) for i, d in enumerate(dilations)
        )
        self.output = nn.Conv1d(width, 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 2
        h = x.unsqueeze(1) if squeeze else x
        if self.channels_last:
            h = to_rows(h)
        for layer in self.layers:
            h = layer(h)
        y = conv(self.output, h)
        if self.channels_last:
            y = from_rows(y)
        return y.squeeze(1) if squeeze else y

    def init_identity(self) -> None:
        """Start each 64->64 layer near the identity (centre tap = I), as the paper's CAN does.

        A network whose dilated layers start as identities passes the input through and learns the
        correction; measured to learn much faster at small budgets than the default initialisation.
        """
        with torch.no_grad():
            for layer in self.layers[1:]:
                weight = layer.conv.weight
                weight.zero_()
                channels = min(weight.shape[0], weight.shape[1])
                weight[torch.arange(channels), torch.arange(channels), 1] = 1.0


def to_batch_mode(per_input: CAN, calibration: torch.Tensor) -> CAN:
    """The same weights in ``batch`` mode, running statistics = the per-input statistics averaged over
    the examples of ``calibration`` ([batch, samples]): a chunkable model that starts where the
    per-input one was.
    """
    model = CAN(CANConfig(**{**per_input.config.to_dict(), "norm": "batch"}))
    model.load_state_dict(per_input.state_dict(), strict=False)
    h = calibration.unsqueeze(1) if calibration.dim() == 2 else calibration
    with torch.no_grad():
        for frozen, layer in zip(model.layers, per_input.layers):
            tail = layer.tail_length(h.shape[-1])
            mean, var = layer.norm.statistics(layer.conv(F.pad(h, (0, tail))))
            frozen.norm.running_mean.copy_(mean.mean(dim=0).flatten())
            frozen.norm.running_var.copy_(var.mean(dim=0).flatten())
            h = layer(h)
    return model.eval()
