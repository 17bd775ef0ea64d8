"""Engines: something that maps a [batch, samples] float32 array through the CAN.

Every engine is an :class:`Engine`: a ``name``, the model's ``config``, the ``precision`` it runs in,
the ``chunk_input`` it runs best at, ``prepare`` and ``__call__``. ``OpenVinoEngine`` runs a model
directory's ``model.onnx`` in OpenVINO, in float32 or bf16 on the CPU's matrix units, compiled once
per fixed input shape; ``OnnxEngine`` runs it in onnxruntime (float32; both import no torch);
``TorchEngine`` runs the folded (fixed statistics) or exportable per-input form of the torch model,
bf16 through autocast. ``load_engine`` reads the model directory once into a
:class:`~hushnet.inference.load.ModelRecord` and loads the engine and precision
:mod:`hushnet.inference.choice` decides (``auto``: the fastest measured for the CPU class, then the
next that is installed and loads); engines receive resolved values taken from the record (a graph's
path, the validated config, a precision) and neither read the directory nor check them again. A new
engine is one class with those members, one entry in ``load_engine`` and its rows in the choice table.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hushnet.cache import hushnet_cache_dir
from hushnet.inference.choice import (
    TORCH_AUTO_BF16,  # noqa: F401 - also this module's public name
    check_engine,
    check_precision,
    choose_precision,
    describe,
    engine_order,
    kind_of,
)
from hushnet.inference.load import ModelRecord, read_model, torch_network
from hushnet.inference.plan import fixed_length
from hushnet.model_dir import ONNX_FILE, ModelError
from hushnet.models.config import CANConfig
from hushnet.precision import (
    Cpu,
    cpu_bf16_flag,  # noqa: F401 - also this module's public name
    detect_cpu,
)
from hushnet.runtime_options import usable_threads

log = logging.getLogger(__name__)


@runtime_checkable
class Engine(Protocol):
    """What the Denoiser runs: [batch, samples] float32 in, the enhanced batch of the same shape out.

    ``precision``: ``float32`` or ``bf16``, the arithmetic it runs in. ``prepare(length)``: get ready
    for inputs of ``length`` samples now (a fixed-shape engine compiles that shape), not at the first call.
    """

    name: str
    config: CANConfig
    precision: str
    chunk_input: int | None  # the input length (samples) chunks should fill, for a fixed-shape engine; None: any

    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    def prepare(self, length: int) -> None: ...


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked with sys.modules[name] = None
        return False


def openvino_cache_dir() -> Path | None:
    """Where compiled OpenVINO models are kept between runs: $XDG_CACHE_HOME/hushnet/openvino
    (default ~/.cache/hushnet/openvino); None where there is no user cache folder (no cache then)."""
    return hushnet_cache_dir("openvino")


def _import_openvino():
    """``openvino``, with the ``WARNING:root:`` lines its telemetry logs at import where the home
    folder is read-only (it cannot store its consent file) kept off the user's terminal."""
    import logging

    root = logging.getLogger()
    quiet = logging.NullHandler() if not root.handlers else None
    if quiet is not None:  # else the first warning installs a stderr handler for good
        root.addHandler(quiet)
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        import openvino
    finally:
        logging.disable(previous)
        if quiet is not None:
            root.removeHandler(quiet)
    return openvino


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class OnnxEngine:
    """onnxruntime on the CPU; ``threads`` intra-op threads (None: onnxruntime's choice, all cores)."""

    name = "onnx"
    precision = "float32"  # onnxruntime has no bf16 kernels for this graph on the CPU
    chunk_input = None

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

    def prepare(self, length: int) -> None:
        """Nothing to do: onnxruntime runs any input length as it comes."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class TorchEngine:
    """The torch model in its inference form (normalisation folded for fixed-statistics models).

    ``precision`` (resolved): ``float32``, or ``bf16``: autocast to bfloat16 (CPU or GPU), weights kept in float32.
    """

    name = "torch"
    chunk_input = None

    def __init__(self, model, device: str = "cpu", threads: int | None = None, precision: str = "float32") -> None:
        import torch

        from hushnet.inference.networks import FoldedCAN

        self.threads = usable_threads(threads)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        self.torch = torch
        self.device = torch.device(device)
        self.precision = "bf16" if precision == "bf16" else "float32"
        self.model = model.eval()
        self.config = model.config
        # Per-input models run their own forward (the reference, working in place at inference);
        # an ensemble runs each member in that form, then its weighted sum.
        if hasattr(model, "inference_network"):
            network = model.inference_network(exportable=False)
        else:
            network = FoldedCAN(model) if model.config.norm == "batch" else model
        self.network = network.to(self.device).eval()

    def prepare(self, length: int) -> None:
        """Nothing to do: torch runs any input length as it comes."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        autocast = (
            self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)
            if self.precision == "bf16"
            else contextlib.nullcontext()
        )
        with self.torch.inference_mode(), autocast:
            tensor = self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            return self.network(tensor).float().cpu().numpy()


