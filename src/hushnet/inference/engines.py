"""Engines: something that maps a [batch, samples] float32 array through the CAN.

Every engine is an :class:`Engine`: a ``name``, the model's ``config`` and ``__call__``. ``OnnxEngine``
runs a model directory's ``model.onnx`` in onnxruntime and imports no torch; ``TorchEngine`` runs the
folded (fixed statistics) or exportable per-input form of the torch model. ``load_engine`` picks
one: ``auto`` = onnxruntime when it is installed and the directory has a ``model.onnx``, else torch.
A new engine is one class with those three members and one entry in ``load_engine``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hushnet.model_dir import ONNX_FILE, ModelError, build_config, load_model, read_config, resolve_model_dir
from hushnet.models.config import CANConfig
from hushnet.options import ENGINE_CHOICES, PRECISIONS
from hushnet.runtime_options import usable_threads

ENGINES = tuple(ENGINE_CHOICES)


@runtime_checkable
class Engine(Protocol):
    """What the Denoiser runs: [batch, samples] float32 in, the enhanced batch of the same shape out."""

    name: str
    config: CANConfig

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked with sys.modules[name] = None
        return False


class OnnxEngine:
    """onnxruntime on the CPU; ``threads`` intra-op threads (None: onnxruntime's choice, all cores)."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike, config: CANConfig, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.threads = usable_threads(threads)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        # Measured on this 2-core VM (16-s chunks of hushnet-dfl): without the arena, peak RSS 202 MB
        # instead of 348 for the same CPU time (0.084 s per audio second); no spin-waiting between
        # ops (0.082 vs 0.084 CPU s per audio second), which matters on a shared machine.
        options.enable_cpu_mem_arena = False
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for unreadable files
            raise ModelError(f"cannot load {path}: {str(error).strip().splitlines()[0]}") from None
        self.config = config
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class TorchEngine:
    """The torch model in its inference form (normalisation folded for fixed-statistics models).

    ``precision``: ``float32`` (and ``auto``), or ``bf16``: autocast to bfloat16 (CPU or GPU), weights kept in float32.
    """

    name = "torch"

    def __init__(self, model, device: str = "cpu", threads: int | None = None, precision: str = "auto") -> None:
        import torch

        from hushnet.inference.networks import FoldedCAN

        if precision not in PRECISIONS:
            raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.threads = usable_threads(threads)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        self.torch = torch
        self.device = torch.device(device)
        self.precision = "bf16" if precision == "bf16" else "float32"
        self.model = model.eval()
        self.config = model.config
        # Per-input models run their own forward (the reference, working in place at inference).
        self.network = (FoldedCAN(model) if model.config.norm == "batch" else model).to(self.device).eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        autocast = (self.torch.autocast(self.device.type, dtype=self.torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        with self.torch.inference_mode(), autocast:
            tensor = self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            return self.network(tensor).float().cpu().numpy()


def resolve_engine(engine: str, directory: Path | None) -> str:
    """``onnx`` or ``torch`` for the requested ``engine`` and model directory, or a ModelError."""
    if engine not in ENGINES:
        raise ModelError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    has_onnx = directory is not None and (directory / ONNX_FILE).is_file()
    if engine == "auto":
        if has_onnx and installed("onnxruntime"):
            return "onnx"
        if installed("torch"):
            return "torch"
        if not has_onnx:
            raise ModelError(f"{directory} has no {ONNX_FILE} and torch is not installed: run `hushnet export-onnx` where torch is, "
                             'or pip install "hushnet[train]"')
        raise ModelError("neither onnxruntime nor torch is installed: pip install onnxruntime")
    if engine == "onnx":
        if not installed("onnxruntime"):
            raise ModelError("--engine onnx needs onnxruntime: pip install onnxruntime")
        if not has_onnx:
            raise ModelError(f"{directory} has no {ONNX_FILE}: create it with `hushnet export-onnx {directory} -o {directory / ONNX_FILE}`")
        return "onnx"
    if not installed("torch"):
        raise ModelError('--engine torch needs torch: pip install "hushnet[train]"')
    return "torch"


def load_engine(path_or_name: str | os.PathLike | None, engine: str = "auto", device: str = "cpu", threads: int | None = None,
                precision: str = "auto") -> Engine:
    """Load the model of a directory (or shipped name) once, into the chosen engine."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and engine == "onnx":
        raise ModelError("the onnx engine runs float32 only; --precision bf16 needs --engine torch")
    directory = resolve_model_dir(path_or_name)
    config = read_config(directory)
    if config["kind"] != "can":
        raise ModelError(f"{directory} holds a {config['kind']} model, not a denoiser (can)")
    on_cpu = device in (None, "cpu")
    if engine == "onnx" and not on_cpu:
        raise ModelError("the onnx engine runs on the CPU; use --engine torch for --device cuda")
    # bf16 is a torch path for now: auto picks torch for it, as for a GPU.
    chosen = resolve_engine("torch" if engine == "auto" and (not on_cpu or precision == "bf16") else engine, directory)
    if chosen == "onnx":
        can_config = build_config(CANConfig, directory, config["config"])
        return OnnxEngine(directory / ONNX_FILE, can_config, threads)
    return TorchEngine(load_model(directory, kind="can"), device=device, threads=threads, precision=precision)
