"""Runs the robustness groups that the session selected, in fresh processes, two lanes at a time.

The cases fork one child each (a crash stays one case's result), which is only safe from a process
without running thread pools: not pytest's, where earlier tests have started torch's and
onnxruntime's. So each lane is ``python tests/robustness/harness.py GROUP ...`` on material built once
per session; the lanes start with the first robustness test and each test waits for its group."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from lanes import HARNESS, TESTS, Lanes, balanced_lanes, selected_groups, write_table


@pytest.fixture(scope="session")
def robustness_lanes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("robustness")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")])),
        "OMP_NUM_THREADS": "1",
    }
    material = base / "material"
    subprocess.run(
        [sys.executable, str(HARNESS), "--prepare", "--material", str(material)], env=environment, check=True
    )
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    lanes = Lanes(base / "out")
    for number, groups in enumerate(balanced_lanes(selected_groups(request.session))):
        log = base / f"lane{number}.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                [sys.executable, str(HARNESS), *groups, "--material", str(material), "--work", str(base / "work")]
                + ["--out", str(lanes.out)],
                env=environment,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        for group in groups:
            lanes.processes[group], lanes.logs[group] = process, log
    yield lanes
    for process in set(lanes.processes.values()):
        if process.poll() is None:
            process.kill()
            process.wait()
    if request.config.getoption("--robustness-table", default=False):
        write_table(lanes, load, str(base))