class OpenVinoEngine:
    """OpenVINO on the CPU, float32 or bf16 (``INFERENCE_PRECISION_HINT``), compiled once per input shape.

    Compiling a shape in bf16 costs about as much as running it 15 times (oneDNN builds its kernels
    per width; OpenVINO's model cache does not keep them), so bf16 uses few shapes. Fixed-statistics
    models run chunks at one length (``chunk_input``; the Denoiser cuts chunks to fit it); a shorter
    input is zero-padded, in bf16 up to the smallest compiled length that holds it, in float32 (whose
    compiles are cheap) up to its own ``plan.fixed_length``; a 0/1 mask, multiplied into every layer's activations, zeroes them past
    the input's end as the network's own zero padding does at a true end, so the output equals the
    unpadded one. Per-input models, whose statistics cover the whole input, run at exactly their
    segment length; other lengths (a file shorter than a segment) go to onnxruntime (float32,
    exact), which needs no compile. ``streams``: concurrent callers (the server's workers), each
    with its own ``threads``; safe to call from several threads.
    """

    name = "openvino"

    def __init__(
        self,
        path: str | os.PathLike,
        config: CANConfig,
        threads: int | None = None,
        precision: str = "float32",
        cache_dir: str | os.PathLike | None = None,
        streams: int = 1,
    ) -> None:
        """``precision``: resolved (``float32`` or ``bf16``, :func:`~hushnet.inference.choice.choose_precision`)."""
        ov = _import_openvino()
        self.core = ov.Core()
        if "CPU" not in self.core.available_devices:
            raise ModelError("OpenVINO found no CPU device it can run on")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else openvino_cache_dir()
        try:
            if self.cache_dir is not None:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                self.core.set_property({"CACHE_DIR": str(self.cache_dir)})
        except OSError:  # a read-only home: compile every run instead
            self.cache_dir = None
        try:
            self.model = self.core.read_model(str(path))
        except Exception as error:  # OpenVINO raises RuntimeError with a long trace for unreadable files
            raise ModelError(f"cannot load {path}: {_first_line(error)}") from None
        self.path, self.config, self.precision, self.threads = Path(path), config, precision, usable_threads(threads)
        self.masked = config.norm == "batch"
        if self.masked:
            _add_activation_mask(self.model)
        # Measured for the 64-channel CAN: bf16 runs fastest per sample at 2^16-sample inputs and
        # compiles 4x faster than at 2^18; memory grows with the length in both precisions (about
        # 2 KB per sample: a whole command peaked at 670 MB with float32 at 2^18, 290 MB at 2^16).
        self.chunk_input = fixed_length(max(1 << 16, 8 * config.receptive_radius))
        self.exact_lengths = (
            {round(config.segment_seconds * config.sample_rate)}
            if config.segment_seconds and not self.masked
            else set()
        )
        # No pinning of threads to cores: on a machine shared with other work, measured (load 8.8, 2
        # threads, bf16) at 0.205 s per 2^16-sample call unpinned vs 0.288 pinned (medians of 4).
        self.properties = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": streams,
            "ENABLE_CPU_PINNING": False,
        }
        if self.threads is not None:
            self.properties["INFERENCE_NUM_THREADS"] = self.threads * streams
        self.compile_seconds: dict[int, float] = {}  # input length -> seconds to compile (and build kernels)
        self._compiled: dict[int, object] = {}
        self._fallback: OnnxEngine | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def _compiled_model(self, length: int):
        """The model compiled for [1, length] inputs, compiled on first use."""
        with self._lock:
            compiled = self._compiled.get(length)
            if compiled is None:
                model = self.model.clone()
                shapes = {model.inputs[0]: [1, length]}
                if self.masked:
                    shapes[model.inputs[1]] = [1, 1, length]
                model.reshape(shapes)
                started = time.perf_counter()
                try:
                    compiled = self.core.compile_model(model, "CPU", self.properties)
                except Exception as error:
                    raise RuntimeError(f"OpenVINO could not compile the model: {_first_line(error)}") from None
                self.compile_seconds[length] = time.perf_counter() - started
                self._compiled[length] = compiled
            return compiled

    def _request(self, length: int):
        requests = self._local.__dict__.setdefault("requests", {})
        request = requests.get(length)
        if request is None:
            request = requests[length] = self._compiled_model(length).create_infer_request()
        return request

    def prepare(self, length: int) -> None:
        """Compile now the shape that inputs of ``length`` samples will run at (not at the first call)."""
        if self.masked:
            self._compiled_model(fixed_length(length))
        elif length in self.exact_lengths:
            self._compiled_model(length)

    def _padded_length(self, length: int) -> int:
        """bf16: the smallest compiled length that holds ``length`` (a compile costs more than the
        padding); float32, which compiles in a fraction of a second: its own fixed length."""
        fitting = (
            [compiled for compiled in tuple(self._compiled) if compiled >= length] if self.precision == "bf16" else []
        )
        return min(fitting) if fitting else fixed_length(length)

    def _exact(self, x: np.ndarray) -> np.ndarray:
        """Per-input models at a length other than their segment's: onnxruntime, float32."""
        if self._fallback is None:
            with self._lock:
                if self._fallback is None:
                    self._fallback = OnnxEngine(self.path, self.config, self.threads)
        return self._fallback(x)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, length = x.shape
        out = np.empty_like(x)
        if length == 0:
            return out
        if not self.masked:
            if length not in self.exact_lengths:
                return self._exact(x)
            request = self._request(length)
            for row in range(rows):
                out[row] = request.infer({0: x[row : row + 1]})[0][0]
            return out
        shape = self._padded_length(length)
        request = self._request(shape)
        padded = np.zeros((1, shape), dtype=np.float32)
        mask = np.zeros((1, 1, shape), dtype=np.float32)
        mask[..., :length] = 1.0
        for row in range(rows):
            padded[0, :length] = x[row]
            out[row] = request.infer({0: padded, 1: mask})[0][0, :length]
        return out


