"""Model directories: ``model.safetensors`` (the weights; never pickle), ``config.json`` (which
network, the dataclass that rebuilds it, provenance) and ``README.md`` (the model card). A shipped
model is addressed by name (a folder under ``hushnet/pretrained``), any other by path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from safetensors.torch import load_file, save_file

from hushnet.audio import default_file_mode, make_temporary
from hushnet.models.can import CAN, CANConfig
from hushnet.models.lossnet import LossNet, LossNetConfig

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "hushnet-dfl"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"

_KINDS: dict[str, tuple[type, type]] = {"can": (CAN, CANConfig), "lossnet": (LossNet, LossNetConfig)}


class ModelError(ValueError):
    """A model directory or name that cannot be loaded."""


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


def available_models(kind: str | None = None) -> list[str]:
    """Names of the models shipped inside the package (of one kind, "can" or "lossnet", if given)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    names = sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file())
    return [n for n in names if kind is None or json.loads((PRETRAINED_DIR / n / CONFIG_FILE).read_text()).get("kind") == kind]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a temporary file beside ``path``, then rename it into place."""
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
    atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"kind": kind}))
    config = {"kind": kind, "config": model.config.to_dict(), **(extra or {})}
    atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    atomic_write(directory / CARD_FILE, lambda p: p.write_text(card))
    return directory


def write_atomic_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (a reader sees the old file or the new one)."""
    atomic_write(Path(path), lambda p: p.write_text(text))


def read_config(directory: str | os.PathLike) -> dict:
    """The parsed ``config.json`` of a model directory."""
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read {path}: {error}") from None
    if config.get("kind") not in _KINDS:
        raise ModelError(f"{path}: unknown model kind {config.get('kind')!r}")
    return config


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
