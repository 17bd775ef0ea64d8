"""The one check of how a network is run (threads, device, chunk length, memory budget), shared by
the CLI, :class:`~hushnet.denoiser.Denoiser`, the engines and the server, so that each refuses the
same values with the same one-line message before any work, and caps threads at the cores the same
way. Imports nothing heavy (no torch)."""

from __future__ import annotations

import math
import numbers
import os
import re
import warnings
from typing import Callable

# A chunk of 0 or -1 s became 1-sample chunks that never finish; far above the default, one chunk is
# the whole file in memory. (Tiny test models run fine on 10-ms chunks.)
MIN_CHUNK_SECONDS, MAX_CHUNK_SECONDS = 0.01, 3600.0
MIN_MEMORY_BUDGET_MB, MAX_MEMORY_BUDGET_MB = 16.0, float(2**20)
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")


class RuntimeOptionError(ValueError):
    """A runtime option that cannot work; the message is one line naming it and its allowed range."""


def _name(option: str, flags: bool) -> str:
    return "--" + option.replace("_", "-") if flags else option


def _number(option: str, value, low: float, high: float, flags: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuntimeOptionError(f"{_name(option, flags)} must be a number between {low:g} and {high:g}, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise RuntimeOptionError(f"{_name(option, flags)} must be between {low:g} and {high:g}, got {value!r}")


def _threads(threads, flags: bool) -> None:
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise RuntimeOptionError(f"{_name('threads', flags)} must be a whole number of at least 1, got {threads!r}")


def validate_runtime_options(
    *, threads=None, device=None, chunk_seconds=None, memory_budget_mb=None, flags: bool = False
) -> None:
    """Raise :class:`RuntimeOptionError` for a value that cannot work; None means "not given".
    Threads above the cores are not an error: :func:`usable_threads` caps them.

    ``flags``: name the options as command-line flags (``--threads``) rather than arguments."""
    if threads is not None:
        _threads(threads, flags)
    if device is not None and (not isinstance(device, str) or not DEVICE_PATTERN.match(device)):
        raise RuntimeOptionError(f"{_name('device', flags)} must be cpu, cuda or cuda:N, got {device!r}")
    if chunk_seconds is not None:
        _number("chunk_seconds", chunk_seconds, MIN_CHUNK_SECONDS, MAX_CHUNK_SECONDS, flags)
    if memory_budget_mb is not None:
        _number("memory_budget_mb", memory_budget_mb, MIN_MEMORY_BUDGET_MB, MAX_MEMORY_BUDGET_MB, flags)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def usable_threads(threads: int | None, note: Callable[[str], None] | None = None) -> int | None:
    """``threads`` as an engine should use it: None (the engine's choice) passes, fewer than 1 or not a
    whole number is a :class:`RuntimeOptionError`, more than the cores is capped at the cores and said
    once through ``note`` (default: a Python warning): a thread count far above the cores costs
    memory per thread and swamps the machine (docs/behaviour.md)."""
    if threads is None:
        return None
    _threads(threads, flags=note is not None)
    cores = available_cores()
    if threads > cores:
        message = f"--threads {threads} is more than the {cores} core{'s' if cores != 1 else ''} here; using {cores}"
        if note is None:
            warnings.warn(message, stacklevel=3)
        else:
            note(message)
        return cores
    return int(threads)
