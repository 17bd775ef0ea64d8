"""bf16 against float32 training: the same 100-step job from authors-dfl in each precision.

    python benchmarks/bf16_parity.py --run                 # trains runs/parity/{bf16,float32} (1 thread each, one after the other)
    python benchmarks/bf16_parity.py                       # compares them: results/precision.md

Compared: the per-step training loss (mean relative difference over the steps, and over a 10-step
running mean), and the validation scores at the end (PESQ-WB, STOI, SI-SDR on the job's 16 held-out
mixtures, each model run in float32).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import RESULTS, ROOT

RUNS = ROOT / "runs" / "parity"
JOB = [
    "--init",
    "authors-dfl",
    "--norm",
    "per-input",
    "--batch-size",
    "4",
    "--segment-seconds",
    "4",
    "--max-steps",
    "100",
    "--learning-rate",
    "5e-5",
    "--warmup-steps",
    "10",
    "--validate-every",
    "50",
    "--checkpoint-every",
    "50",
    "--threads",
    "1",
    "--seed",
    "0",
    "-q",
]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def running_mean(values: np.ndarray, width: int = 10) -> np.ndarray:
    return np.convolve(values, np.ones(width) / width, mode="valid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="train both runs first")
    args = parser.parse_args()
    if args.run:
        for precision in ("bf16", "float32"):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "hushnet.cli",
                    "train",
                    "-o",
                    str(RUNS / precision),
                    "--precision",
                    precision,
                    *JOB,
                ],
                check=True,
            )
    logs = {p: rows(RUNS / p / "log.csv") for p in ("bf16", "float32")}
    validation = {p: rows(RUNS / p / "validation.csv") for p in ("bf16", "float32")}
    steps = min(len(logs["bf16"]), len(logs["float32"]))
    fast, exact = (np.array([float(r["loss"]) for r in logs[p][:steps]]) for p in ("bf16", "float32"))
    per_step = np.abs(fast - exact) / np.abs(exact)
    smooth = np.abs(running_mean(fast) - running_mean(exact)) / np.abs(running_mean(exact))
    speed = {p: np.median([float(r["audio_seconds_per_second"]) for r in logs[p][2:steps]]) for p in logs}
    lines = [
        "# bf16 against float32: the same 100-step training job",
        "",
        f"`hushnet train {' '.join(JOB)} --precision bf16|float32` (feature loss through the authors' loss network, "
        "every run compiled, channels-last layout; the machine was shared with other work, so the speeds are only indicative).",
        "",
        f"- Steps compared: {steps}. Training loss, mean relative difference per step: **{100 * per_step.mean():.2f} %** "
        f"(max {100 * per_step.max():.2f} %); of the 10-step running means: {100 * smooth.mean():.2f} %.",
        f"- Median speed: bf16 {speed['bf16']:.2f}, float32 {speed['float32']:.2f} audio s per s.",
        "",
        "| step | precision | validation loss | PESQ-WB | STOI | SI-SDR dB |",
        "|---|---|---|---|---|---|",
    ]
    for precision in ("bf16", "float32"):
        for r in validation[precision]:
            lines.append(f"| {r['step']} | {precision} | {r['loss']} | {r['pesq']} | {r['stoi']} | {r['si_sdr']} |")
    end = {p: validation[p][-1] for p in validation}
    difference = float(end["bf16"]["pesq"]) - float(end["float32"]["pesq"])
    lines += ["", f"PESQ-WB at the end, bf16 minus float32: **{difference:+.3f}** (step {end['bf16']['step']})."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
