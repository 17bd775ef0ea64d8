"""Long-file quality: does a model lose anything when a recording is long?

The first ``--files`` noisy files of the synthetic test set are joined into one long recording,
denoised as one file through ``Denoiser.denoise_file`` (the path a 3-hour file takes: streamed, in
bounded memory), cut back at the original boundaries and scored against the clean files; the same
files denoised one by one are the reference. A ``batch``-normalisation model is a fixed filter, so
only the samples within its receptive field (about 0.5 s) of a boundary can differ; a ``per-input``
model (the authors') normalises with statistics of the whole recording, so joining changes them.

    python benchmarks/long_file.py --models hushnet-dfl authors-dfl --files 24
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from common import RATE, RESULTS, WORK
from hushnet.denoiser import Denoiser
from hushnet.evaluate import Pair, match_folders, score_pairs, summarize

SYNTHETIC = WORK / "synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["hushnet-dfl", "authors-dfl"])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--output", default=str(RESULTS / "long_file"))
    args = parser.parse_args()
    pairs = match_folders(SYNTHETIC / "clean", SYNTHETIC / "noisy").pairs[: args.files]
    noisy = [sf.read(p.noisy, dtype="float32")[0] for p in pairs]
    bounds = np.cumsum([0] + [x.size for x in noisy])
    record = {"files": len(pairs), "seconds": round(bounds[-1] / RATE, 1), "models": {}}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        joined = folder / "joined.flac"
        sf.write(joined, np.concatenate(noisy), RATE, subtype="PCM_24")
        for model in args.models:
            denoiser = Denoiser.from_pretrained(model)
            started = time.perf_counter()
            denoiser.denoise_file(joined, folder / "joined_out.wav", subtype="FLOAT")
            long_seconds = time.perf_counter() - started
            long_out = sf.read(folder / "joined_out.wav", dtype="float32")[0]
            rows = {}
            for mode in ("one by one", "joined"):
                scored = []
                for k, pair in enumerate(pairs):
                    out = (
                        denoiser.denoise(noisy[k], RATE)
                        if mode == "one by one"
                        else long_out[bounds[k] : bounds[k + 1]]
                    )
                    path = folder / f"{mode.replace(' ', '_')}_{pair.name}.wav"
                    sf.write(path, out, RATE, subtype="FLOAT")
                    scored.append(Pair(pair.name, pair.clean, enhanced=path))
                summary = summarize(score_pairs(scored, jobs=2))
                rows[mode] = {m: round(summary[m]["mean"], 4) for m in ("pesq_wb", "stoi", "si_sdr_db")}
            rows["joined, scheme"] = denoiser.scheme.kind
            rows["joined, seconds"] = round(long_seconds, 1)
            record["models"][model] = rows
            print(model, rows, flush=True)
    output = Path(args.output)
    output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# Long-file quality ({record['files']} synthetic test files joined into one {record['seconds']} s recording)",
        "",
        "| model | PESQ-WB one by one | PESQ-WB joined | STOI one by one | STOI joined | SI-SDR one by one | SI-SDR joined | scheme |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, rows in record["models"].items():
        a, b = rows["one by one"], rows["joined"]
        lines.append(
            f"| {model} | {a['pesq_wb']:.3f} | {b['pesq_wb']:.3f} | {a['stoi']:.3f} | {b['stoi']:.3f} | {a['si_sdr_db']:.2f} | {b['si_sdr_db']:.2f} | {rows['joined, scheme']} |"
        )
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
