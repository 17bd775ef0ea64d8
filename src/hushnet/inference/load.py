"""A model directory read once for inference: :func:`read_model` finds it (a path or a shipped name),
reads its ``config.json``, refuses a model that is not a denoiser or whose config is out of range,
and checks its ``model.onnx`` against the weights, into a :class:`ModelRecord` the engines are built
from (:func:`hushnet.inference.engines.load_engine`). The on-disk format stays
:mod:`hushnet.model_dir`'s; this module only reads it. Imports no torch (:func:`torch_network` does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hushnet.model_dir import (
    ENSEMBLE_KIND,
    ONNX_FILE,
    WEIGHTS_FILE,
    ModelError,
    build_config,
    check_onnx_fingerprint,
    network_from_config,
    read_config,
    resolve_model_dir,
)
from hushnet.models.config import CANConfig

DENOISER_KINDS = ("can", ENSEMBLE_KIND)


@dataclass(frozen=True)
class ModelRecord:
    """What inference needs of a model directory, read and checked once.

    ``config``: the validated :class:`CANConfig` (an ensemble's own, which its plan runs by).
    ``onnx``: its ``model.onnx``, or None where it has none. The fingerprint check of that graph is
    kept, not raised, so that the torch engine still runs a directory whose graph is stale:
    ``onnx_error`` is why the graph must not run (damaged, exported from other weights or another
    config), ``onnx_note`` the line said when it runs unchecked (exported before fingerprints)."""

    directory: Path
    name: str
    kind: str
    config: CANConfig
    weights: Path
    onnx: Path | None
    onnx_note: str | None = None
    onnx_error: str | None = None
    settings: dict = field(default_factory=dict, compare=False, repr=False)  # the parsed config.json

    def runnable_onnx(self) -> Path:
        """``model.onnx`` for an ONNX engine (onnxruntime, OpenVINO); ModelError (one line) where it
        is missing or its fingerprint check failed."""
        if self.onnx is None:
            raise ModelError(f"{self.directory} has no {ONNX_FILE}")
        if self.onnx_error is not None:
            raise ModelError(self.onnx_error)
        return self.onnx


def read_model(path_or_name: str | os.PathLike | None) -> ModelRecord:
    """The :class:`ModelRecord` of a model directory (or shipped name; None: the default model);
    ModelError (one line) for a directory that cannot be read, is not a denoiser (``can`` or
    ``can-ensemble``) or has a config out of range, before any engine is loaded."""
    directory = resolve_model_dir(path_or_name)
    settings = read_config(directory)
    if settings["kind"] not in DENOISER_KINDS:
        raise ModelError(f"{directory} holds a {settings['kind']} model, not a denoiser (can)")
    config = build_config(CANConfig, directory, settings["config"])
    onnx: Path | None = directory / ONNX_FILE
    note = error = None
    if not onnx.is_file():
        onnx = None
    else:
        try:
            note = check_onnx_fingerprint(directory)
        except ModelError as refusal:
            error = str(refusal)
    return ModelRecord(
        directory=directory,
        name=directory.name,
        kind=settings["kind"],
        config=config,
        weights=directory / WEIGHTS_FILE,
        onnx=onnx,
        onnx_note=note,
        onnx_error=error,
        settings=settings,
    )


def torch_network(record: ModelRecord):
    """The torch network (CAN or CAN ensemble) of ``record``, weights loaded, in eval mode, from the
    config read once (imports torch and safetensors)."""
    return network_from_config(record.directory, record.settings, kind="can")
