"""Whole-command speed of every engine and precision, for the CPU class this machine is (or emulates).

Runs ``hushnet denoise`` (a fresh process each time: start-up, model load, compile, decode, write)
on a 60-s and a 120-s file made of ``valentini_dev`` speech, for each engine and precision, model
and thread count, in alternating order (one repeat of every configuration, then the next repeat),
and records the median wall seconds and CPU seconds (user + system, the number to read on a
shared machine) per audio second, with the CPU model, its flags, the class and the load average
in every row.

    python benchmarks/engine_speed.py                           # this CPU as it is
    python benchmarks/engine_speed.py --emulate avx2            # torch/oneDNN and hushnet capped at AVX2

``--emulate avx2`` sets ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``ATEN_CPU_CAPABILITY=avx2`` (torch's kernels) and
``HUSHNET_CPU_FLAGS`` (the flags hushnet reads, so ``auto`` chooses as on an AVX2-only CPU). OpenVINO's
CPU plugin (its library has no ``MAX_CPU_ISA`` setting) and onnxruntime pick their kernels from CPUID
whatever the environment, so under emulation their rows are this CPU's kernels, not AVX2's: the
emulated run checks what ``auto`` picks and measures torch; OpenVINO bf16 is left out there.
Results are appended to ``benchmarks/results/engine_speed.json`` and the table
``engine_speed.md`` is rewritten from it.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from common import timed_command

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEECH = ROOT.parent / "shared" / "data" / "valentini_dev" / "noisy"
CONFIGURATIONS = (
    ("auto", "auto"),
    ("openvino", "float32"),
    ("openvino", "bf16"),
    ("onnx", "float32"),
    ("torch", "float32"),
)
# Flags a CPU with AVX2 and FMA but no AVX-512 reports (the ones hushnet's CPU classes look at).
AVX2_FLAGS = "sse4_2 avx avx2 fma f16c bmi2"
EMULATIONS = {
    "avx2": {
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "HUSHNET_CPU_FLAGS": AVX2_FLAGS,
    }
}


def make_file(seconds: float, path: Path) -> None:
    """``seconds`` of noisy speech: the ``valentini_dev`` noisy files one after another, repeated."""
    parts = [sf.read(p, dtype="float32")[0] for p in sorted(SPEECH.glob("*.flac"))]
    speech = np.concatenate(parts)
    sf.write(path, np.resize(speech, int(seconds * 16000)), 16000, subtype="PCM_16")


def run_once(command: list[str], env: dict) -> dict:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one command, and the choice it printed."""
    result, measured = timed_command(command, env)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    choice = next((line for line in result.stderr.splitlines() if "engine:" in line), "")
    return {**measured, "choice": choice.strip()}