def _add_activation_mask(model) -> None:
    """Give ``model`` a second input ``mask`` [batch, 1, samples] multiplied into the output of every
    activation (the layer inputs of the next convolutions), in place."""
    from openvino import opset13 as ops

    mask = ops.parameter([-1, 1, -1], np.float32, name="mask")
    mask.output(0).get_tensor().set_names({"mask"})
    activations = [op for op in model.get_ordered_ops() if op.get_type_name() in ("PRelu", "Relu", "Elu")]
    if not activations:
        raise ModelError("unexpected model.onnx: no activations to mask")
    for op in activations:
        consumers = list(op.output(0).get_target_inputs())
        masked = ops.multiply(op.output(0), mask.output(0))
        for consumer in consumers:
            consumer.replace_source_output(masked.output(0))
    model.add_parameters([mask])
    model.validate_nodes_and_infer_types()


def _needs_onnx(directory: Path | None, engine: str) -> None:
    if directory is None or not (directory / ONNX_FILE).is_file():
        raise ModelError(
            f"{directory} has no {ONNX_FILE}: create it with `hushnet export-onnx {directory} -o {directory / ONNX_FILE}` "
            f"(--engine {engine} runs it)"
        )


def resolve_engine(engine: str, directory: Path | None, order: list[str] | None = None) -> str:
    """``openvino``, ``onnx`` or ``torch`` for the requested ``engine`` and model directory, or a ModelError.
    ``auto`` names the first of ``order`` (default: OpenVINO, onnxruntime, torch) that is installed
    and can run the directory; whether OpenVINO then loads is :func:`load_engine`'s to find out."""
    check_engine(engine)
    has_onnx = directory is not None and (directory / ONNX_FILE).is_file()
    if engine == "auto":
        modules = {"openvino": "openvino", "onnx": "onnxruntime", "torch": "torch"}
        for name in order or ["openvino", "onnx", "torch"]:
            if installed(modules[name]) and (has_onnx or name == "torch"):
                return name
        if not has_onnx:
            raise ModelError(
                f"{directory} has no {ONNX_FILE} and torch is not installed: run `hushnet export-onnx` where torch is, "
                'or pip install "hushnet[train]"'
            )
        raise ModelError("none of OpenVINO, onnxruntime or torch is installed: pip install onnxruntime")
    if engine == "openvino":
        if not installed("openvino"):
            raise ModelError('--engine openvino needs OpenVINO: pip install "hushnet[openvino]"')
        _needs_onnx(directory, engine)
        return "openvino"
    if engine == "onnx":
        if not installed("onnxruntime"):
            raise ModelError("--engine onnx needs onnxruntime: pip install onnxruntime")
        _needs_onnx(directory, engine)
        return "onnx"
    if not installed("torch"):
        raise ModelError('--engine torch needs torch: pip install "hushnet[train]"')
    return "torch"


