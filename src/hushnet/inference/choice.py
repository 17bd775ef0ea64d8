"""Which engine and precision run a model: the one decision, from what was asked and the CPU class.

``auto`` reads :data:`AUTO`, the fastest engine and precision measured for each CPU class (see
:func:`hushnet.precision.cpu_class`) and kind of model that keeps the quality rule (PESQ-WB within
0.02, STOI within 0.002, DNSMOS OVRL within 0.02 of onnxruntime float32; per-input models stay
float32 because bf16 missed it), with the measurement each rests on. A class nobody measured gets
:data:`FALLBACK`. Every decision comes back with its reason, which ``hushnet denoise -v`` and
``/api/health`` show. Torch-free; imports no engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from hushnet.model_dir import ModelError
from hushnet.precision import Cpu

ENGINES = ("auto", "openvino", "onnx", "torch")
PRECISIONS = ("auto", "float32", "bf16")
ENGINE_HELP = (
    "inference engine (auto: the fastest measured for this CPU class that is installed and loads; "
    "else onnxruntime, else torch)"
)
PRECISION_HELP = (
    "arithmetic of the network: auto (bf16 only where the CPU or GPU has native bf16 units and bf16 is the "
    "faster measured choice that keeps the quality rule, else float32), float32 or bf16 "
    "(onnxruntime runs float32 only)"
)

# Whether precision auto picks bf16 for the torch engine at inference: its autocast bf16 of the
# folded network was slower and larger than its float32 where measured (benchmarks/results/runtime_torch.md).
TORCH_AUTO_BF16 = False


@dataclass(frozen=True)
class Measured:
    """What ``auto`` runs for a CPU class and kind of model, and the measurement that chose it."""

    engine: str
    precision: str
    evidence: str


# (CPU class, "fixed" for fixed-statistics models | "per-input"): the measured choice. Details and
# dates: benchmarks/results/engine_speed.md (this table's own runs) and runtime.md, engines.md (AMX).
AUTO: dict[tuple[str, str], Measured] = {
    ("amx", "fixed"): Measured(
        "openvino", "bf16", "AMX Xeon, 120-s file, 1 thread: OpenVINO bf16 3.5 CPU s, onnxruntime float32 9.8"
    ),
    ("amx", "per-input"): Measured(
        "openvino", "float32", "AMX Xeon: bf16 missed the quality rule (-0.0265 PESQ-WB on valentini_test_dev)"
    ),
    ("avx512_bf16", "fixed"): Measured(
        "openvino",
        "bf16",
        "Zen 4, 120-s file, 1 thread: OpenVINO bf16 0.052 CPU s per audio s, onnxruntime float32 0.110, "
        "OpenVINO float32 0.113; bf16 inside the quality rule there",
    ),
    ("avx512_bf16", "per-input"): Measured(
        "openvino",
        "float32",
        "Zen 4, 120-s file, 1 thread: OpenVINO float32 0.185 CPU s per audio s, onnxruntime 0.215",
    ),
    ("avx512", "fixed"): Measured(
        "onnx",
        "float32",
        "AVX-512 float32 kernels (Zen 4), 120-s file, 1 thread: onnxruntime 0.110 CPU s per audio s, OpenVINO 0.113, "
        "and less memory",
    ),
    ("avx512", "per-input"): Measured(
        "openvino",
        "float32",
        "AVX-512 float32 kernels (Zen 4), 120-s file, 1 thread: OpenVINO 0.185 CPU s per audio s, onnxruntime 0.215",
    ),
    ("avx2", "fixed"): Measured(
        "onnx", "float32", "Zen 3, 60-s file, 1 thread: onnxruntime 0.184 CPU s per audio s, OpenVINO float32 0.247"
    ),
    ("avx2", "per-input"): Measured(
        "openvino",
        "float32",
        "not measured on AVX2: OpenVINO float32, which beat onnxruntime on Zen 4's float32 kernels (0.185 against "
        "0.215 CPU s per audio s, 279 against 2234 MB peak, 120-s file)",
    ),
}
FALLBACK = Measured(
    "onnx",
    "float32",
    "not measured on this CPU class: onnxruntime float32, the lightest engine, in the one precision every CPU runs",
)


def kind_of(norm: str) -> str:
    """The table's kind of model for a CAN's ``norm``: ``fixed`` (batch statistics folded) or ``per-input``."""
    return "fixed" if norm == "batch" else "per-input"


def measured(cpu: Cpu, kind: str) -> Measured:
    """The table's entry for this CPU class and kind of model, else :data:`FALLBACK`."""
    return AUTO.get((cpu.name, kind), FALLBACK)


