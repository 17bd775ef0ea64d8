"""Where the whole command's time goes before and after the network: imports, model load, compile
(cold: an empty OpenVINO cache; cached: the second run), decode, denoise, encode.

Each run is a fresh process that times its own phases (wall seconds), on one file (default 120 s,
16-bit WAV), the shipped default model, every engine and precision asked for; medians of
``--repeats`` alternating runs. The import list is ``python -X importtime`` of the denoise command's
modules (cumulative microseconds, the largest first).

    python benchmarks/startup.py [--seconds 120 --repeats 3 --threads 2]

Results: ``benchmarks/results/startup.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from common import RESULTS

SOURCE = Path(__file__).resolve().parents[1] / "src"

PHASES = """
import json, sys, time
started = time.perf_counter()
marks = {}
import numpy, soundfile
from hushnet.denoiser import Denoiser
marks["import hushnet"] = time.perf_counter() - started
engine, precision, threads, source, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
if engine == "openvino":
    t = time.perf_counter(); import openvino; marks["import openvino"] = time.perf_counter() - t
elif engine == "onnx":
    t = time.perf_counter(); import onnxruntime; marks["import onnxruntime"] = time.perf_counter() - t
t = time.perf_counter()
denoiser = Denoiser.from_pretrained(None, engine=engine, precision=precision, threads=threads)
total = time.perf_counter() - t
compiled = sum(getattr(denoiser.engine, "compile_seconds", {}).values())
marks["model load"] = total - compiled
marks["compile"] = compiled
t = time.perf_counter(); x, rate = soundfile.read(source, dtype="float32"); marks["decode"] = time.perf_counter() - t
t = time.perf_counter(); y = denoiser.denoise(x, rate); marks["denoise"] = time.perf_counter() - t
t = time.perf_counter(); soundfile.write(target, y, rate, subtype="PCM_16"); marks["encode"] = time.perf_counter() - t
marks["total"] = time.perf_counter() - started
print(json.dumps(marks))
"""


def run_phases(engine: str, precision: str, threads: int, source: Path, target: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SOURCE), "XDG_CACHE_HOME": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", PHASES, engine, precision, str(threads), str(source), str(target)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def import_times(modules: str, top: int = 12) -> list[tuple[str, int]]:
    """(module, cumulative microseconds) of ``python -X importtime -c 'import ...'``, largest first."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {modules}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SOURCE)},
        check=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line.split("|")
            rows.append((name.strip(), int(cumulative)))
    return sorted(rows, key=lambda row: -row[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", nargs="+", default=["openvino bf16", "openvino float32", "onnx float32"])
    args = parser.parse_args()
    record = {
        "seconds": args.seconds,
        "threads": args.threads,
        "repeats": args.repeats,
        "load_before": round(os.getloadavg()[0], 2),
        "cold": {},
        "cached": {},
    }
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        source = folder / "in.wav"
        rng = np.random.default_rng(0)
        sf.write(
            source, (0.05 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32), 16000, subtype="PCM_16"
        )
        runs: dict[str, list[dict]] = {name: [] for name in args.systems}
        for repeat in range(args.repeats + 1):
            for name in args.systems:
                engine, precision = name.split()
                cache = folder / f"cache-{name.replace(' ', '-')}"
                phases = run_phases(engine, precision, args.threads, source, folder / "out.wav", cache)
                if repeat == 0:
                    record["cold"][name] = {k: round(v, 3) for k, v in phases.items()}
                else:
                    runs[name].append(phases)
                print(repeat, name, {k: round(v, 3) for k, v in phases.items()}, flush=True)
        for name, rows in runs.items():
            record["cached"][name] = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    record["imports"] = {
        "hushnet.denoiser (the denoise command's path)": import_times("hushnet.commands.denoise, hushnet.denoiser"),
        "openvino": import_times("openvino", top=5),
        "onnxruntime": import_times("onnxruntime", top=5),
    }
    record["load_after"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "startup.md").write_text(markdown(record))
    print(markdown(record))


def markdown(record: dict) -> str:
    phases = [k for k in next(iter(record["cached"].values())) if k != "total"]
    lines = [
        f"# Start-up and I/O of the whole command ({record['seconds']:.0f}-s 16-bit WAV, shipped default model, {record['threads']} threads)",
        "",
        f"Wall seconds per phase in a fresh process; `cold` = first run with an empty OpenVINO cache, `cached` = medians of "
        f"{record['repeats']} later runs. Load average {record['load_before']} before, {record['load_after']} after (a shared machine).",
        "",
        "| system | run | " + " | ".join(phases) + " | total |",
        "|---|---|" + "---|" * (len(phases) + 1),
    ]
    for run in ("cold", "cached"):
        for name, row in record[run].items():
            lines.append(
                f"| {name} | {run} | " + " | ".join(f"{row.get(k, 0):.3f}" for k in phases) + f" | {row['total']:.3f} |"
            )
    for title, rows in record["imports"].items():
        lines += [
            "",
            f"`python -X importtime -c 'import {title.split(' ')[0]}'`, cumulative ms, largest first: "
            + ", ".join(f"{name} {micro / 1000:.0f}" for name, micro in rows),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
