"""Which arithmetic a network runs in: ``float32``, or ``bf16`` where the hardware has bf16 matrix units.

``auto`` is bf16 on CPUs with native bf16 matrix instructions (Intel AMX or AVX-512 BF16; Arm's
BF16 extension) and on GPUs that support it, float32 everywhere else: on a CPU without them bf16
is emulated and slower than float32. Torch-free, so the light runtime can decide too.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

PRECISIONS = ("auto", "float32", "bf16")
PRECISION_HELP = "auto (bf16 where the CPU or GPU has native bf16 units, else float32), float32 or bf16"

# CPU flags (Linux /proc/cpuinfo) that mean bf16 matrix arithmetic in hardware, in order of preference.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flag(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """The first of BF16_FLAGS this CPU reports, or None (also where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86, Arm
            flags.update(line.split(":", 1)[-1].split())
            break
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware."""
    return _cached_flag() is not None


@functools.lru_cache(maxsize=1)
def _cached_flag() -> str | None:
    return cpu_bf16_flag()


def device_has_native_bf16(device: str = "cpu") -> bool:
    """:func:`cpu_has_native_bf16` for the CPU; torch's own answer for a CUDA device."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def resolve_precision(requested: str, device: str = "cpu") -> str:
    """``float32`` or ``bf16`` for a requested precision (``auto`` decided by the hardware); ValueError otherwise."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "auto":
        return "bf16" if device_has_native_bf16(device or "cpu") else "float32"
    return requested
