"""Model directories: ``model.safetensors`` (the weights; never pickle), ``model.onnx`` (the same
network for onnxruntime, written by ``hushnet export-onnx``), ``config.json`` (which network, the
dataclass that rebuilds it, provenance) and ``README.md`` (the model card). A shipped model is
addressed by name (a folder under ``hushnet/pretrained``), any other by path.

Finding a directory and reading its config need no torch (the light runtime uses them); torch and
safetensors are imported only where weights are loaded or saved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hushnet.atomic import Replacement, write_text

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "hushnet-dfl"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
KINDS = ("can", "lossnet")


class ModelError(ValueError):
    """A model directory or name that cannot be loaded."""


def available_models(kind: str | None = None) -> list[str]:
    """Names of the models shipped inside the package (of one kind, "can" or "lossnet", if given)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    names = sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file())
    return [n for n in names if kind is None or json.loads((PRETRAINED_DIR / n / CONFIG_FILE).read_text()).get("kind") == kind]


def resolve_model_dir(path_or_name: str | os.PathLike | None) -> Path:
    """A model directory from a path, or from the name of a model shipped in the package."""
    if path_or_name is None:
        path_or_name = DEFAULT_MODEL
    path = Path(path_or_name)
    if (path / CONFIG_FILE).is_file():
        return path
    shipped = PRETRAINED_DIR / str(path_or_name)
    if (shipped / CONFIG_FILE).is_file():
        return shipped
    names = ", ".join(available_models()) or "none"
    raise ModelError(f"no model directory at '{path_or_name}' (needs {CONFIG_FILE}); shipped models: {names}")


def read_config(directory: str | os.PathLike) -> dict:
    """The parsed ``config.json`` of a model directory."""
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read {path}: {error}") from None
    if config.get("kind") not in KINDS:
        raise ModelError(f"{path}: unknown model kind {config.get('kind')!r}")
    return config


def _network_classes(kind: str) -> tuple[type, type]:
    from hushnet.models.can import CAN, CANConfig
    from hushnet.models.lossnet import LossNet, LossNetConfig

    return {"can": (CAN, CANConfig), "lossnet": (LossNet, LossNetConfig)}[kind]


def save_model(model, directory: str | os.PathLike, card: str, extra: dict | None = None) -> Path:
    """Write a CAN or loss network as a model directory (each file written atomically)."""
    from safetensors.torch import save_file

    from hushnet.models.can import CAN

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kind = "can" if isinstance(model, CAN) else "lossnet"
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with Replacement(directory / WEIGHTS_FILE) as temporary:
        save_file(tensors, str(temporary), metadata={"kind": kind})
    config = {"kind": kind, "config": model.config.to_dict(), **(extra or {})}
    write_text(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    write_text(directory / CARD_FILE, card)
    # A model.onnx left from earlier weights would be stale: `hushnet export-onnx` writes a new one.
    (directory / ONNX_FILE).unlink(missing_ok=True)
    return directory


def load_weights(module, directory: str | os.PathLike) -> None:
    """Load a model directory's ``model.safetensors`` into ``module`` (strict)."""
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(Path(directory) / WEIGHTS_FILE)))


def load_model(path_or_name: str | os.PathLike | None, kind: str | None = None):
    """Rebuild a network (CAN or loss network) from a model directory (or shipped name), in eval mode."""
    directory = resolve_model_dir(path_or_name)
    config = read_config(directory)
    if kind is not None and config["kind"] != kind:
        raise ModelError(f"{directory} holds a {config['kind']} model, not a {kind}")
    network_class, config_class = _network_classes(config["kind"])
    try:
        model = network_class(config_class.from_dict(config["config"]))
        load_weights(model, directory)
    except (OSError, RuntimeError, ValueError, TypeError) as error:
        raise ModelError(f"cannot load model from {directory}: {error}") from None
    return model.eval()