def cpu_description(env: dict) -> dict:
    """The CPU model, its flags and the class hushnet reads (under ``env``)."""
    probe = (
        "import json, platform; from hushnet.precision import cpu_class, cpu_flags, cpu_model; "
        "print(json.dumps({'model': cpu_model(), 'class': cpu_class(), 'flags': sorted(cpu_flags()), "
        "'machine': platform.machine()}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load1() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulate", choices=sorted(EMULATIONS), help="cap the CPU at this class")
    parser.add_argument("--models", nargs="+", default=["hushnet-dfl", "authors-dfl"])
    parser.add_argument("--seconds", nargs="+", type=float, default=[60.0, 120.0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--configurations", nargs="+", default=[f"{e}-{p}" for e, p in CONFIGURATIONS], help="ENGINE-PRECISION"
    )
    parser.add_argument("--from-log", type=Path, help="summarize what a stopped run printed (its stdout) instead")
    parser.add_argument("--uptime", nargs=2, default=["", ""], help="with --from-log: the load before and after")
    args = parser.parse_args()
    env = {**os.environ, **EMULATIONS.get(args.emulate, {})}
    cpu = cpu_description(env)
    if args.from_log:
        save(summarize(from_log(args.from_log), cpu, args.emulate, *args.uptime))
        return
    configurations = [tuple(c.split("-", 1)) for c in args.configurations]
    if args.emulate:  # OpenVINO keeps its own bf16 capability under the oneDNN cap: not an AVX2 number
        configurations = [c for c in configurations if c != ("openvino", "bf16")]
    work = Path(tempfile.mkdtemp(prefix="hushnet-speed-"))
    files = {}
    for seconds in args.seconds:
        files[seconds] = work / f"speech_{seconds:g}s.wav"
        make_file(seconds, files[seconds])
    before = uptime()
    jobs = [
        (model, seconds, threads, engine, precision)
        for model in args.models
        for seconds in args.seconds
        for threads in args.threads
        for engine, precision in configurations
    ]
    samples: dict[tuple, list[dict]] = {job: [] for job in jobs}
    try:
        measure(jobs, samples, files, work, env, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    after = uptime()
    save(summarize(samples, cpu, args.emulate, before, after))


def measure(jobs: list[tuple], samples: dict, files: dict, work: Path, env: dict, repeats: int) -> None:
    """Every job once per repeat, in turn (alternating), into ``samples``; one printed line each."""
    for repeat in range(repeats):
        for job in jobs:
            model, seconds, threads, engine, precision = job
            command = [
                sys.executable, "-m", "hushnet.cli", "denoise", str(files[seconds]), "-o", str(work / "out.wav"),
                "--model", model, "--engine", engine, "--precision", precision, "--threads", str(threads), "-v",
            ]  # fmt: skip
            row = run_once(command, env)
            row["load1"] = load1()
            samples[job].append(row)
            print(repeat, job, {k: v for k, v in row.items() if k != "choice"}, row.get("choice", ""), flush=True)


def save(record: dict) -> None:
    """Add ``record`` to results/engine_speed.json and rewrite engine_speed.md from all records."""
    path = RESULTS / "engine_speed.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append(record)
    path.write_text(json.dumps(history, indent=1) + "\n")
    (RESULTS / "engine_speed.md").write_text(markdown(history))
    print(markdown(history))


def summarize(samples: dict[tuple, list[dict]], cpu: dict, emulated: str | None, before: str, after: str) -> dict:
    """The record of one run: a row per configuration with the medians of its repeats."""
    rows = []
    for (model, seconds, threads, engine, precision), runs in samples.items():
        good = [r for r in runs if "cpu_s" in r]
        row = {
            "model": model,
            "seconds": seconds,
            "threads": threads,
            "engine": engine,
            "precision": precision,
            "cpu_class": cpu["class"],
            "emulated": emulated,
            "cpu_model": cpu["model"],
            "cpu_flags": " ".join(f for f in cpu["flags"] if "avx" in f or "amx" in f or f in ("fma", "f16c")),
            "repeats": len(good),
            "load1_median": round(statistics.median(r["load1"] for r in runs), 2),
        }
        if good:
            row.update(
                cpu_s_per_audio_s=round(statistics.median(r["cpu_s"] for r in good) / seconds, 4),
                wall_rtf=round(statistics.median(r["wall_s"] for r in good) / seconds, 4),
                peak_rss_mb=round(statistics.median(r["peak_rss_mb"] for r in good)),
                choice=good[-1].get("choice", ""),
            )
        else:
            row["error"] = runs[-1]["error"]
        rows.append(row)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "uptime_before": before,
        "uptime_after": after,
        "emulated": emulated,
        "cpu": cpu,
        "rows": rows,
    }


def from_log(log: Path) -> dict[tuple, list[dict]]:
    """The samples a run printed (one line per command), for a run stopped before its end."""
    samples: dict[tuple, list[dict]] = {}
    for line in log.read_text().splitlines():
        match = re.match(r"^\d+ (\(.*?\)) (\{.*?\})(.*)$", line)
        if match:
            row = ast.literal_eval(match.group(2))
            row["choice"] = match.group(3).strip()
            samples.setdefault(ast.literal_eval(match.group(1)), []).append(row)
    return samples


def markdown(history: list[dict]) -> str:
    lines = [
        "# Engine speed per CPU class: the whole `hushnet denoise` command",
        "",
        "Written by `benchmarks/engine_speed.py`. CPU s per audio s = (user + system) / audio seconds, the number to "
        "read on a shared machine; wall RTF = wall seconds / audio seconds. Medians of alternating repeats. "
        "`emulated`: the class was capped by environment (`--emulate`), not the real CPU.",
        "",
    ]
    for record in history:
        cpu = record["cpu"]
        lines += [
            f"## {record['date']}: class `{cpu['class']}`{' (emulated: ' + record['emulated'] + ')' if record['emulated'] else ' (real)'}",
            "",
            f"CPU: {cpu['model']} ({cpu['machine']}). Load before: `{record['uptime_before']}`; after: "
            f"`{record['uptime_after']}`.",
            "",
            "| model | audio s | threads | engine | precision | CPU s / audio s | wall RTF | peak RSS MB | load1 | "
            "class | CPU flags | chosen |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in record["rows"]:
            speed = (
                f"{r['cpu_s_per_audio_s']:.4f} | {r['wall_rtf']:.4f} | {r['peak_rss_mb']}"
                if "cpu_s_per_audio_s" in r
                else f"failed: {r['error']} | | "
            )
            chosen = r.get("choice", "").replace("hushnet: ", "").replace("|", "/")
            lines.append(
                f"| {r['model']} | {r['seconds']:g} | {r['threads']} | {r['engine']} | {r['precision']} | {speed} | "
                f"{r['load1_median']} | {r['cpu_class']}{' (emulated)' if r['emulated'] else ''} | {r['cpu_flags']} | "
                f"{chosen if r['engine'] == 'auto' else ''} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
