"""Import of the model Germain, Chen & Koltun released (TF checkpoint or .npz) into model directories.

The model cards and the authors' licence are package data (``reference/cards/*.md``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from hushnet.model_dir import save_model
from hushnet.models.can import CAN, CANConfig
from hushnet.models.lossnet import LossNet, LossNetConfig
from hushnet.reference.tf_checkpoint import CheckpointError, read_checkpoint

CARDS = Path(__file__).parent / "cards"


def authors_license() -> str:
    """The MIT licence the authors released their weights under (goes into every imported card)."""
    return (CARDS / "authors-license.md").read_text()


def authors_card(title: str, source: str, body: str) -> str:
    """The model card of an imported network: ``body`` is ``can`` or ``lossnet`` (a card in ``cards/``)."""
    template = (CARDS / "authors.md").read_text().removesuffix("\n")
    return template.format(
        title=title, source=source, body=(CARDS / f"{body}.md").read_text().strip(), license=authors_license()
    )


def _conv_weight(tf_weight: np.ndarray) -> torch.Tensor:
    """TF conv2d kernel [1, taps, in, out] -> torch Conv1d weight [out, in, taps]."""
    return torch.from_numpy(np.ascontiguousarray(tf_weight[0].transpose(2, 1, 0)))


def can_from_tf(variables: dict[str, np.ndarray]) -> CAN:
    """The authors' enhancement network (``se_*`` variables) as a per-input CAN."""
    numbered = sorted(int(m.group(1)) for k in variables if (m := re.fullmatch(r"se_conv_(\d+)/weights", k)))
    if not numbered or numbered != list(range(len(numbered))):
        raise CheckpointError("no se_conv_0..N weights: not the authors' enhancement network")
    channels = variables["se_conv_0/weights"].shape[-1]
    model = CAN(CANConfig(channels=channels, dilated_layers=len(numbered) - 1, norm="per-input"))
    scopes = [f"se_conv_{i}" for i in numbered] + ["se_conv_last"]
    with torch.no_grad():
        for layer, scope in zip(model.layers, scopes):
            layer.conv.weight.copy_(_conv_weight(variables[f"{scope}/weights"]))
            layer.norm.w0.copy_(torch.tensor(float(variables[f"{scope}/w0"])))
            layer.norm.w1.copy_(torch.tensor(float(variables[f"{scope}/w1"])))
            layer.norm.beta.copy_(torch.from_numpy(variables[f"{scope}/BatchNorm/beta"]))
        model.output.weight.copy_(_conv_weight(variables["se_fc_last/weights"]))
        model.output.bias.copy_(torch.from_numpy(variables["se_fc_last/biases"]))
    return model.eval()


def lossnet_from_tf(variables: dict[str, np.ndarray]) -> LossNet:
    """The authors' loss network (``loss_conv_*``); their task heads are not recoverable."""
    count = sum(1 for k in variables if k.startswith("loss_conv_") and k.endswith("/weights"))
    if count == 0:
        raise CheckpointError("no loss_conv_* weights: not the authors' loss network")
    model = LossNet(LossNetConfig(layers=count, scene_classes=0, tags=0))
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            weight = _conv_weight(variables[f"loss_conv_{i}/weights"])
            if weight.shape != layer.conv.weight.shape:
                raise CheckpointError(
                    f"loss_conv_{i}: shape {tuple(weight.shape)} is not {tuple(layer.conv.weight.shape)}"
                )
            layer.conv.weight.copy_(weight)
            layer.beta.copy_(torch.from_numpy(variables[f"loss_conv_{i}/BatchNorm/beta"]))
    return model.eval()


def _read_variables(path: Path, scope_prefix: str) -> dict[str, np.ndarray]:
    """Model variables (no optimizer slots) whose names start with ``scope_prefix``."""

    def is_model_variable(name: str) -> bool:
        return name.startswith(scope_prefix) and "/Adam" not in name

    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files if is_model_variable(k)}
    return read_checkpoint(path, keep=is_model_variable)


def _find_source(source: Path, stem: str) -> Path | None:
    """In a folder: ``stem.ckpt`` (TF) or ``stem.npz``; a file is taken as it is."""
    if not source.is_dir():
        return source
    if (source / f"{stem}.ckpt.index").is_file():
        return source / f"{stem}.ckpt"
    if (source / f"{stem}.npz").is_file():
        return source / f"{stem}.npz"
    if (source / "models" / f"{stem}.ckpt.index").is_file():  # a clone of the authors' repository
        return source / "models" / f"{stem}.ckpt"
    return None


def import_reference(
    source: str | os.PathLike, output: str | os.PathLike, lossnet_output: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Import the authors' enhancement network (and loss network, where present) into model directories.

    ``source``: a folder with ``se_model.ckpt.*`` / ``loss_model.ckpt.*`` (TF) or ``.npz`` files, a clone of
    the authors' repository, or one checkpoint prefix / ``.index`` / ``.npz`` file. The loss network is
    written to ``lossnet_output`` (default: ``OUTPUT/lossnet``).
    """
    source = Path(source)
    if not source.exists() and not Path(str(source) + ".index").exists():
        raise CheckpointError(f"no such file or folder: {source}")
    written: dict[str, Path] = {}
    se_source = _find_source(source, "se_model")
    loss_source = _find_source(source, "loss_model") if source.is_dir() else None
    if se_source is not None:
        variables = _read_variables(se_source, "se_")
        if variables:
            model = can_from_tf(variables)
            card = authors_card("Authors' deep-feature-loss denoiser (imported)", se_source.name, "can")
            written["can"] = save_model(model, output, card, {"source": "authors", "imported_from": se_source.name})
        elif not source.is_dir():
            loss_source = se_source
    if loss_source is not None:
        variables = _read_variables(loss_source, "loss_conv_")
        if variables:
            model = lossnet_from_tf(variables)
            target = (
                Path(lossnet_output)
                if lossnet_output
                else (Path(output) / "lossnet" if "can" in written else Path(output))
            )
            card = authors_card("Authors' loss network (imported)", loss_source.name, "lossnet")
            written["lossnet"] = save_model(
                model, target, card, {"source": "authors", "imported_from": loss_source.name}
            )
    if not written:
        raise CheckpointError(f"found neither se_model nor loss_model variables in {source}")
    return written
