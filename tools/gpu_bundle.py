"""Pack what a bare, offline GPU machine needs to train hushnet: the wheels it lacks and a data subset.

    python tools/gpu_bundle.py -o .gpu --max-data-mib 48      # then: bash tools/gpu_train.sh (on the GPU machine)

The lent GPU machines (see docs/training.md) have Python 3.12 with torch, numpy, scipy,
matplotlib, safetensors and tqdm, no network, and take at most 64 MiB with each command. This writes
``OUT/wheels/`` (soundfile, soxr, pystoi, crc32c wheels for Python 3.12, manylinux x86-64; the pesq source) and
``OUT/data/`` in the layout of ``../shared/data`` (speech/, noise/, rir/ with manifest.csv), holding
only the *train* and *validation* splits of ``hushnet.data.splits``: the test split, which the
synthetic test set is built from, never travels. When everything does not fit the budget, whole
files are taken round-robin over speakers (and noise recordings): the first file of each, then the
second, ..., so that as many voices and noises as possible travel. Files are copied as they are (already 16 kHz FLAC).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

from hushnet.data.sources import impulse_responses, noise_clips, speech_utterances
from hushnet.data.splits import split_of

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ["soundfile", "cffi", "pycparser", "soxr", "pystoi", "crc32c"]
# pesq publishes no wheel for Python 3.12: its source travels and is built there (numpy, Cython and gcc are there).
SOURCES = ["pesq==0.0.4"]
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "any",
]
SPEECH_SHARE = 0.6  # of the data budget; noise takes the rest (rooms are a few hundred kB)


def download_wheels(target: Path) -> None:
    """Wheels for the GPU machine's Python 3.12 (no dependencies resolved: all are listed above)."""
    target.mkdir(parents=True, exist_ok=True)
    platforms = [flag for name in PLATFORMS for flag in ("--platform", name)]
    for name in WHEELS:  # one at a time: pip matches each platform tag exactly, and each package has its own
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                *platforms,
                "-d",
                str(target),
                name,
            ],
            check=True,
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary=:all:",
            "--no-build-isolation",
            "-d",
            str(target),
            *SOURCES,
        ],
        check=True,
    )


def _thinned(items: list, group, budget_bytes: int) -> list:
    """Files taken round-robin over groups (speakers, recordings) until the budget is met: the first
    file of every group, then the second, ...; so as many speakers and recordings as possible travel."""
    by_group: dict[str, list] = {}
    for item in sorted(items, key=lambda item: str(item.path)):
        by_group.setdefault(group(item), []).append(item)
    order = sorted(((rank, name) for name, members in by_group.items() for rank in range(len(members))))
    kept, size = [], 0
    for rank, name in order:
        item = by_group[name][rank]
        if size + item.path.stat().st_size <= budget_bytes:
            kept.append(item)
            size += item.path.stat().st_size
    return kept


def _copy_manifest(source_root: Path, target_root: Path, items: list) -> int:
    """Copy the chosen files and their manifest rows; returns bytes copied."""
    wanted = {item.path.resolve() for item in items}
    with open(source_root / "manifest.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if (source_root / row["path"]).resolve() in wanted]
        columns = reader.fieldnames
    target_root.mkdir(parents=True, exist_ok=True)
    with open(target_root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    copied = 0
    for row in rows:
        destination = target_root / row["path"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_root / row["path"], destination)
        copied += destination.stat().st_size
    return copied


def pack_data(data: Path, target: Path, max_mib: float) -> dict[str, int]:
    """The train and validation splits of ``data``, thinned to ``max_mib``; returns bytes per folder."""
    budget = int(max_mib * 2**20)
    speech = [u for u in speech_utterances(data / "speech") if split_of(u) != "test"]
    noise = [n for n in noise_clips(data / "noise") if split_of(n) != "test"]
    rooms = [r for r in impulse_responses(data / "rir") if split_of(r) != "test"] if (data / "rir").exists() else []
    sizes = {
        "speech": _copy_manifest(
            data / "speech", target / "speech", _thinned(speech, lambda u: u.speaker, int(budget * SPEECH_SHARE))
        )
    }
    sizes["noise"] = _copy_manifest(
        data / "noise", target / "noise", _thinned(noise, lambda n: n.recording, budget - sizes["speech"])
    )
    if rooms:
        sizes["rir"] = _copy_manifest(data / "rir", target / "rir", rooms)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", default=str(ROOT / ".gpu"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--max-data-mib", type=float, default=48.0)
    parser.add_argument("--no-wheels", action="store_true")
    args = parser.parse_args()
    output = Path(args.output)
    if (output / "data").exists():
        shutil.rmtree(output / "data")
    sizes = pack_data(Path(args.data), output / "data", args.max_data_mib)
    if not args.no_wheels:
        download_wheels(output / "wheels")
    wheels = sum(p.stat().st_size for p in (output / "wheels").iterdir()) if (output / "wheels").exists() else 0
    print(
        " ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items())
        + f", wheels {wheels / 2**20:.1f} MiB -> {output}"
    )


if __name__ == "__main__":
    main()
