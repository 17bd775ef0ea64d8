"""The paper's ablation at our scale: same data, same steps, same architecture and starting point;
only the loss changes. Each arm fine-tunes the authors' released CAN (normalisation frozen to
fixed statistics, input level normalised: the shipped recipe) for ``--steps`` steps, then its last
checkpoint is scored with ``hushnet evaluate`` on the synthetic test set.

    python benchmarks/ablation.py --steps 60            # runs/ablation/<arm>/, results/ablation.{md,json}

Arms: waveform L1; deep feature loss through the authors' loss network; through ours
(``hushnet-lossnet``); and the starting point itself (no training). Runs resume if interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import RESULTS, ROOT, WORK
from hushnet.denoiser import Denoiser
from hushnet.evaluate import match_folders, score_pairs, summarize, write_reports
from hushnet.model_dir import resolve_model_dir
from hushnet.training.state import latest_checkpoint

SYNTHETIC = WORK / "synthetic"
ARMS = {
    "waveform L1": ["--feature-weight", "0", "--l1-weight", "1"],
    "feature loss, authors' loss network": ["--lossnet", "authors-lossnet"],
    "feature loss, our loss network": ["--lossnet", "hushnet-lossnet"],
}
# The shipped model's recipe (runs/hushnet-dfl), shortened: only the loss differs between arms.
COMMON = [
    "--init",
    "authors-dfl",
    "--norm",
    "batch",
    "--freeze-norm-statistics",
    "--batch-size",
    "4",
    "--segment-seconds",
    "3",
    "--learning-rate",
    "1e-4",
    "--warmup-steps",
    "10",
    "--calibration-steps",
    "10",
    "--checkpoint-every",
    "10",
    "-q",
]
METRICS = ["pesq_wb", "stoi", "estoi", "si_sdr_db", "csig", "cbak", "covl"]


def score_model(model: str, report: Path) -> None:
    """Denoise the synthetic set with ``model`` (float WAV, as ``hushnet evaluate`` does) and write its reports."""
    denoiser = Denoiser.from_pretrained(model)
    enhanced = report / "enhanced"
    enhanced.mkdir(parents=True, exist_ok=True)
    for noisy in sorted((SYNTHETIC / "noisy").iterdir()):
        denoiser.denoise_file(noisy, enhanced / f"{noisy.stem}.wav", subtype="FLOAT")
    rows = score_pairs(match_folders(SYNTHETIC / "clean", SYNTHETIC / "noisy", enhanced).pairs, jobs=2)
    write_reports(rows, summarize(rows), report, f"{model} on {SYNTHETIC / 'clean'}")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def paired_difference(scores: Path, arm: str, baseline: str, metric: str) -> tuple[float, float]:
    """Mean per-file difference arm - baseline and its 95 % confidence half-width (Student t)."""
    from scipy.stats import t

    def per_file(name: str) -> dict[str, float]:
        with open(scores / slug(name) / "per_file.csv", newline="") as handle:
            return {row["name"]: float(row[metric]) for row in csv.DictReader(handle) if row.get(metric)}

    a, b = per_file(arm), per_file(baseline)
    differences = np.array([a[name] - b[name] for name in sorted(a.keys() & b.keys())])
    half_width = t.ppf(0.975, differences.size - 1) * differences.std(ddof=1) / np.sqrt(differences.size)
    return round(float(differences.mean()), 4), round(float(half_width), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "ablation"))
    parser.add_argument("--arms", nargs="*", default=list(ARMS))
    parser.add_argument(
        "--score-only", action="store_true", help="score the arms already trained (for arms run in parallel)"
    )
    parser.add_argument(
        "--shipped", default="hushnet-dfl", help="also score this model (the longer run the arms stand in for)"
    )
    args = parser.parse_args()
    if not (SYNTHETIC / "manifest.csv").is_file():
        subprocess.run([sys.executable, "-m", "hushnet.cli", "make-testset", "-o", str(SYNTHETIC)], check=True)
    results = {}
    models = {}
    for arm in args.arms if not args.score_only else []:
        run = Path(args.runs) / slug(arm)
        command = [
            sys.executable,
            "-m",
            "hushnet.cli",
            "train",
            "-o",
            str(run),
            *COMMON,
            *ARMS[arm],
            "--max-steps",
            str(args.steps),
            "--validate-every",
            str(args.steps),
            "--threads",
            str(args.threads),
        ]
        if latest_checkpoint(run) is not None:
            command.append("--resume")
        if latest_checkpoint(run) is None or int(latest_checkpoint(run).name.split("_")[1]) < args.steps:
            subprocess.run(command, check=True)
        models[arm] = latest_checkpoint(run)
        models.setdefault("starting point (no training)", run / "initial")
    if args.score_only:
        for arm in ARMS:
            run = Path(args.runs) / slug(arm)
            if latest_checkpoint(run) is not None:
                models[arm] = latest_checkpoint(run)
                models.setdefault("starting point (no training)", run / "initial")
    models["authors' released model (per-input statistics)"] = "authors-dfl"
    if args.shipped:
        models[f"shipped model ({args.shipped})"] = args.shipped
    for arm, model in models.items():
        report = Path(args.runs) / "scores" / slug(arm)
        done = report / "summary.json"
        weights = resolve_model_dir(str(model)) / "model.safetensors"
        if not (done.is_file() and done.stat().st_mtime > weights.stat().st_mtime):
            score_model(str(model), report)
        summary = json.loads(done.read_text())
        results[arm] = {m: round(summary["metrics"][m]["mean"], 4) for m in METRICS if m in summary["metrics"]}
    order = [
        "starting point (no training)",
        *ARMS,
        f"shipped model ({args.shipped})",
        "authors' released model (per-input statistics)",
    ]
    results = {arm: results[arm] for arm in order if arm in results}
    baseline = "waveform L1"
    paired = {
        arm: {m: paired_difference(Path(args.runs) / "scores", arm, baseline, m) for m in ("pesq_wb", "stoi")}
        for arm in results
        if arm != baseline and baseline in results
    }
    output = RESULTS / "ablation"
    output.with_suffix(".json").write_text(
        json.dumps({"steps": args.steps, "arms": results, "paired_vs_waveform_l1": paired}, indent=2) + "\n"
    )
    lines = [
        f"# Ablation: loss function ({args.steps} fine-tuning steps each, synthetic test set, 96 files)",
        "",
        "| arm | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    lines += [
        f"| {arm} | " + " | ".join(f"{row.get(m, float('nan')):.3f}" for m in METRICS) + " |"
        for arm, row in results.items()
    ]
    peers = RESULTS / "peers.json"
    if peers.is_file():  # the other systems on the same files, from benchmarks/peers.py
        rows = json.loads(peers.read_text())["sets"].get("synthetic", {}).get("systems", {})
        lines += [
            f"| {name} (peer benchmark) | " + " | ".join(f"{row.get(m, float('nan')):.3f}" for m in METRICS) + " |"
            for name, row in rows.items()
            if name not in ("authors-dfl", args.shipped)
        ]
    if paired:
        lines += [
            "",
            f"Paired difference against {baseline} (same 96 files; mean and 95 % confidence interval):",
            "",
            "| arm | PESQ-WB | STOI |",
            "|---|---|---|",
        ]
        lines += [
            f"| {arm} | {d['pesq_wb'][0]:+.3f} ± {d['pesq_wb'][1]:.3f} | {d['stoi'][0]:+.3f} ± {d['stoi'][1]:.3f} |"
            for arm, d in paired.items()
        ]
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
