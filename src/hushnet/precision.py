"""What this CPU is, for the choice of engine and precision: its flags, model name and class.

The class (AMX, AVX-512 with bf16, AVX-512, AVX2, arm64) keys the table of measured choices in
:mod:`hushnet.inference.choice`; the bf16 flags say whether bf16 runs in hardware (on a CPU without
them bf16 is emulated and slower than float32). $HUSHNET_CPU_FLAGS stands in for the flags, to test
or measure one class on another. Torch-free, so the light runtime can decide too.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

# CPU flags (Linux /proc/cpuinfo) that mean bf16 matrix arithmetic in hardware, in order of preference.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


# Set to a space-separated flag list, this replaces what /proc/cpuinfo says: to test or measure one
# CPU class on another (together with ONEDNN_MAX_CPU_ISA and ATEN_CPU_CAPABILITY for the libraries).
FLAGS_VARIABLE = "HUSHNET_CPU_FLAGS"

# The CPU classes engine and precision choices are keyed by, most capable first.
CPU_CLASSES = ("amx", "avx512_bf16", "avx512", "avx2", "arm64", "unknown")


def cpu_flags(cpuinfo: str | os.PathLike | None = None) -> frozenset[str]:
    """The first ``flags`` (x86) or ``Features`` (Arm) line of ``cpuinfo``; empty where there is none.
    ``None``: this CPU, i.e. $HUSHNET_CPU_FLAGS where set, else /proc/cpuinfo."""
    if cpuinfo is None:
        override = os.environ.get(FLAGS_VARIABLE)
        if override is not None:
            return frozenset(override.split())
        cpuinfo = "/proc/cpuinfo"
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[-1].split())
    return frozenset()


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU's model name as the OS reports it, or the machine type."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            if line.startswith(("model name", "Model", "CPU part")):
                return line.split(":", 1)[-1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def cpu_numbers(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's ``cpu family`` and ``model`` numbers (x86: they tell CPU generations
    apart where the model name does not, e.g. "AMD EPYC"); empty where there are none."""
    numbers: dict[str, str] = {}
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key.strip() in ("cpu family", "model"):
                numbers.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return numbers


def cpu_class(flags: frozenset[str] | None = None, machine: str | None = None) -> str:
    """One of CPU_CLASSES for ``flags`` (default: this CPU's): ``amx`` (AMX bf16 tiles),
    ``avx512_bf16`` (AVX-512 with bf16 dot products: Zen 4, Cooper Lake), ``avx512``, ``avx2``
    (AVX2 and FMA), ``arm64``, else ``unknown``."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if "amx_bf16" in flags:
        return "amx"
    if "avx512f" in flags and "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    return "unknown"


def cpu_bf16_flag(cpuinfo: str | os.PathLike | None = None) -> str | None:
    """The first of BF16_FLAGS this CPU reports, or None (also where there is no /proc/cpuinfo)."""
    flags = cpu_flags(cpuinfo)
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


@dataclass(frozen=True)
class Cpu:
    """What the engine and precision choice needs to know of a CPU: its class, model name and flags."""

    name: str
    model: str
    flags: frozenset[str]

    @property
    def bf16_flag(self) -> str | None:
        """The first of BF16_FLAGS the CPU reports: bf16 matrix arithmetic in hardware; None without."""
        return next((flag for flag in BF16_FLAGS if flag in self.flags), None)


def detect_cpu(cpuinfo: str | os.PathLike | None = None) -> Cpu:
    """This CPU (with the flags $HUSHNET_CPU_FLAGS says, where set), or the one ``cpuinfo`` describes."""
    flags = cpu_flags(cpuinfo)
    return Cpu(cpu_class(flags), cpu_model(cpuinfo or "/proc/cpuinfo"), flags)
