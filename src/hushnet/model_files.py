"""Finding model directories and reading their config, without torch (the light runtime uses this).

A model directory holds ``model.safetensors`` (weights, for torch), ``model.onnx`` (the same network
for onnxruntime, written by ``hushnet export-onnx``), ``config.json`` and ``README.md`` (the card).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "hushnet-dfl"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
ENSEMBLE_KIND = "can-ensemble"  # a weighted output average of CANs (hushnet.ensemble)
KINDS = ("can", "lossnet", ENSEMBLE_KIND)


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
