"""Model directories (safetensors + config.json + model card) and import of the authors' release.

A model directory holds ``model.safetensors`` (the weights; never pickle), ``config.json`` (which
network, the dataclass that rebuilds it, provenance) and ``README.md`` (the model card). A shipped
model is addressed by name (a folder under ``hushnet/pretrained``), any other by path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hushnet.audio import default_file_mode, make_temporary
from hushnet.models.can import CAN, CANConfig
from hushnet.models.lossnet import LossNet, LossNetConfig
from hushnet.tf_checkpoint import CheckpointError, checkpoint_prefix, read_checkpoint

# Directory lookup and config reading live in the torch-free model_files (the light runtime's).
from hushnet.model_files import (  # noqa: E402,F401
    CARD_FILE, CONFIG_FILE, DEFAULT_MODEL, ONNX_FILE, PRETRAINED_DIR, WEIGHTS_FILE, ModelError, available_models, read_config, resolve_model_dir,
)

_KINDS: dict[str, tuple[type, type]] = {"can": (CAN, CANConfig), "lossnet": (LossNet, LossNetConfig)}

AUTHORS_LICENSE = """MIT License

Copyright (c) 2018 François G. Germain

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    temporary = make_temporary(path)
    try:
        write(temporary)
        os.chmod(temporary, default_file_mode())  # some writers recreate the file with 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_model(
    model: CAN | LossNet, directory: str | os.PathLike, card: str, extra: dict | None = None
) -> Path:
    """Write ``model`` as a model directory (each file written atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kind = "can" if isinstance(model, CAN) else "lossnet"
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    _atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"kind": kind}))
    config = {"kind": kind, "config": model.config.to_dict(), **(extra or {})}
    _atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    _atomic_write(directory / CARD_FILE, lambda p: p.write_text(card))
    # A model.onnx left from earlier weights would be stale: `hushnet export-onnx` writes a new one.
    (directory / ONNX_FILE).unlink(missing_ok=True)
    return directory


# --- training checkpoints -------------------------------------------------------------------------
# A run folder keeps OUTPUT/checkpoints/step_NNNNNNN/ folders and a ``latest`` file naming the newest
# complete one. A folder is written under a temporary name and renamed, then ``latest`` is replaced
# atomically: a run killed at any instant leaves the previous checkpoint intact and findable.

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
TRAINING_STATE_FILE = "training_state.safetensors"
TRAINING_INFO_FILE = "training_state.json"


def write_atomic_text(path: Path, text: str) -> None:
    _atomic_write(Path(path), lambda p: p.write_text(text))


def latest_checkpoint(output: str | os.PathLike) -> Path | None:
    """The last complete checkpoint of a run folder, if any."""
    pointer = Path(output) / CHECKPOINTS_DIR / LATEST_FILE
    if not pointer.is_file():
        return None
    directory = pointer.parent / pointer.read_text().strip()
    return directory if (directory / TRAINING_INFO_FILE).is_file() else None


def publish_checkpoint(output: str | os.PathLike, step: int, write: Callable[[Path], None], keep: int = 2) -> Path:
    """Have ``write`` fill a staging folder, rename it to step_NNNNNNN, point ``latest`` at it, prune old ones."""
    folder = Path(output) / CHECKPOINTS_DIR
    directory = folder / f"step_{step:07d}"
    staging = folder / f".step_{step:07d}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write(staging)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)
    write_atomic_text(folder / LATEST_FILE, directory.name + "\n")
    for old in sorted(folder.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def write_training_state(directory: Path, step: int, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict) -> None:
    """Optimizer state, extra tensors and the torch RNG as safetensors; step and the rest as JSON."""
    state = optimizer.state_dict()
    everything = {f"optimizer.{index}.{key}": value for index, values in state["state"].items() for key, value in values.items()}
    everything.update(tensors)
    everything["rng.torch"] = torch.get_rng_state()
    save_file({k: v.detach().cpu().contiguous() for k, v in everything.items()}, str(directory / TRAINING_STATE_FILE))
    optimizer_info = {"param_groups": state["param_groups"], "state_keys": {str(i): sorted(v) for i, v in state["state"].items()}}
    (directory / TRAINING_INFO_FILE).write_text(json.dumps({"step": step, "optimizer": optimizer_info, **info}, indent=1) + "\n")


def read_training_state(directory: Path, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Restore the optimizer and the torch RNG; returns (all tensors, info)."""
    info = json.loads((directory / TRAINING_INFO_FILE).read_text())
    tensors = load_file(str(directory / TRAINING_STATE_FILE))
    keys = info["optimizer"]["state_keys"]
    state = {int(index): {key: tensors[f"optimizer.{index}.{key}"] for key in names} for index, names in keys.items()}
    optimizer.load_state_dict({"state": state, "param_groups": info["optimizer"]["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return tensors, info


def load_model(path_or_name: str | os.PathLike | None, kind: str | None = None) -> CAN | LossNet:
    """Rebuild a network from a model directory (or shipped name), in eval mode."""
    directory = resolve_model_dir(path_or_name)
    config = read_config(directory)
    if kind is not None and config["kind"] != kind:
        raise ModelError(f"{directory} holds a {config['kind']} model, not a {kind}")
    network_class, config_class = _KINDS[config["kind"]]
    try:
        model = network_class(config_class.from_dict(config["config"]))
        state = load_file(str(directory / WEIGHTS_FILE))
        model.load_state_dict(state)
    except (OSError, RuntimeError, ValueError, TypeError) as error:
        raise ModelError(f"cannot load model from {directory}: {error}") from None
    return model.eval()


# --- import of the authors' released checkpoints -------------------------------------------------


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
                raise CheckpointError(f"loss_conv_{i}: shape {tuple(weight.shape)} is not {tuple(layer.conv.weight.shape)}")
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


AUTHORS_CARD = """# {title}

Imported from the model released by François G. Germain, Qifeng Chen and Vladlen Koltun with
*Speech Denoising with Deep Feature Losses* (arXiv:1806.10522; Proc. Interspeech 2019, 2723–2727),
repository `francoisgermain/SpeechDenoisingWithDeepFeatureLosses` (MIT licence, notice below).
Imported by `hushnet import-reference` from `{source}`; the weights are unchanged.

{body}

## Licence of the weights

{license}"""

_SE_BODY = """- Network: context aggregation network, 64 channels, dilations 1, 2, ..., 4096, 1, 1x1 output;
  receptive field 16,385 samples at 16 kHz.
- Normalisation: `per-input` (batch-norm statistics of each input, at inference too, including the
  zero tail of dilated layers), exactly as the authors' graph computes it. The output depends on
  the whole file and on its level: feed audio at its natural level (their training data peaks
  near 0.5). Recordings longer than 4 s (`segment_seconds` in config.json, the length of the
  authors' training files) are cut into 4-s segments, each with its own statistics, joined with a
  1-s linear crossfade (issue 11 measured this best: PESQ-WB 2.191 vs 2.202 per file, 2.088 with
  whole-recording statistics); up to 4 s a file gets exactly its per-file result.
- Training data (the authors'): the 28-speaker noisy-VCTK training set of Valentini-Botinhao et al.
  (CC BY 4.0), 16 kHz, deep feature loss over a loss network trained on DCASE 2016 scenes and
  CHiME-Home tags. Their training speakers include p226 and p287: the `valentini_dev` pairs are not
  a fair test of this model.
- Reference quality on the 7 dev pairs (means, against clean): PESQ-WB 1.41 -> 1.96, STOI 0.835 -> 0.883."""

_LOSS_BODY = """- Network: the authors' loss network (14 3-tap convs, 32/64/128 channels, stride 2 except the last,
  batch norm on each input's own statistics, LeakyReLU 0.2). Their two classifier heads are not
  part of this import (they are not recoverable); the deep feature loss does not use them.
- The loss-model data shard is missing from public copies of the authors' repository; the same
  tensors ship in `pranaymanocha/PerceptualAudio` (MIT, Copyright (c) 2020 Pranay Manocha) and
  match the CRC32C checksums recorded by the authors' index."""


def import_reference(source: str | os.PathLike, output: str | os.PathLike, lossnet_output: str | os.PathLike | None = None) -> dict[str, Path]:
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
            card = AUTHORS_CARD.format(title="Authors' deep-feature-loss denoiser (imported)", source=se_source.name, body=_SE_BODY, license=AUTHORS_LICENSE)
            written["can"] = save_model(model, output, card, {"source": "authors", "imported_from": se_source.name})
        elif not source.is_dir():
            loss_source = se_source
    if loss_source is not None:
        variables = _read_variables(loss_source, "loss_conv_")
        if variables:
            model = lossnet_from_tf(variables)
            target = Path(lossnet_output) if lossnet_output else (Path(output) / "lossnet" if "can" in written else Path(output))
            card = AUTHORS_CARD.format(title="Authors' loss network (imported)", source=loss_source.name, body=_LOSS_BODY, license=AUTHORS_LICENSE)
            written["lossnet"] = save_model(model, target, card, {"source": "authors", "imported_from": loss_source.name})
    if not written:
        raise CheckpointError(f"found neither se_model nor loss_model variables in {source}")
    return written
