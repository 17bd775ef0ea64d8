"""What the benchmark scripts share: where the repository, the shared data, the results and the
scratch work live, the test sets, and how a table cell is written.

Scripts run as ``python benchmarks/NAME.py``, so this folder is first on ``sys.path`` and
``from common import ...`` finds this module."""

from __future__ import annotations

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


def cell(value) -> str:
    """A Markdown table cell: floats to 3 decimals, nothing for None."""
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)
