"""Does quality depend on the recording level? The same noisy files at several input levels.

The first ``--files`` noisy files of the synthetic test set are scaled by each gain (dB), denoised,
scaled back, and scored against the clean files. A model that normalises its input level
(``input_rms_db`` in its config: our models) gives the same result at every level; the authors'
model, whose batch norm sees each file's own statistics but whose first layer does not, need not.
Gains that would clip a file are capped at its full scale (and reported).

    python benchmarks/levels.py --models hushnet-dfl authors-dfl --gains -40 -20 0 12

Results: benchmarks/results/levels.md and .json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from common import RATE, RESULTS, WORK
from hushnet.denoiser import Denoiser
from hushnet.evaluate import Pair, match_folders, score_pairs, summarize

SYNTHETIC = WORK / "synthetic"
METRICS = ("pesq_wb", "stoi", "si_sdr_db")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["hushnet-dfl", "authors-dfl"])
    parser.add_argument("--gains", nargs="+", type=float, default=[-40.0, -20.0, 0.0, 12.0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", default=str(RESULTS / "levels"))
    args = parser.parse_args()
    if not (SYNTHETIC / "manifest.csv").is_file():
        raise SystemExit(f"no synthetic test set in {SYNTHETIC}: run `hushnet make-testset -o {SYNTHETIC}` first")
    pairs = match_folders(SYNTHETIC / "clean", SYNTHETIC / "noisy").pairs[: args.files]
    noisy = [sf.read(p.noisy, dtype="float32")[0] for p in pairs]
    record: dict = {"files": len(pairs), "gains_db": args.gains, "models": {}}
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            denoiser = Denoiser.from_pretrained(model)
            rows = {}
            for gain_db in args.gains:
                scored, capped = [], 0
                for pair, x in zip(pairs, noisy):
                    gain = 10 ** (gain_db / 20)
                    peak = float(np.abs(x).max()) * gain
                    if peak > 1.0:  # keep the input a valid recording: no clipping
                        gain /= peak
                        capped += 1
                    out = denoiser.denoise(x * gain, RATE) / gain
                    path = Path(folder) / f"{model}_{gain_db:g}_{pair.name}.wav"
                    sf.write(path, out.astype(np.float32), RATE, subtype="FLOAT")
                    scored.append(Pair(pair.name, pair.clean, enhanced=path))
                summary = summarize(score_pairs(scored, jobs=args.jobs))
                rows[f"{gain_db:g}"] = {**{m: round(summary[m]["mean"], 4) for m in METRICS}, "capped_files": capped}
                print(model, gain_db, rows[f"{gain_db:g}"], flush=True)
            record["models"][model] = rows
    output = Path(args.output)
    Path(f"{output}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# Quality against input level ({record['files']} synthetic test files, each scaled, denoised, scaled back)",
        "",
        "| model | gain (dB) | PESQ-WB | STOI | SI-SDR (dB) | files capped at full scale |",
        "|---|---|---|---|---|---|",
    ]
    for model, rows in record["models"].items():
        for gain, row in rows.items():
            lines.append(
                f"| {model} | {gain} | {row['pesq_wb']:.3f} | {row['stoi']:.3f} | {row['si_sdr_db']:.2f} | {row['capped_files']} |"
            )
    Path(f"{output}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
