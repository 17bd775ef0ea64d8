"""The quality rule for every engine and precision: does a faster engine keep the scores?

Both shipped models through ``Denoiser`` (each model's own settings) with every engine and
precision, on the synthetic test set and ``valentini_test_dev`` (PESQ-WB, STOI against the clean
files) and ``real_noisy_dev`` (DNSMOS P.835 OVRL, no references). The rule, against onnxruntime
float32 of the same model: PESQ-WB within 0.02, STOI within 0.002, DNSMOS OVRL within 0.02.

    python benchmarks/engines.py [--models hushnet-dfl authors-dfl] [--threads 1]

Results: ``benchmarks/results/engines.{md,json}``. Outputs are scored as float32 (no 16-bit step).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from common import RESULTS, SHARED, TEST_SETS
from hushnet.data.testset import build_test_set
from hushnet.denoiser import Denoiser
from hushnet.evaluate import match_folders
from hushnet.metrics import dnsmos, pesq_score

SETS = {
    "synthetic": TEST_SETS["synthetic"],
    "valentini_test_dev": SHARED / "data" / "valentini_test_dev",
    "real_noisy_dev": SHARED / "data" / "real_noisy_dev",
}
CONFIGURATIONS = (
    ("onnx", "float32"),
    ("openvino", "float32"),
    ("openvino", "bf16"),
    ("torch", "float32"),
    ("torch", "bf16"),
)
REFERENCE = "onnx float32"
# The rule: largest difference from the reference allowed per metric, either way.
TOLERANCE = {"pesq_wb": 0.02, "stoi": 0.002, "dnsmos_ovrl": 0.02}
METRICS = {
    "synthetic": ("pesq_wb", "stoi"),
    "valentini_test_dev": ("pesq_wb", "stoi"),
    "real_noisy_dev": ("dnsmos_ovrl",),
}


def files(root: Path) -> list[tuple[str, Path, Path | None]]:
    """(name, noisy, clean or None) of a set."""
    if (root / "clean").is_dir():
        return [(p.name, p.noisy, p.clean) for p in match_folders(root / "clean", root / "noisy").pairs]
    return [(p.stem, p, None) for p in sorted(root.glob("*.flac"))]


def score_set(denoiser: Denoiser, set_name: str) -> dict:
    """Mean scores of one set and the number of files."""
    from pystoi import stoi

    values: dict[str, list[float]] = {m: [] for m in METRICS[set_name]}
    for _, noisy_path, clean_path in files(SETS[set_name]):
        noisy, rate = sf.read(noisy_path, dtype="float32")
        enhanced = denoiser.denoise(noisy, rate)
        if clean_path is None:
            values["dnsmos_ovrl"].append(dnsmos(enhanced, rate)["dnsmos_ovrl"])
            continue
        clean, _ = sf.read(clean_path, dtype="float32")
        values["pesq_wb"].append(pesq_score(clean, enhanced, rate))
        values["stoi"].append(float(stoi(clean, enhanced, rate, extended=False)))
    row = {m: round(float(np.nanmean(v)), 4) for m, v in values.items()}
    return {**row, "files": len(next(iter(values.values())))}


def verdicts(record: dict) -> None:
    """Add each system's differences to the reference and whether it meets the rule (in place)."""
    for model, systems in record["models"].items():
        reference = systems.get(REFERENCE)
        for name, sets in systems.items():
            if reference is None:
                continue
            worst = {}
            for set_name, row in sets.items():
                if set_name not in reference:
                    continue
                for metric in METRICS[set_name]:
                    row[f"{metric}_delta"] = round(row[metric] - reference[set_name][metric], 4)
                    worst[f"{set_name} {metric}"] = TOLERANCE[metric] - abs(row[f"{metric}_delta"])
            sets_done = all(s in sets for s in SETS)
            record.setdefault("verdict", {}).setdefault(model, {})[name] = (
                "pending"
                if not sets_done
                else "meets"
                if min(worst.values()) >= 0
                else "misses: " + ", ".join(f"{k} by {-v:.4f}" for k, v in worst.items() if v < 0)
            )


def markdown(record: dict) -> str:
    lines = [
        "# Engines and precisions: the quality rule",
        "",
        f"Every engine and precision through `Denoiser` ({record['threads']} thread(s)), both shipped models, against onnxruntime "
        "float32 of the same model: PESQ-WB within 0.02 and STOI within 0.002 on the synthetic test set (96 files) and "
        "`valentini_test_dev` (25 files), DNSMOS OVRL within 0.02 on `real_noisy_dev` (16 real recordings). Differences "
        "(system minus reference) in brackets. `authors-dfl` through OpenVINO runs its 4-s segments in OpenVINO and any "
        "file shorter than a segment in onnxruntime float32 (exact; most of `valentini_test_dev`). Timings: `runtime.md`.",
        "",
        "| model | engine | precision | synthetic PESQ-WB | synthetic STOI | valentini_test_dev PESQ-WB | valentini_test_dev STOI | "
        "real_noisy_dev DNSMOS OVRL | rule |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, systems in record["models"].items():
        for name, sets in systems.items():
            engine, precision = name.split()
            cells = []
            for set_name in SETS:
                for metric in METRICS[set_name]:
                    row = sets.get(set_name)
                    if row is None:
                        cells.append("-")
                        continue
                    delta = row.get(f"{metric}_delta")
                    cells.append(
                        f"{row[metric]:.4f}" + (f" ({delta:+.4f})" if delta is not None and name != REFERENCE else "")
                    )
            lines.append(
                f"| {model} | {engine} | {precision} | " + " | ".join(cells) + " | "
                f"{record.get('verdict', {}).get(model, {}).get(name, '-') if name != REFERENCE else 'reference'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["hushnet-dfl", "authors-dfl"])
    parser.add_argument(
        "--configurations",
        nargs="+",
        default=[f"{e} {p}" for e, p in CONFIGURATIONS],
        help='"ENGINE PRECISION" pairs (default: all)',
    )
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(RESULTS / "engines"))
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the table from the saved results")
    args = parser.parse_args()
    if args.markdown_only:
        record = json.loads(Path(args.output).with_suffix(".json").read_text())
        verdicts(record)
        Path(args.output).with_suffix(".md").write_text(markdown(record))
        return
    if "synthetic" in args.sets and not (SETS["synthetic"] / "manifest.csv").is_file():
        build_test_set(SHARED / "data", SETS["synthetic"])
    stem = Path(args.output)
    json_path = stem.with_suffix(".json")
    record = json.loads(json_path.read_text()) if json_path.is_file() else {"models": {}}
    record.update({"threads": args.threads, "load_before": round(os.getloadavg()[0], 2)})
    for model in args.models:
        for name in args.configurations:
            engine, precision = name.split()
            denoiser = Denoiser.from_pretrained(model, engine=engine, precision=precision, threads=args.threads)
            assert (denoiser.engine_name, denoiser.precision) == (engine, precision), denoiser.engine.choice
            for set_name in args.sets:
                row = score_set(denoiser, set_name)
                record["models"].setdefault(model, {}).setdefault(name, {})[set_name] = row
                print(f"{model:12s} {name:17s} {set_name:19s} {row}", flush=True)
                verdicts(record)
                json_path.write_text(json.dumps(record, indent=2) + "\n")
    record["load_after"] = round(os.getloadavg()[0], 2)
    verdicts(record)
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
