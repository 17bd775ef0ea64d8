"""The one check of how a network is run (threads, device, chunk length, memory budget), shared by
the CLI, :class:`~hushnet.denoiser.Denoiser` and the server, so that each refuses the same values
with the same one-line message before any work. Imports nothing heavy (no torch)."""

from __future__ import annotations

import math
import os
import re

# More threads than this only thrash: 100000 threads took one process to 16.7 GB and the load past 2,700.
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))
# A chunk of 0 or -1 s became 1-sample chunks that never finish; far above the default, one chunk is
# the whole file in memory. (Tiny test models run fine on 10-ms chunks.)
MIN_CHUNK_SECONDS, MAX_CHUNK_SECONDS = 0.01, 3600.0
MIN_MEMORY_BUDGET_MB, MAX_MEMORY_BUDGET_MB = 16.0, float(2**20)
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")


class RuntimeOptionError(ValueError):
    """A runtime option that cannot work; the message is one line naming it and its allowed range."""


def _name(option: str, flags: bool) -> str:
    return "--" + option.replace("_", "-") if flags else option


def _number(option: str, value, low: float, high: float, flags: bool, whole: bool = False) -> None:
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not float(value).is_integer()):
        raise RuntimeOptionError(f"{_name(option, flags)} must be {kind} between {low:g} and {high:g}, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise RuntimeOptionError(f"{_name(option, flags)} must be between {low:g} and {high:g}, got {value!r}")


def validate_runtime_options(*, threads=None, device=None, chunk_seconds=None, memory_budget_mb=None, flags: bool = False) -> None:
    """Raise :class:`RuntimeOptionError` for a value that cannot work; None means "not given".

    ``flags``: name the options as command-line flags (``--threads``) rather than arguments."""
    if threads is not None:
        _number("threads", threads, 1, MAX_THREADS, flags, whole=True)
    if device is not None and (not isinstance(device, str) or not DEVICE_PATTERN.match(device)):
        raise RuntimeOptionError(f"{_name('device', flags)} must be cpu, cuda or cuda:N, got {device!r}")
    if chunk_seconds is not None:
        _number("chunk_seconds", chunk_seconds, MIN_CHUNK_SECONDS, MAX_CHUNK_SECONDS, flags)
    if memory_budget_mb is not None:
        _number("memory_budget_mb", memory_budget_mb, MIN_MEMORY_BUDGET_MB, MAX_MEMORY_BUDGET_MB, flags)
