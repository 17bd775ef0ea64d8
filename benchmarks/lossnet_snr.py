"""Does a loss network's feature space track noise? Per-layer L1 feature distances between clean speech
and the same speech with noise at 20, 10 and 0 dB SNR, for the authors' loss network and ours.

    python benchmarks/lossnet_snr.py [--ours runs/lossnet/lossnet]

Clean speech: the 7 ``valentini_dev`` clean files; noise: held-out (test split) recordings of
``../shared/data/noise``, 3 per file. Distances are computed as the feature loss computes them (each
input normalised with its own statistics), averaged over files and noises. Written to
``benchmarks/results/lossnet.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from common import RESULTS, SHARED
from hushnet.data.mixing import random_crop, scale_noise_to_snr
from hushnet.data.sources import AudioCache, noise_clips
from hushnet.data.splits import select
from hushnet.evaluate import match_folders
from hushnet.model_dir import load_model

SNRS = (20.0, 10.0, 0.0)
LAYERS = 14


def distances(network, clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        a = network(torch.from_numpy(clean)[None], LAYERS)
        b = network(torch.from_numpy(noisy)[None], LAYERS)
    return np.array([float((x - y).abs().mean()) for x, y in zip(a, b)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", default="hushnet-lossnet", help="our loss network (model directory or shipped name)")
    parser.add_argument("--output", default=str(RESULTS / "lossnet"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    networks = {"authors": load_model("authors-lossnet", kind="lossnet"), "ours": load_model(args.ours, kind="lossnet")}
    cache = AudioCache()
    cleans = [cache(p.clean) for p in match_folders(SHARED / "data" / "valentini_dev" / "clean").pairs]
    noises = sorted(select(noise_clips(SHARED / "data" / "noise"), "test"), key=lambda n: n.path.as_posix())
    rng = np.random.default_rng(0)
    table: dict[str, dict[float, list[np.ndarray]]] = {name: {snr: [] for snr in SNRS} for name in networks}
    for clean in cleans:
        for clip in [noises[int(i)] for i in rng.choice(len(noises), 3, replace=False)]:
            noise = random_crop(cache(clip.path), clean.size, rng)
            for snr in SNRS:
                noisy = (clean + scale_noise_to_snr(clean, noise, snr)).astype(np.float32)
                for name, network in networks.items():
                    table[name][snr].append(distances(network, clean, noisy))
    means = {name: {snr: np.mean(rows, axis=0) for snr, rows in by_snr.items()} for name, by_snr in table.items()}
    monotonic = {name: [bool(m[20.0][k] < m[10.0][k] < m[0.0][k]) for k in range(LAYERS)] for name, m in means.items()}
    lines = [
        "# Loss-network feature distances against SNR",
        "",
        f"Mean L1 distance between the features of clean speech and of the same speech with held-out noise, "
        f"{len(cleans)} clean files x 3 noises. 'grows' = distance at 20 dB < 10 dB < 0 dB. "
        "Layers 1-6 are the ones the deep feature loss uses.",
        "",
    ]
    for name, m in means.items():
        lines += [
            f"## {name} ({args.ours if name == 'ours' else 'authors-lossnet'})",
            "",
            "| layer | 20 dB | 10 dB | 0 dB | 0 dB / 20 dB | grows |",
            "|---|---|---|---|---|---|",
        ]
        for k in range(LAYERS):
            lines.append(
                f"| {k + 1} | {m[20.0][k]:.4f} | {m[10.0][k]:.4f} | {m[0.0][k]:.4f} | {m[0.0][k] / m[20.0][k]:.2f} | {'yes' if monotonic[name][k] else 'NO'} |"
            )
        lines.append("")
    output = Path(args.output)
    output.with_suffix(".md").write_text("\n".join(lines))
    output.with_suffix(".json").write_text(
        json.dumps(
            {name: {str(snr): v.round(5).tolist() for snr, v in m.items()} for name, m in means.items()}
            | {"grows": monotonic},
            indent=1,
        )
        + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
