"""Applying a CAN to signals of any length in bounded memory.

The streaming engine pushes the signal through the network block by block. Each layer keeps only the
``2 * dilation`` input samples it still needs (its left and right context) and lags behind the layer
before it by its dilation, so every output sample is computed exactly once, from exactly the inputs
whole-signal processing would use, including the zero "same" padding at the two ends. This is the
overlap-save idea applied per layer: no overlap is recomputed, the working set stays in cache
(measured ~3x faster per layer than whole-file tensors here), and memory does not grow with length.

- ``batch`` models (frozen statistics) stream in one pass: identical to whole-file processing.
- ``per-input`` models (the authors') need the statistics of every layer over the whole input. Short
  inputs run whole; longer ones get those statistics exactly by streaming: pass k streams layers
  0..k with the statistics of layers < k already known and accumulates the mean and variance of
  layer k (about 8 passes' worth of compute in all), then a last pass produces the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from hushnet.models.can import CAN

# Activation memory of whole-input processing, per sample: input, conv output and the zero-tail
# copy of the widest layer, 64 channels of float32.
_WHOLE_BYTES_PER_SAMPLE = 3 * 64 * 4
DEFAULT_MEMORY_BUDGET_MB = 512
DEFAULT_BLOCK = 8192

ProgressCallback = Callable[[int], None]


@dataclass
class _Stage:
    """One conv of the network with its streaming context buffer."""

    weight: torch.Tensor
    dilation: int
    bias: torch.Tensor | None
    buffer: torch.Tensor
    produced: int = 0  # outputs emitted so far (output positions 0..produced-1)

    @classmethod
    def for_conv(cls, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int, batch: int) -> "_Stage":
        """A stage at the start of the signal: its buffer holds the ``dilation`` zeros of the left padding."""
        weight = weight.detach()
        buffer = torch.zeros(batch, weight.shape[1], dilation, device=weight.device, dtype=weight.dtype)
        return cls(weight, dilation, None if bias is None else bias.detach(), buffer)

    def push(self, block: torch.Tensor, final: bool, extra: int = 0) -> torch.Tensor:
        """Append input samples; return every output whose inputs are now known.

        On the final push the input is followed by zeros (same padding), and ``extra`` further output
        positions past the end are computed (the zero tail of the authors' statistics).
        """
        d = self.dilation
        parts = [self.buffer, block] if block.shape[-1] else [self.buffer]
        if final:
            parts.append(block.new_zeros(block.shape[0], block.shape[1], d + extra))
        buffer = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        outputs = buffer.shape[-1] - 2 * d
        if outputs <= 0:
            self.buffer = buffer
            return buffer.new_zeros(buffer.shape[0], self.weight.shape[0], 0)
        z = F.conv1d(buffer, self.weight, self.bias, dilation=max(d, 1))
        self.buffer = buffer[..., buffer.shape[-1] - 2 * d :] if d else buffer[..., :0]
        self.produced += outputs
        return z


class StreamingCAN:
    """Exact block-wise evaluation of a CAN with fixed per-layer normalisation coefficients."""

    def __init__(self, model: CAN, batch: int, length: int, coefficients: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.model = model
        self.length = length
        self.coefficients = coefficients
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype
        self.batch = batch

    @torch.inference_mode()
    def run(
        self,
        read: Callable[[int, int], np.ndarray],
        write: Callable[[int, np.ndarray], None] | None = None,
        stats_layer: int | None = None,
        block: int = DEFAULT_BLOCK,
        progress: ProgressCallback | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Stream the signal ``read(start, stop) -> [batch, stop-start]`` through the network.

        Without ``stats_layer``: the output goes to ``write(start, samples)``. With it: layers up to
        ``stats_layer`` run, and the per-example mean and biased variance of that layer's conv output
        (over the positions its statistics cover) are returned, each [batch, channels, 1].
        """
        count = len(self.model.layers) if stats_layer is None else stats_layer + 1
        stages = [_Stage.for_conv(layer.conv.weight, None, layer.dilation, self.batch) for layer in self.model.layers[:count]]
        head = _Stage.for_conv(self.model.output.weight, self.model.output.bias, 0, self.batch)
        total = total_sq = None
        counted = 0
        written = 0
        slope = self.model.config.negative_slope
        for start in range(0, max(self.length, 1), block):
            stop = min(start + block, self.length)
            final = stop >= self.length
            chunk = torch.from_numpy(np.ascontiguousarray(read(start, stop), dtype=np.float32)).to(self.device, self.dtype)
            h = chunk.unsqueeze(1)
            for index, stage in enumerate(stages):
                collecting = index == stats_layer
                extra = self.model.layers[index].tail_length(self.length) if collecting else 0
                before = stage.produced
                z = stage.push(h, final, extra)
                if collecting:
                    block_sum = z.double().sum(dim=-1, keepdim=True)
                    block_sq = z.double().square().sum(dim=-1, keepdim=True)
                    total = block_sum if total is None else total + block_sum
                    total_sq = block_sq if total_sq is None else total_sq + block_sq
                    counted += z.shape[-1]
                    break
                # Positions past the end of the signal are never passed on: the next layer pads zeros.
                keep = max(0, min(z.shape[-1], self.length - before))
                scale, shift = self.coefficients[index]
                h = F.leaky_relu_(torch.addcmul(shift, z[..., :keep], scale), slope)
            if stats_layer is None:
                y = head.push(h, final).squeeze(1)
                if y.shape[-1]:
                    write(written, y.float().cpu().numpy())
                    written += y.shape[-1]
            if progress is not None:
                progress(stop - start)
        if stats_layer is not None:
            mean = total / counted
            var = (total_sq / counted - mean.square()).clamp_min(0)
            return mean.to(self.dtype), var.to(self.dtype)
        return None


def fixed_coefficients(model: CAN) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The per-channel (scale, shift) of every layer of a ``batch``-mode model at inference."""
    with torch.no_grad():
        return [layer.norm.coefficients(layer.norm.running_mean.view(1, -1, 1), layer.norm.running_var.view(1, -1, 1)) for layer in model.layers]


def whole_input_limit(memory_budget_mb: float, channels: int = 64) -> int:
    """Longest input (samples) that a per-input model processes in one piece within the budget."""
    return int(memory_budget_mb * 2**20 / (_WHOLE_BYTES_PER_SAMPLE * channels / 64))


def per_input_passes(length: int, memory_budget_mb: float, model: CAN) -> int:
    """Streaming passes a per-input model needs for ``length`` samples (1 when it runs whole)."""
    if length <= whole_input_limit(memory_budget_mb, model.config.channels):
        return 1
    return len(model.layers) + 1


def enhance(
    model: CAN,
    signal: np.ndarray,
    out: np.ndarray | None = None,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    block: int = DEFAULT_BLOCK,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Run ``model`` over ``signal`` ([batch, samples] float32, may be a memmap) into ``out``.

    Exact for both normalisation modes and any length; memory stays within about
    ``memory_budget_mb`` plus the input and output arrays (which may live on disk as memmaps).
    ``progress`` receives processed sample counts summed over all passes
    (``per_input_passes(...) * samples`` in total for per-input models).
    """
    if signal.ndim != 2:
        raise ValueError("signal must be [batch, samples]")
    batch, length = signal.shape
    if out is None:
        out = np.empty((batch, length), dtype=np.float32)
    if length == 0:
        return out
    model.eval()
    device = next(model.parameters()).device

    def read(start: int, stop: int) -> np.ndarray:
        return signal[:, start:stop]

    def write(start: int, samples: np.ndarray) -> None:
        out[:, start : start + samples.shape[-1]] = samples

    if model.config.norm == "batch":
        StreamingCAN(model, batch, length, fixed_coefficients(model)).run(read, write, block=block, progress=progress)
        return out
    if per_input_passes(length, memory_budget_mb, model) == 1:
        with torch.inference_mode():
            for row in range(batch):  # statistics are per example: one row at a time bounds memory
                x = torch.from_numpy(np.ascontiguousarray(signal[row], dtype=np.float32)).to(device)
                out[row] = model(x[None])[0].float().cpu().numpy()
                if progress is not None:
                    progress(length)
        return out
    coefficients: list[tuple[torch.Tensor, torch.Tensor]] = []
    for index, layer in enumerate(model.layers):
        mean, var = StreamingCAN(model, batch, length, coefficients).run(read, stats_layer=index, block=block, progress=progress)
        with torch.no_grad():
            coefficients.append(layer.norm.coefficients(mean, var))
    StreamingCAN(model, batch, length, coefficients).run(read, write, block=block, progress=progress)
    return out
