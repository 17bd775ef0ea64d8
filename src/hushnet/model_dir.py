"""Model directories: ``model.safetensors`` (the weights; never pickle), ``model.onnx`` (the same
network for onnxruntime, written by ``hushnet export-onnx``), ``config.json`` (which network, the
dataclass that rebuilds it, provenance) and ``README.md`` (the model card). A shipped model is
addressed by name (a folder under ``hushnet/pretrained``), any other by path.

Finding a directory and reading its config need no torch (the light runtime uses them); torch and
safetensors are imported only where weights are loaded or saved.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
import typing
from pathlib import Path

from hushnet import protobuf
from hushnet.temporaries import atomic_write, write_text

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


# model.onnx carries the fingerprint of the weights and network config it was exported from (ONNX
# metadata), so that a graph of other weights, or a config edited after the export, is refused.
FINGERPRINT_KEY = "hushnet.fingerprint"
# Config fields that do not shape the exported graph (how the plan feeds it, or training only): editing
# them needs no re-export.
NOT_IN_GRAPH = ("input_rms_db", "segment_seconds", "dry", "batch_norm_momentum")


def _graph_fields(values) -> dict:
    return {k: v for k, v in values.items() if k not in NOT_IN_GRAPH} if isinstance(values, dict) else values


def fingerprint(directory: str | os.PathLike) -> str:
    """sha256 of a model directory's weights file and of the config fields that shape its graph
    (an ensemble's members included)."""
    directory = Path(directory)
    config = read_config(directory)
    shape = {
        "kind": config["kind"],
        "config": _graph_fields(config["config"]),
        "members": [
            {**m, "config": _graph_fields(m.get("config"))} if isinstance(m, dict) else m
            for m in config.get("members", [])
        ],
    }
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode())
    try:
        with open(directory / WEIGHTS_FILE, "rb") as weights:
            for block in iter(lambda: weights.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise ModelError(f"cannot load model from {directory}: {WEIGHTS_FILE}: {error.strerror or error}") from None
    return digest.hexdigest()


def fingerprint_metadata(directory: str | os.PathLike) -> dict[str, str]:
    """The ONNX metadata an export of ``directory`` carries (see :func:`check_onnx_fingerprint`)."""
    return {FINGERPRINT_KEY: fingerprint(directory)}


def onnx_metadata(path: str | os.PathLike) -> dict[str, str] | None:
    """The ``metadata_props`` of an ONNX file, read without onnx (the light runtime has only
    onnxruntime); None for a file that is not a whole protobuf message (damaged, cut short, not ONNX)."""
    metadata = {}
    try:
        data = Path(path).read_bytes()
        seen = set()
        for number, value in protobuf.fields(data):
            seen.add(number)
            if number == 14 and isinstance(value, bytes):  # ModelProto.metadata_props
                entry = dict(protobuf.fields(value))
                metadata[bytes(entry.get(1, b"")).decode("utf-8", "replace")] = bytes(entry.get(2, b"")).decode(
                    "utf-8", "replace"
                )
    except (OSError, ValueError):
        return None
    return metadata if 7 in seen else None  # ModelProto.graph: every model has one


def check_onnx_fingerprint(directory: str | os.PathLike) -> str | None:
    """ModelError where a model directory's ``model.onnx`` was exported from other weights or another
    network config; a one-line note (returned) where it has no fingerprint (an export made before
    fingerprints: it is run, unchecked), else None."""
    directory = Path(directory)
    metadata = onnx_metadata(directory / ONNX_FILE)
    if metadata is None:  # before any engine, whose parsers print pages about it
        raise ModelError(
            f"cannot load model from {directory}: {ONNX_FILE} is damaged or not an ONNX model: "
            f"re-export with hushnet export-onnx {directory} -o {directory / ONNX_FILE}"
        )
    stored = metadata.get(FINGERPRINT_KEY)
    if stored is None:
        return (
            f"{directory / ONNX_FILE} has no fingerprint of its weights, so it cannot be checked against them: "
            f"re-export it with hushnet export-onnx {directory} -o {directory / ONNX_FILE}"
        )
    if stored != fingerprint(directory):
        raise ModelError(
            f"cannot load model from {directory}: {ONNX_FILE} was exported from other weights: "
            f"re-export with hushnet export-onnx {directory} -o {directory / ONNX_FILE}"
        )
    return None


def available_models(kind: str | None = None) -> list[str]:
    """Names of the models shipped inside the package (of one kind, "can", "lossnet" or "can-ensemble", if given)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    names = sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file())
    return [
        n
        for n in names
        if kind is None or json.loads((PRETRAINED_DIR / n / CONFIG_FILE).read_text()).get("kind") == kind
    ]


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
    """The parsed ``config.json`` of a model directory: an object with a known ``kind`` and a ``config`` object."""
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"cannot load model from {directory}: {CONFIG_FILE} is not UTF-8 text") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot load model from {directory}: {CONFIG_FILE}: {error}") from None
    if not isinstance(config, dict):
        raise ModelError(
            f"cannot load model from {directory}: {CONFIG_FILE} holds a {type(config).__name__}, not an object"
        )
    if config.get("kind") not in KINDS:
        raise ModelError(
            f"cannot load model from {directory}: unknown model kind {config.get('kind')!r} in {CONFIG_FILE}"
        )
    if not isinstance(config.get("config"), dict):
        raise ModelError(f'cannot load model from {directory}: {CONFIG_FILE} has no "config" object')
    return config


def _matches(value, expected) -> bool:
    """Whether a JSON value fits a config field's annotation (int, float, str, bool, X | None, lists)."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, kind) for kind in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple) or expected in (list, tuple):
        return isinstance(value, list)
    return isinstance(value, expected) if isinstance(expected, type) else True


def build_config(config_class: type, directory: str | os.PathLike, values: dict):
    """``config_class.from_dict(values)`` with each value's type checked first, so that a wrong type
    (``"channels": "sixty"``) is named in one line instead of failing deep inside a comparison."""
    hints = typing.get_type_hints(config_class)
    for name, value in values.items():
        if name in hints and not _matches(value, hints[name]):
            kind = str(hints[name]).replace("<class '", "").replace("'>", "")
            raise ModelError(f"cannot load model from {directory}: {CONFIG_FILE}: {name} must be {kind}, got {value!r}")
    try:
        return config_class.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ModelError(f"cannot load model from {directory}: {CONFIG_FILE}: {error}") from None


def onnx_output_error(output: str | os.PathLike) -> str | None:
    """Why ``export-onnx -o output`` must not be written (one line), or None.

    An export must never replace a model's weights, config or card: inside a model directory only
    its ``model.onnx`` may be written, and anywhere the name must end in ``.onnx``."""
    path = Path(output)
    if path.is_dir():
        return f"-o {output} is a folder; name the .onnx file (e.g. {path / ONNX_FILE})"
    if path.suffix.lower() != ".onnx":
        return f"-o {output}: the output must be a .onnx file"
    if (path.parent / CONFIG_FILE).is_file() and path.name != ONNX_FILE:
        return f"-o {output} is inside the model directory {path.parent}, where only {ONNX_FILE} may be written"
    if not path.parent.is_dir():
        return f"-o {output}: no such folder {path.parent}"
    if not os.access(path.parent, os.W_OK):
        return f"-o {output}: cannot write to {path.parent} (permission denied)"
    return None


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
    atomic_write(directory / WEIGHTS_FILE, lambda name: save_file(tensors, name, metadata={"kind": kind}))
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
    """Rebuild a network (CAN, loss network or CAN ensemble) from a model directory (or shipped name), in eval mode."""
    directory = resolve_model_dir(path_or_name)
    return network_from_config(directory, read_config(directory), kind)


def network_from_config(directory: Path, config: dict, kind: str | None = None):
    """The network of ``directory`` whose ``config.json`` was read already (``config``, from
    :func:`read_config`), weights loaded, in eval mode; ``kind`` as for :func:`load_model`."""
    if config["kind"] == ENSEMBLE_KIND and kind in (None, "can"):  # an ensemble denoises like a CAN
        return _load_ensemble(directory, config)
    if kind is not None and config["kind"] != kind:
        raise ModelError(f"{directory} holds a {config['kind']} model, not a {kind}")
    network_class, config_class = _network_classes(config["kind"])
    from safetensors import SafetensorError

    from hushnet.errors import one_line

    try:
        model = network_class(build_config(config_class, directory, config["config"]))
        load_weights(model, directory)
    except ModelError:
        raise
    except (OSError, RuntimeError, ValueError, TypeError, SafetensorError) as error:
        raise ModelError(f"cannot load model from {directory}: {one_line(error)}") from None
    return model.eval()


def _load_ensemble(directory: Path, config: dict):
    """A ``can-ensemble`` directory's :class:`~hushnet.models.ensemble.CANEnsemble`, in eval mode."""
    from safetensors import SafetensorError

    from hushnet.errors import one_line
    from hushnet.models.ensemble import ensemble_from_config

    try:
        ensemble = ensemble_from_config(config)
        load_weights(ensemble, directory)
    except (KeyError, TypeError) as error:
        raise ModelError(f"{directory / CONFIG_FILE}: not a valid ensemble config ({one_line(error)})") from None
    except (OSError, RuntimeError, ValueError, SafetensorError) as error:
        raise ModelError(f"cannot load ensemble from {directory}: {one_line(error)}") from None
    return ensemble.eval()
