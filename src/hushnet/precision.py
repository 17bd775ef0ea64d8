"""Which arithmetic a network runs in: ``float32``, or ``bf16`` where the hardware has bf16 matrix units.

``auto`` is bf16 on CPUs with native bf16 matrix instructions (Intel AMX or AVX-512 BF16; Arm's
BF16 extension) and on GPUs that support it, float32 everywhere else: on a CPU without them bf16
is emulated and slower than float32. Torch-free, so the light runtime can decide too.
"""

from __future__ import annotations

import functools
import platform

PRECISIONS = ("auto", "float32", "bf16")
PRECISION_HELP = "auto (bf16 where the CPU or GPU has native bf16 units, else float32), float32 or bf16"

# CPU flags (Linux /proc/cpuinfo) that mean bf16 matrix arithmetic in hardware.
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16", "bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere, or when unreadable)."""
    if platform.system() != "Linux":
        return frozenset()
    try:
        text = open("/proc/cpuinfo", encoding="ascii", errors="replace").read()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            flags.update(value.split())
    return frozenset(flags)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware."""
    return bool(cpu_flags() & BF16_CPU_FLAGS)


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
