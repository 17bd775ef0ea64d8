"""How the robustness groups are spread over lanes (processes), waited for, and tabled."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("harness.py")
TESTS = HARNESS.parents[1]
LANES = 2  # the CI machine's cores; each case runs with one thread
GROUP_TIMEOUT_S = 900

# Seconds each group took on a 2-core AMD EPYC Zen 5 (two lanes at once, load 1.3), to balance the
# lanes; a group missing here counts as 30 s.
TYPICAL_SECONDS = {
    "denoise": 30,
    "signals": 18,
    "serve": 13,
    "silence": 10,
    "streams": 9,
    "models": 6,
    "api": 4,
    "http": 4,
    "train": 3,
    "ensemble": 3,
    "evaluate": 2,
    "export-onnx": 2,
}


def typical_seconds(group: str) -> float:
    return TYPICAL_SECONDS.get(group, 30)


def balanced_lanes(groups: list[str], lanes: int = LANES) -> list[list[str]]:
    """Longest first, each group to the lane with the least work so far."""
    work: list[tuple[float, list[str]]] = [(0.0, []) for _ in range(lanes)]
    for group in sorted(groups, key=lambda g: -typical_seconds(g)):
        index = min(range(lanes), key=lambda i: work[i][0])
        total, members = work[index]
        work[index] = (total + typical_seconds(group), members + [group])
    return [members for _, members in work if members]


@dataclass
class Lanes:
    """The lane processes and where their groups' results land."""

    out: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)  # group -> its lane's process
    logs: dict[str, Path] = field(default_factory=dict)  # group -> its lane's log
    started: float = field(default_factory=time.perf_counter)

    def wait(self, group: str) -> dict:
        """The group's record once written; fails with the lane's log if the lane ends without it."""
        target = self.out / f"{group}.json"
        deadline = time.monotonic() + GROUP_TIMEOUT_S
        while not target.exists():
            process = self.processes[group]
            if process.poll() is not None and not target.exists():
                tail = self.logs[group].read_text(errors="replace")[-3000:]
                pytest.fail(f"the lane running {group!r} ended (status {process.returncode}) without it:\n{tail}")
            if time.monotonic() > deadline:
                pytest.fail(f"{group!r} did not finish in {GROUP_TIMEOUT_S} s")
            time.sleep(0.2)
        return json.loads(target.read_text())


def selected_groups(session: pytest.Session) -> list[str]:
    return [
        item.callspec.params["group"]
        for item in session.items
        if item.path == TESTS / "robustness" / "test_robustness.py" and hasattr(item, "callspec")
    ]


def write_table(lanes: Lanes, load: str, work: str) -> None:
    """benchmarks/results/robustness.md and .json from the groups that finished, in GROUPS order."""
    import harness

    records = [json.loads(p.read_text()) for g in harness.GROUPS if (p := lanes.out / f"{g}.json").exists()]
    results = [harness.Result(**r) for record in records for r in record["results"]]
    cpu = harness.cpu_line()
    text = harness.table(results, time.perf_counter() - lanes.started, load, work, cpu)
    seconds = ", ".join(f"{record['group']} {record['seconds']:.0f} s" for record in records)
    text += f"\nSeconds per group (two lanes at once): {seconds}.\n"
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / "robustness.md").write_text(text)
    (harness.RESULTS / "robustness.json").write_text(json.dumps(records, indent=1) + "\n")
