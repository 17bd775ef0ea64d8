"""Model directories: ``model.safetensors`` (the weights; never pickle), ``config.json`` (which
network, the dataclass that rebuilds it, provenance) and ``README.md`` (the model card). A shipped
model is addressed by name (a folder under ``hushnet/pretrained``), any other by path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hushnet import temporaries
from hushnet.audio import one_line
from hushnet.models.can import CAN, CANConfig
from hushnet.models.lossnet import LossNet, LossNetConfig

# Directory lookup and config reading live in the torch-free model_files (the light runtime's).
from hushnet.model_files import (  # noqa: E402,F401
    CARD_FILE, CONFIG_FILE, DEFAULT_MODEL, ONNX_FILE, PRETRAINED_DIR, WEIGHTS_FILE, ModelError, available_models, build_config, read_config,
    resolve_model_dir,
)

_KINDS: dict[str, tuple[type, type]] = {"can": (CAN, CANConfig), "lossnet": (LossNet, LossNetConfig)}


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a file that appears at ``path`` only when complete (nothing left by a crash)."""
    temporaries.atomic_write(path, lambda name: write(Path(name)))


def save_model(
    model: CAN | LossNet, directory: str | os.PathLike, card: str, extra: dict | None = None
) -> Path:
    """Write ``model`` as a model directory (each file written atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kind = "can" if isinstance(model, CAN) else "lossnet"
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"kind": kind}))
    config = {"kind": kind, "config": model.config.to_dict(), **(extra or {})}
    atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    atomic_write(directory / CARD_FILE, lambda p: p.write_text(card))
    # A model.onnx left from earlier weights would be stale: `hushnet export-onnx` writes a new one.
    (directory / ONNX_FILE).unlink(missing_ok=True)
    return directory


def write_atomic_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (a reader sees the old file or the new one)."""
    atomic_write(Path(path), lambda p: p.write_text(text))


def load_model(path_or_name: str | os.PathLike | None, kind: str | None = None) -> CAN | LossNet:
    """Rebuild a network from a model directory (or shipped name), in eval mode."""
    directory = resolve_model_dir(path_or_name)
    config = read_config(directory)
    if kind is not None and config["kind"] != kind:
        raise ModelError(f"{directory} holds a {config['kind']} model, not a {kind}")
    network_class, config_class = _KINDS[config["kind"]]
    try:
        model = network_class(build_config(config_class, directory, config["config"]))
        state = load_file(str(directory / WEIGHTS_FILE))
        model.load_state_dict(state)
    except ModelError:
        raise
    except (OSError, RuntimeError, ValueError, TypeError, SafetensorError) as error:
        raise ModelError(f"cannot load model from {directory}: {one_line(error)}") from None
    return model.eval()
