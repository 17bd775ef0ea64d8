"""The trainers' compute path: bf16 autocast where the hardware has bf16 units, and the step compiled.

The networks already compute in oneDNN's channels-last layout (:mod:`hushnet.models.layout`). On top
of it, bf16 autocast runs the convolutions on the CPU's matrix units while the master weights, the
normalisation statistics, the loss reductions and the optimizer stay float32; and ``torch.compile``
fuses the normalisation and activation passes that dominate once the convolutions are fast.
Measured here (one thread, batch 4 x 4 s, the CAN with the deep feature loss): see
``benchmarks/results/training.md``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import torch


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"``, nothing otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def describe(requested: str, precision: str, compiled: bool) -> str:
    """One line for the run log: what arithmetic the run uses and why."""
    why = (
        " (auto: native bf16 units found)"
        if requested == "auto" and precision == "bf16"
        else (" (auto: no native bf16 units)" if requested == "auto" else "")
    )
    master = ", float32 master weights, statistics and optimizer" if precision == "bf16" else ""
    return f"precision {precision}{why}{master}; torch.compile {'on' if compiled else 'off'}"


class CompiledStep:
    """``fn`` through ``torch.compile`` (when ``enabled``), falling back to eager with one line if
    compiling fails (no C++ compiler, an unsupported platform): training goes on, only slower.

    ``first_call_seconds`` is the first call's wall time: the compilation of the forward graph.
    """

    def __init__(
        self, fn: Callable[..., Any], enabled: bool, say: Callable[[str], None], dynamic: bool | None = False
    ) -> None:
        self.fn = fn
        self.say = say
        self.compiled = torch.compile(fn, dynamic=dynamic) if enabled else None
        self.first_call_seconds: float | None = None

    @property
    def enabled(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        if self.first_call_seconds is not None:
            return self.compiled(*args)
        started = time.perf_counter()
        try:
            result = self.compiled(*args)
        except Exception as error:  # noqa: BLE001 - any compiler failure; eager gives the same numbers
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self.say(f"torch.compile failed ({first[:200]}): training without it (--no-compile hides this line)")
            self.compiled = None
            return self.fn(*args)
        self.first_call_seconds = time.perf_counter() - started
        return result
