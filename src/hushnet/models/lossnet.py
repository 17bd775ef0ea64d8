"""The loss network of Germain, Chen & Koltun (2018) and its two task heads.

14 3-tap convs without bias, channels 32/64/128 (doubling every 5 layers), stride 2 for all but the
last, each followed by batch norm (statistics of the current input, no scale, a learnt shift) and
LeakyReLU(0.2). Padding is TensorFlow's "SAME", which is asymmetric for stride 2 (more on the right).
Heads: mean over time of the last layer, then a linear map per task (scene classes: softmax;
sound tags: one sigmoid each).

The layers compute in the channels-last row layout of :mod:`hushnet.models.layout` (oneDNN's fast
kernels); the features are returned as [batch, channels, time] views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hushnet.models.config import ModelConfig
from hushnet.models.layout import conv, from_rows, reduce_dims, to_rows


@dataclass
class LossNetConfig(ModelConfig):
    """Everything needed to rebuild a loss network."""

    what = "loss-network"

    layers: int = 14
    base_channels: int = 32
    double_every: int = 5
    max_channels: int = 128
    eps: float = 1e-3
    negative_slope: float = 0.2
    scene_classes: int = 15
    tags: int = 7
    sample_rate: int = 16000
    scene_names: list[str] | None = None
    tag_names: list[str] | None = None

    @property
    def channels(self) -> list[int]:
        return [min(self.base_channels * 2 ** (i // self.double_every), self.max_channels) for i in range(self.layers)]

    @property
    def strides(self) -> list[int]:
        return [2] * (self.layers - 1) + [1]


def same_padding(length: int, stride: int, kernel: int = 3) -> tuple[int, int]:
    """TensorFlow "SAME" padding (left, right): the extra sample goes on the right."""
    out = math.ceil(length / stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


class LossLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, eps: float, negative_slope: float) -> None:
        super().__init__()
        self.stride = stride
        self.eps = eps
        self.negative_slope = negative_slope
        self.conv = nn.Conv1d(in_channels, out_channels, 3, stride=stride, bias=False)
        self.beta = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, batch_statistics: bool = False) -> torch.Tensor:
        z = conv(self.conv, F.pad(x, same_padding(x.shape[-1], self.stride))).float()
        # Statistics of this input alone (the authors' batch norm as used in the feature loss, one file
        # at a time), or of the whole batch (as when they trained the classifier on batches of clips:
        # per-example statistics would erase the level differences between clips that tell classes apart).
        # Statistics in float32 whatever the autocast: bf16 sums lose their precision.
        dims = reduce_dims(z)
        var, mean = torch.var_mean(z, dim=(0, *dims) if batch_statistics else dims, keepdim=True, correction=0)
        normed = (z - mean) * torch.rsqrt(var + self.eps) + self.beta.view((1, -1) + (1,) * len(dims))
        return F.leaky_relu(normed, self.negative_slope)


class LossNet(nn.Module):
    """Returns the list of every layer's activations; ``classify`` adds the task heads."""

    def __init__(self, config: LossNetConfig | None = None, channels_last: bool = True) -> None:
        super().__init__()
        self.config = config or LossNetConfig()
        self.channels_last = channels_last
        cfg = self.config
        in_channels = [1] + cfg.channels[:-1]
        self.layers = nn.ModuleList(
            LossLayer(i, o, s, cfg.eps, cfg.negative_slope) for i, o, s in zip(in_channels, cfg.channels, cfg.strides)
        )
        width = cfg.channels[-1]
        self.scene_head = nn.Linear(width, cfg.scene_classes) if cfg.scene_classes else None
        self.tag_head = nn.Linear(width, cfg.tags) if cfg.tags else None

    def forward(
        self, x: torch.Tensor, num_layers: int | None = None, batch_statistics: bool = False
    ) -> list[torch.Tensor]:
        """Activations of the first ``num_layers`` layers (all by default) for x: [batch, samples]."""
        h = x.unsqueeze(1) if x.dim() == 2 else x
        if self.channels_last:
            h = to_rows(h)
        features = []
        for layer in self.layers[: num_layers or len(self.layers)]:
            h = layer(h, batch_statistics)
            features.append(from_rows(h) if self.channels_last else h)
        return features

    def classify(
        self, x: torch.Tensor, batch_statistics: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Scene logits [batch, classes] and tag logits [batch, tags] (None where a head is absent).

        Normalised with the statistics of the whole batch by default, as the classifier is trained.
        """
        pooled = self.forward(x, batch_statistics=batch_statistics)[-1].mean(dim=2)
        scene = self.scene_head(pooled) if self.scene_head is not None else None
        tags = self.tag_head(pooled) if self.tag_head is not None else None
        return scene, tags
