"""What the benchmark scripts share: where the repository, the shared data, the results and the
scratch work live, the test sets, and how a table cell is written.

Scripts run as ``python benchmarks/NAME.py``, so this folder is first on ``sys.path`` and
``from common import ...`` finds this module."""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work"
RATE = 16000
TEST_SETS = {
    "valentini_dev": SHARED / "data" / "valentini_dev",
    "synthetic": WORK / "synthetic",
}


# The flags that decide the int8, bf16 and AMX kernels, recorded with every benchmark row.
DECIDING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def cpu_facts() -> dict:
    """This machine's CPU as every benchmark records it: model name, family/model numbers, the
    deciding flags it has, the class hushnet's ``auto`` sees, and the core count."""
    from hushnet.precision import cpu_numbers, detect_cpu

    cpu, numbers = detect_cpu(), cpu_numbers()
    return {
        "model": cpu.model,
        "family": numbers.get("cpu family"),
        "model_number": numbers.get("model"),
        "flags": [flag for flag in DECIDING_FLAGS if flag in cpu.flags],
        "class": cpu.name,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
    }


def cell(value) -> str:
    """A Markdown table cell: floats to 3 decimals, nothing for None."""
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def timed_command(command: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``command`` (stdout dropped, stderr kept); the process and, when it succeeded, its wall seconds,
    CPU seconds (user + system) and peak RSS (MB).

    Through GNU time: a child forked from a torch-laden benchmark would report that process's resident
    size as its own peak (Linux carries the pre-exec high-water mark over into ru_maxrss)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-f", "%U %S %M", "-o", report.name, *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        wall = time.perf_counter() - start
        if result.returncode != 0:
            return result, {}
        user, system, peak_kb = report.read().split()[-3:]
    return result, {"wall_s": wall, "cpu_s": float(user) + float(system), "peak_rss_mb": float(peak_kb) / 1024}
