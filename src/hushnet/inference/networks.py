"""Inference forms of the CAN (torch): what the torch engine runs and what ``export-onnx`` exports.

- ``FoldedCAN``: a fixed-statistics (``batch``) model with each layer's normalisation folded into its
  convolution (``z * scale + shift`` becomes the conv's weights and bias): plain Conv + LeakyReLU,
  about 1.8x faster in torch than normalising separately, and what onnxruntime runs best.
- ``PerInputCAN``: a ``per-input`` model written with ops that export with a dynamic length: the
  statistics of each layer are computed in the graph per example and channel, including the conv
  outputs on the zero tail the authors' dilated layers counted (see ``models/can.py``). Those tail
  outputs only see the last ``dilation`` input samples (through the conv's first tap), so they are
  computed from a fixed-size slice and a mask instead of padding by a length-dependent amount.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hushnet.models.can import CAN
from hushnet.temporaries import atomic_write

# Opset of the exported graphs (Conv, LeakyRelu, ReduceMean/ReduceSum, Slice): recorded in the cards.
ONNX_OPSET = 17


class FoldedCAN(nn.Module):
    """A ``batch``-mode CAN at inference, normalisation folded: [batch, samples] -> [batch, samples]."""

    def __init__(self, model: CAN) -> None:
        super().__init__()
        if model.config.norm != "batch":
            raise ValueError("only fixed-statistics (batch) models fold their normalisation")
        self.negative_slope = model.config.negative_slope
        self.dilations = list(model.config.dilations)
        self.convs = nn.ModuleList()
        with torch.no_grad():
            for layer in model.layers:
                norm = layer.norm
                scale, shift = norm.coefficients(norm.running_mean.view(1, -1, 1), norm.running_var.view(1, -1, 1))
                weight = layer.conv.weight
                conv = nn.Conv1d(
                    weight.shape[1], weight.shape[0], 3, dilation=layer.dilation, padding=layer.dilation, bias=True
                )
                conv.weight.copy_(weight * scale.view(-1, 1, 1))
                conv.bias.copy_(shift.flatten())
                self.convs.append(conv)
            self.output = nn.Conv1d(model.output.in_channels, 1, 1, bias=True)
            self.output.load_state_dict(model.output.state_dict())
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        for conv in self.convs:
            h = F.leaky_relu(conv(h), self.negative_slope)
        return self.output(h).squeeze(1)


class PerInputCAN(nn.Module):
    """A ``per-input`` CAN with its statistics computed in an exportable way: [batch, samples] in and out."""

    def __init__(self, model: CAN) -> None:
        super().__init__()
        if model.config.norm != "per-input":
            raise ValueError("PerInputCAN needs a per-input model")
        self.model = model.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        length = x.shape[-1]
        for layer in self.model.layers:
            z = layer.conv(h)
            total = z.sum(dim=2, keepdim=True)
            count = length
            tail_terms = None
            if layer.stats_include_tail:
                d = layer.dilation
                tail = (d - length % d) % d
                # Tail output i (0 <= i < tail) is W[:, :, 0] @ h[L - d + i]: the last d inputs (zeros
                # before the start for inputs shorter than d), masked to the first ``tail`` of them.
                last = torch.cat([h.new_zeros(h.shape[0], h.shape[1], d), h], dim=-1)[..., -d:]
                mask = (torch.arange(d, device=h.device) < tail).to(h.dtype)
                tail_terms = torch.einsum("oi,bit->bot", layer.conv.weight[:, :, 0], last) * mask
                total = total + tail_terms.sum(dim=2, keepdim=True)
                count = length + tail
            mean = total / count
            centred = (z - mean).square().sum(dim=2, keepdim=True)
            if tail_terms is not None:
                centred = centred + ((tail_terms - mean).square() * mask).sum(dim=2, keepdim=True)
            var = centred / count
            scale, shift = layer.norm.coefficients(mean, var)
            h = F.leaky_relu(z * scale + shift, layer.negative_slope)
        return self.model.output(h).squeeze(1)


def inference_network(model: CAN) -> nn.Module:
    """The fastest exact inference form of ``model``: folded (batch) or exportable per-input (an
    ensemble: each member in its form, one weighted sum)."""
    if hasattr(model, "inference_network"):
        return model.inference_network(exportable=True)
    return FoldedCAN(model) if model.config.norm == "batch" else PerInputCAN(model)


def export_onnx(model: CAN, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` as one self-contained ONNX file: input ``audio`` [batch, samples] float32,
    output ``enhanced`` of the same shape, both dimensions dynamic. Written atomically.
    ``metadata``: entries for the file's ``metadata_props``, e.g. the fingerprint of the model
    directory it comes from (``model_dir.fingerprint_metadata``), checked when the directory is loaded."""
    network = inference_network(model.float().cpu().eval())
    # The length must not be a multiple of any dilation while tracing, or the tail logic folds away.
    example = torch.zeros(2, 3 * model.config.receptive_radius + 3)

    def write(name: str) -> None:
        with torch.no_grad():
            # The TorchScript exporter keeps the length symbolic through the tail arithmetic.
            torch.onnx.export(
                network,
                (example,),
                name,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=["audio"],
                output_names=["enhanced"],
                dynamic_axes={"audio": {0: "batch", 1: "samples"}, "enhanced": {0: "batch", 1: "samples"}},
            )
        if metadata:
            set_onnx_metadata(name, metadata)

    atomic_write(path, write)
    return Path(path)


def set_onnx_metadata(path: str | os.PathLike, values: dict[str, str]) -> None:
    """Set ``metadata_props`` entries of the ONNX file at ``path`` in place (the graph is untouched)."""
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
