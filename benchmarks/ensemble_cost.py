"""What an ensemble costs against its members: CPU seconds per audio second, onnxruntime, 1 thread.

    hushnet ensemble authors-dfl hushnet-dfl --weights 0.75 0.25 -o benchmarks/work/ensembles/adfl75-hdfl25
    python benchmarks/ensemble_cost.py authors-dfl hushnet-dfl benchmarks/work/ensembles/adfl75-hdfl25

Each model denoises the same real recordings (``real_noisy_dev``, 236 s) through ``Denoiser`` with
the onnx engine and one intra-op thread; the figure is the process CPU time (user + system, so
that other jobs on a shared machine weigh less than on wall time) over the audio seconds, the best
of ``--repeats``. Results: ``benchmarks/results/ensemble_cost.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import soundfile as sf

from common import RESULTS, SHARED, cpu_facts

RECORDINGS = SHARED / "data" / "real_noisy_dev"


def cost(model: str, signals: list[np.ndarray], repeats: int) -> dict:
    """Best CPU and wall seconds per audio second of ``model`` over ``signals`` (16 kHz mono)."""
    from hushnet.denoiser import Denoiser

    denoiser = Denoiser.from_pretrained(model, engine="onnx", threads=1)
    denoiser.denoise(signals[0][:16000], 16000)  # the session's first run allocates
    audio = sum(s.size for s in signals) / 16000
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        for signal in signals:
            denoiser.denoise(signal, 16000)
        best_cpu, best_wall = min(best_cpu, time.process_time() - cpu), min(best_wall, time.perf_counter() - wall)
    return {
        "cpu_s_per_audio_s": round(best_cpu / audio, 4),
        "wall_s_per_audio_s": round(best_wall / audio, 4),
        "plan": denoiser.scheme.kind,
        "audio_s": round(audio, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    signals = [sf.read(p, dtype="float32")[0] for p in sorted(RECORDINGS.glob("*.flac"))]
    rows = {}
    for model in args.models:
        load_before = os.getloadavg()[0]
        rows[model] = {**cost(model, signals, args.repeats), "load": round(max(load_before, os.getloadavg()[0]), 2)}
        print(model, rows[model], flush=True)
    record = {
        "cpu": cpu_facts(),
        "threads": 1,
        "engine": "onnx",
        "models": rows,
    }
    (RESULTS / "ensemble_cost.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Ensemble cost",
        "",
        f"onnxruntime, 1 thread, {os.cpu_count()} cores ({record['cpu']}), `real_noisy_dev` "
        f"({next(iter(rows.values()))['audio_s']} s); CPU and wall seconds per audio second (best of {args.repeats}); "
        "`load`: the 1-minute load average around the run (the machine is shared).",
        "",
        "| model | plan | CPU s / audio s | wall s / audio s | load |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{m}` | {r['plan']} | {r['cpu_s_per_audio_s']:.4f} | {r['wall_s_per_audio_s']:.4f} | {r['load']} |"
        for m, r in rows.items()
    ]
    (RESULTS / "ensemble_cost.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