def load_engine(
    path_or_name: str | os.PathLike | None,
    engine: str = "auto",
    device: str = "cpu",
    threads: int | None = None,
    precision: str = "auto",
    streams: int = 1,
    cpu: Cpu | None = None,
) -> Engine:
    """Load the model of a directory (or shipped name) once, into the chosen engine and precision.
    ``streams``: threads that will call it at once (the server's workers); ``cpu``: the CPU to choose
    for (default: this one). The engine's ``choice`` says what was chosen and why (what ``hushnet
    denoise -v`` and ``/api/health`` show)."""
    started = time.perf_counter()
    check_precision(precision)
    if precision == "bf16" and engine == "onnx":
        choose_precision(precision, engine, detect_cpu())  # the one-line refusal, before any loading
    record = read_model(path_or_name)  # a wrong kind or a config out of range: one line, before any engine
    directory = record.directory
    on_cpu = device in (None, "cpu")
    if engine in ("onnx", "openvino") and not on_cpu:
        raise ModelError(f"the {engine} engine runs on the CPU; use --engine torch for --device {device}")
    cpu = cpu or detect_cpu()
    kind = kind_of(record.config.norm)
    order, engine_why = engine_order(engine, precision, cpu, kind, on_cpu)
    chosen = resolve_engine(engine, directory, order)
    if engine == "auto" and chosen != order[0]:
        engine_why = f"auto: {order[0]} is not installed or cannot run {record.name}"
    value, why = choose_precision(precision, chosen, cpu, kind, device or "cpu")
    # A graph of other weights would run without a word. The lines below are said once an engine has
    # loaded: a model no engine can load is its one error line, not a note and a fallback before it.
    said = []
    if chosen in ("openvino", "onnx"):
        record.runnable_onnx()  # a damaged graph, or one of other weights: its one line, now
        if record.onnx_note is not None:
            said.append(f"hushnet: note: {record.onnx_note}")
    loaded, notes = None, []
    if chosen == "openvino":
        loaded, notes = _load_openvino(record, engine, threads, value, streams)
        if loaded is None:  # OpenVINO failed to load: the next engine that can run this precision
            chosen = "onnx" if installed("onnxruntime") and precision != "bf16" else resolve_engine("torch", directory)
            said.append(
                f"hushnet: OpenVINO failed to load ({notes[0]}); using {'onnxruntime' if chosen == 'onnx' else chosen}"
            )
            notes = ["OpenVINO failed to load"]
            value, why = choose_precision(precision, chosen, cpu, kind, device or "cpu")
    if loaded is None:
        if chosen == "onnx":
            loaded = OnnxEngine(record.runnable_onnx(), record.config, threads)
        else:
            loaded = TorchEngine(torch_network(record), device=device, threads=threads, precision=value)
    for line in said:
        log.warning(line)
    loaded.cpu = cpu
    loaded.choice = "; ".join([describe(loaded.name, loaded.precision, engine_why, why), *notes])
    loaded.load_seconds = time.perf_counter() - started
    return loaded


def _load_openvino(record: ModelRecord, engine: str, threads: int | None, precision: str, streams: int):
    """(the OpenVINO engine, notes), or (None, [why it failed]) where ``auto`` may fall back; a
    ModelError where it may not (``--engine openvino``)."""
    path = record.runnable_onnx()
    try:
        loaded = OpenVinoEngine(path, record.config, threads, precision, streams=streams)
    except Exception as error:  # a broken install, an unsupported CPU: anything OpenVINO raises
        if engine == "openvino":
            if isinstance(error, ModelError):
                raise
            raise ModelError(f"OpenVINO cannot run {path}: {_first_line(error)}") from None
        return None, [_first_line(error)]
    notes = [] if loaded.masked else ["inputs other than a whole segment: onnxruntime float32"]
    return loaded, notes
