"""Inference speed and memory of the 64-channel CAN on this machine.

Real-time factor (processing time / audio duration, lower is faster) on 10 s and 60 s of audio with 1
and 2 threads, for both normalisation modes:
- ``batch``: frozen statistics, streamed in one pass (what our own models use);
- ``per-input``: the authors' model: whole-file up to the memory budget, exact multi-pass streaming
  beyond it (60 s is beyond the default 512 MB budget).
Then the peak resident memory of a separate process that denoises a synthetic 1-hour file
(``Denoiser.denoise_file``, 16 kHz FLAC in and out) with the ``batch`` model.

    python benchmarks/inference.py [--skip-hour]
    python benchmarks/inference.py --long-only --hours 3 --model hushnet-dfl   # a 3-hour file, shipped model

Results: benchmarks/results/inference.json and inference.md (``--long-only``: inference_long_NNh.json/.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from hushnet.model_dir import load_model, save_model
from hushnet.denoiser import Denoiser
from hushnet.models.can import CAN, to_batch_mode

RESULTS = Path(__file__).parent / "results"
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
    return {"audio_s": seconds, "runs_s": [round(t, 3) for t in times], "median_s": round(statistics.median(times), 3),
            "rtf": round(statistics.median(times) / seconds, 4)}


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
        output = subprocess.run([sys.executable, "-c", HOUR_SCRIPT, str(model_dir), str(path), str(threads)],
                                capture_output=True, text=True, check=True)
        elapsed, peak_mb, seconds = map(float, output.stdout.split())
    return {"audio_s": seconds, "threads": threads, "wall_s": elapsed, "rtf": round(elapsed / seconds, 4), "peak_rss_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-hour", action="store_true", help="skip the 1-hour memory run (about 5 minutes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-only", action="store_true", help="only the long-file run, with --model and --hours")
    parser.add_argument("--hours", type=float, default=3.0, help="length of the --long-only file (default 3)")
    parser.add_argument("--model", default="hushnet-dfl", help="model of the --long-only run (default hushnet-dfl)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.long_only:
        long = {"model": args.model, "hours": args.hours, "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                "load_before": round(os.getloadavg()[0], 2), **hour_memory(args.model, threads=2, hours=args.hours)}
        stem = RESULTS / f"inference_long_{args.hours:g}h".replace(".", "_")
        Path(f"{stem}.json").write_text(json.dumps(long, indent=2) + "\n")
        Path(f"{stem}.md").write_text(
            f"{args.hours:g}-hour file, `{args.model}`, 2 threads, file to file (16-bit FLAC in and out): {long['wall_s']:.0f} s "
            f"(RTF {long['rtf']:.3f}), peak RSS {long['peak_rss_mb']:.0f} MB; CPU load before the run {long['load_before']}.\n")
        print(long)
        return

    authors = load_model("authors-dfl")
    calibration, _ = sf.read(DEV_FILE, dtype="float32")
    frozen = frozen_copy(authors, calibration)
    results: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__},
        "rtf": [],
    }
    for mode, model in (("batch", frozen), ("per-input", authors)):
        denoiser = Denoiser(model)
        for seconds in (10.0, 60.0):
            x = signal(seconds)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                row = {"mode": mode, "threads": threads, "passes": denoiser.passes(x.size), **time_rtf(denoiser, x, args.repeats)}
                print(row, flush=True)
                results["rtf"].append(row)
    if not args.skip_hour:
        with tempfile.TemporaryDirectory() as folder:
            model_dir = save_model(frozen, Path(folder) / "frozen", "# benchmark model: authors' weights, frozen statistics\n")
            results["hour"] = hour_memory(model_dir, threads=2)
            print(results["hour"], flush=True)
    (RESULTS / "inference.json").write_text(json.dumps(results, indent=2) + "\n")

    lines = ["# Inference benchmark", "", f"Machine: {results['machine']}", "",
             "| mode | audio | threads | passes | median time | RTF |", "|---|---|---|---|---|---|"]
    for row in results["rtf"]:
        lines.append(f"| {row['mode']} | {row['audio_s']:.0f} s | {row['threads']} | {row['passes']} | {row['median_s']:.2f} s | {row['rtf']:.3f} |")
    if "hour" in results:
        hour = results["hour"]
        lines += ["", f"1-hour file, `batch` model, {hour['threads']} threads, file to file: {hour['wall_s']:.0f} s "
                  f"(RTF {hour['rtf']:.3f}), peak RSS {hour['peak_rss_mb']:.0f} MB."]
    (RESULTS / "inference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
