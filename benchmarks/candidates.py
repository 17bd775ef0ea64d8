"""Choose models on all development sets at once: the synthetic test set, ``valentini_dev`` and DNSMOS
on ``real_noisy_dev`` (real noisy recordings, no clean references).

    python benchmarks/candidates.py --candidate authors-dfl --candidate pi=runs/hushnet-pi/best --dry 0 0.05 0.1 0.2
    python benchmarks/candidates.py --candidate "authors-dfl@-23=authors-dfl,level_db=-23" --sets valentini_dev
    python benchmarks/candidates.py --peers noisy rnnoise deepfilternet3 --sets real_noisy_dev

A candidate is ``NAME=MODEL[,option=value...]`` (or just a shipped name), the options being
``Denoiser`` settings (``level_db``, ``segment_seconds``, ``level_scope``). The network runs once per
candidate and set; each ``--dry`` value is then mixed from that output (``enhanced + dry * (noisy -
enhanced)`` is exactly what the Denoiser's dry/wet does), so a dry sweep costs only scoring.
Rows are kept across runs (``--fresh`` drops them): ``benchmarks/results/candidates.{md,json}``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import PEERS, RATE, RESULTS, SHARED, TEST_SETS, WORK, _cell  # noqa: E402

from hushnet.data.testset import build_test_set  # noqa: E402
from hushnet.evaluate import Pair, match_folders, score_pairs, summarize  # noqa: E402

SETS = {**TEST_SETS, "real_noisy_dev": SHARED / "data" / "real_noisy_dev"}
REFERENCED = ("pesq_wb", "stoi", "estoi", "si_sdr_db", "csig", "cbak", "covl")
COLUMNS = {"synthetic": ("pesq_wb", "stoi", "si_sdr_db", "csig", "cbak", "covl"), "valentini_dev": ("pesq_wb", "stoi", "si_sdr_db", "csig", "cbak", "covl"),
           "real_noisy_dev": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")}


def parse_candidate(spec: str) -> tuple[str, str, dict]:
    """``NAME=MODEL,key=value,...`` -> (name, model, Denoiser options)."""
    name, _, rest = spec.partition("=")
    if not rest:
        return name, name, {}
    model, *options = rest.split(",")
    values = {}
    for option in options:
        key, _, value = option.partition("=")
        values[key] = value if key == "level_scope" else (None if value == "none" else float(value))
    return name, model, values


def candidate_enhancer(model: str, options: dict):
    """The Denoiser for a candidate, with its dry/wet off (the sweep mixes the input back itself)."""
    from hushnet.denoiser import Denoiser

    accepted = set(inspect.signature(Denoiser.__init__).parameters)
    # Settings the Denoiser does not take as arguments are model-config overrides.
    config_names = {"level_db": "input_rms_db", "segment_seconds": "segment_seconds"}
    overrides = {config_names[k]: v for k, v in options.items() if k not in accepted and k in config_names}
    unknown = set(options) - accepted - set(config_names)
    if unknown:
        raise SystemExit(f"Denoiser does not take {sorted(unknown)}")
    extra = {"dry": 0.0} if "dry" in accepted else {}
    denoiser = Denoiser.from_pretrained(model, **{k: v for k, v in options.items() if k in accepted}, **extra)
    for key, value in overrides.items():
        setattr(denoiser.model.config, key, value)
    return lambda x: denoiser.denoise(x, RATE)


def noisy_files(root: Path) -> list[Pair]:
    if (root / "clean").is_dir():
        return match_folders(root / "clean", root / "noisy").pairs
    return [Pair(p.stem, None, noisy=p) for p in sorted(root.glob("*.flac"))]


def enhance_set(enhance, pairs: list[Pair], folder: Path) -> tuple[float, float]:
    """Enhance every noisy file of a set into ``folder`` (float WAV); (seconds spent, audio seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    spent = audio = 0.0
    for pair in pairs:
        noisy, rate = sf.read(pair.noisy, dtype="float32")
        started = time.perf_counter()
        enhanced = np.asarray(enhance(noisy), np.float32)[: noisy.size]
        enhanced = np.pad(enhanced, (0, noisy.size - enhanced.size))  # resampling peers can come back a few samples short
        spent += time.perf_counter() - started
        audio += noisy.size / rate
        sf.write(folder / f"{pair.name}.wav", enhanced, rate, subtype="FLOAT")
    return spent, audio


def score_dry(pairs: list[Pair], folder: Path, dry: float, jobs: int) -> dict:
    """Mix ``dry`` of the input back into the outputs in ``folder`` and score the set."""
    mixed_folder = folder.parent / f"{folder.name}.dry{dry:g}"
    mixed_folder.mkdir(parents=True, exist_ok=True)
    scored = []
    for pair in pairs:
        noisy, rate = sf.read(pair.noisy, dtype="float32")
        enhanced, _ = sf.read(folder / f"{pair.name}.wav", dtype="float32")
        path = mixed_folder / f"{pair.name}.wav"
        sf.write(path, enhanced + dry * (noisy - enhanced), rate, subtype="FLOAT")
        scored.append(Pair(pair.name, pair.clean, enhanced=path))
    row: dict = {}
    if pairs[0].clean is not None:
        summary = summarize(score_pairs(scored, jobs=jobs))
        row.update({m: round(summary[m]["mean"], 4) for m in REFERENCED if m in summary})
    else:
        from speechmos import dnsmos

        results = [dnsmos.run(np.clip(sf.read(p.enhanced, dtype="float32")[0], -1, 1), RATE) for p in scored]
        row.update({f"dnsmos_{k}": round(float(np.mean([r[f"{k}_mos"] for r in results])), 3) for k in ("sig", "bak", "ovrl")})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", action="append", default=[], help="NAME=MODEL[,option=value...] (repeatable)")
    parser.add_argument("--peers", nargs="*", default=[], choices=list(PEERS), help="peer systems to add (dry 0 only)")
    parser.add_argument("--dry", nargs="*", type=float, default=[0.0], help="dry/wet values to score for each candidate")
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(RESULTS / "candidates"))
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if "synthetic" in args.sets and not (SETS["synthetic"] / "manifest.csv").is_file():
        build_test_set(SHARED / "data", SETS["synthetic"])
    stem = Path(args.output)
    record = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").is_file() and not args.fresh else {"sets": {}, "systems": {}}
    systems = [(name, lambda m=model, o=options: candidate_enhancer(m, o), args.dry, f"{model} {options}")
               for name, model, options in map(parse_candidate, args.candidate)]
    systems += [(name, PEERS[name], [0.0], "peer") for name in args.peers]
    for name, make, dry_values, what in systems:
        enhance = make()
        for set_name in args.sets:
            pairs = noisy_files(SETS[set_name])
            folder = WORK / "candidates" / set_name / name.replace(":", "_").replace("/", "_")
            spent, audio = enhance_set(enhance, pairs, folder)
            for dry in dry_values:
                label = name if dry == 0 else f"{name} dry {dry:g}"
                row = {**score_dry(pairs, folder, dry, args.jobs), "rtf": round(spent / audio, 4), "load": round(os.getloadavg()[0], 2)}
                record["sets"].setdefault(set_name, {})[label] = row
                record["systems"][label] = what
                print(f"{set_name:14s} {label:34s} " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(record))
    print(f"wrote {stem.with_suffix('.md')}")


def markdown(record: dict) -> str:
    """One table, a row per system, the three sets side by side."""
    sets = [s for s in SETS if s in record["sets"]]
    header = [f"{s}: {c}" for s in sets for c in COLUMNS[s]]
    lines = ["# Candidates on the development sets", "",
             "Synthetic test set (96 files, held-out speakers and noise), `valentini_dev` (7 real noisy-VCTK pairs) and DNSMOS P.835 "
             "on `real_noisy_dev` (16 real recordings, no references; differences below about 0.1 are noise). "
             "`dry A` rows mix a fraction A of the input back into that system's output.", "",
             "| system | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    names = list(dict.fromkeys(n for s in sets for n in record["sets"][s]))
    for name in names:
        cells = [_cell(record["sets"][s].get(name, {}).get(c)) for s in sets for c in COLUMNS[s]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    bases = dict.fromkeys(n.split(" dry ")[0] for n in names)
    lines += ["", "Systems:", ""] + [f"- `{n}`: {record['systems'].get(n, '')}" for n in bases]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