def check_precision(requested: str) -> None:
    """ModelError (one line) unless ``requested`` is one of PRECISIONS."""
    if requested not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")


def check_engine(requested: str) -> None:
    """ModelError (one line) unless ``requested`` is one of ENGINES."""
    if requested not in ENGINES:
        raise ModelError(f"engine must be one of {', '.join(ENGINES)}, got {requested!r}")


def engine_order(requested: str, precision: str, cpu: Cpu, kind: str, on_cpu: bool = True) -> tuple[list[str], str]:
    """The engines to try, best first, for ``requested`` (``auto`` or a name), and why the first.

    ``auto``: torch off the CPU; for bf16 asked for, OpenVINO where the CPU has native bf16 units,
    else torch; otherwise the table's engine first, then OpenVINO, onnxruntime, torch."""
    check_engine(requested)
    check_precision(precision)
    if requested != "auto":
        return [requested], "asked for"
    if not on_cpu:
        return ["torch"], "auto: the only engine off the CPU"
    if precision == "bf16":
        if cpu.bf16_flag is None:
            return [
                "torch"
            ], f"auto: bf16 asked for and CPU class {cpu.name} has no native bf16 units (torch emulates it)"
        return ["openvino", "torch"], f"auto: bf16 asked for, native on this CPU ({cpu.bf16_flag})"
    entry = measured(cpu, kind)
    order = [entry.engine] + [name for name in ("openvino", "onnx", "torch") if name != entry.engine]
    return order, table_reason(cpu, kind)


def table_reason(cpu: Cpu, kind: str) -> str:
    """Why ``auto`` took the table's entry: the CPU class, the kind of model and the measurement."""
    return f"auto for CPU class {cpu.name}, {kind} model: {measured(cpu, kind).evidence}"


def describe(engine: str, precision: str, engine_why: str, precision_why: str) -> str:
    """One line: what runs and why, each reason once (``openvino bf16 (auto for CPU class ...)``)."""
    reasons = [engine_why]
    if precision_why not in (engine_why, "asked for") and not (engine == "onnx" and engine_why != "asked for"):
        reasons.append(precision_why)
    return f"{engine} {precision} ({'; '.join(reasons)})"


def choose_precision(
    requested: str, engine: str, cpu: Cpu, kind: str = "fixed", device: str = "cpu"
) -> tuple[str, str]:
    """(``float32`` or ``bf16``, why) that ``engine`` runs at for ``requested``; ModelError for a
    precision that cannot run. ``engine``: ``openvino``, ``onnx``, ``torch`` (inference) or ``train``
    (the training step's autocast, bf16 under ``auto`` wherever the hardware has native bf16)."""
    check_precision(requested)
    on_cpu = device in (None, "", "cpu")
    if engine == "onnx":
        if requested == "bf16":
            raise ModelError("onnxruntime runs this model in float32 only: use --engine openvino or torch for bf16")
        return "float32", "onnxruntime runs float32 only" if requested == "auto" else "asked for"
    if requested == "bf16":
        if engine == "openvino" and cpu.bf16_flag is None:
            raise ModelError(
                f"this CPU (class {cpu.name}) has no native bf16 units, so OpenVINO cannot run bf16: "
                "use --precision float32 (or --engine torch, which emulates bf16 slowly)"
            )
        return "bf16", "asked for"
    if requested == "float32":
        return "float32", "asked for"
    if not on_cpu:
        if engine == "train" and _cuda_bf16(device):
            return "bf16", f"auto: {device} has native bf16"
        return "float32", "auto: float32 off the CPU"
    if cpu.bf16_flag is None:
        return "float32", f"auto: CPU class {cpu.name} has no native bf16 units"
    if engine == "train":
        return "bf16", f"auto: this CPU has native bf16 units ({cpu.bf16_flag})"
    if engine == "torch" and not TORCH_AUTO_BF16:
        return "float32", "auto: the torch engine's bf16 (autocast) is slower than its float32 on this network"
    if kind == "per-input":
        return "float32", "auto: per-input models stay float32 (bf16 missed the quality rule)"
    entry = measured(cpu, kind)
    if entry.engine == engine:
        return entry.precision, table_reason(cpu, kind)
    return "bf16", f"auto: this CPU has native bf16 units ({cpu.bf16_flag})"


def _cuda_bf16(device: str) -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
