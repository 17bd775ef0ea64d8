"""The memory layout the networks compute in: 1-D signals as one-row images in channels-last memory.

oneDNN (PyTorch's CPU backend) has its fast kernels, float32 and bf16 on AMX / AVX-512 BF16, for
channels-last 2-D convolutions; a ``Conv1d`` over ``[batch, channels, time]`` misses them (the
figures are in docs/training.md).
So the networks keep ``nn.Conv1d`` parameters (model files unchanged) and run them through
:func:`conv`, which applies a 4-D tensor ``[batch, channels, 1, time]`` with the weight viewed as
``[out, in, 1, taps]``, and a 3-D tensor as the plain conv1d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def to_rows(x: torch.Tensor) -> torch.Tensor:
    """[batch, channels, time] -> [batch, channels, 1, time] in channels-last memory."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def from_rows(x: torch.Tensor) -> torch.Tensor:
    """[batch, channels, 1, time] -> [batch, channels, time] (a view)."""
    return x.squeeze(2)


def reduce_dims(z: torch.Tensor) -> tuple[int, ...]:
    """The time dimensions of a 3-D or 4-D activation: what a per-channel statistic reduces over."""
    return tuple(range(2, z.dim()))


def conv(module: nn.Conv1d, x: torch.Tensor, padding: int | None = None) -> torch.Tensor:
    """``module`` applied to ``x`` in ``x``'s layout; ``padding`` overrides the module's own (on time).

    A convolution from or to a single channel (the waveform in, the waveform out) always runs in
    float32, whatever the autocast: bf16 would round the signal itself to 8 bits of mantissa (about
    -50 dB), for a conv that costs next to nothing.
    """
    if torch.is_autocast_enabled(x.device.type) and 1 in (module.in_channels, module.out_channels):
        with torch.autocast(x.device.type, enabled=False):
            return conv(module, x.float(), padding)
    pad = module.padding[0] if padding is None else padding
    if x.dim() == 3:
        return F.conv1d(x, module.weight, module.bias, module.stride, pad, module.dilation)
    weight = module.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, weight, module.bias, (1, module.stride[0]), (0, pad), (1, module.dilation[0]))
