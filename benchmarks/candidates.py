"""Choose models on all development sets at once: ``valentini_test_dev`` (real Valentini test pairs,
speakers no released model trained on), the synthetic test set, ``valentini_dev`` (Valentini
*training* speakers: a training-fit check only) and DNSMOS on ``real_noisy_dev`` (real noisy
recordings, no clean references).

    python benchmarks/candidates.py --candidate authors-dfl --candidate pi=runs/hushnet-pi/best --dry 0 0.05 0.1 0.2
    python benchmarks/candidates.py --candidate "authors-dfl@-23=authors-dfl,level_db=-23" --sets valentini_dev
    python benchmarks/candidates.py --peers noisy rnnoise deepfilternet3 --sets real_noisy_dev

A candidate is ``NAME=MODEL[,option=value...]`` (or just a shipped name), the options being
``Denoiser`` settings (``level_db``, ``segment_seconds``, ``level_scope``). ``MODEL`` may be
``wise:START:END:FRACTION``: the weights ``FRACTION`` of the way from ``START`` to ``END`` (WiSE-FT
weight interpolation of two CANs of one architecture; written as a model directory under
``benchmarks/work/interpolated``, with ``END``'s config). The network runs once per
candidate and set; each ``--dry`` value is then mixed from that output (``enhanced + dry * (noisy -
enhanced)`` is exactly what the Denoiser's dry/wet does), so a dry sweep costs only scoring.
Rows are kept across runs (``--fresh`` drops them): ``benchmarks/results/candidates.{md,json}``.

Per-file scores are kept too, and every row gets a paired bootstrap 95 % interval (2000 resamples,
seed 0, over files) on its difference to ``--reference`` (PESQ-WB and STOI on the referenced sets)
and to ``--dnsmos-reference`` (DNSMOS SIG/BAK/OVRL on ``real_noisy_dev``); a difference whose
interval contains 0 is not a win. ``--lean`` scores PESQ-WB, STOI, ESTOI and SI-SDR only (no
composite measures: a third of the scoring time).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from common import RATE, RESULTS, SHARED, TEST_SETS, WORK, cell
from hushnet.data.testset import build_test_set
from hushnet.evaluate import Pair, match_folders, score_pairs, summarize
from peers import PEERS

SETS = {
    "valentini_test_dev": SHARED / "data" / "valentini_test_dev",
    **TEST_SETS,
    "real_noisy_dev": SHARED / "data" / "real_noisy_dev",
}
REFERENCED = ("pesq_wb", "stoi", "estoi", "si_sdr_db", "csig", "cbak", "covl")
_REFERENCED_COLUMNS = ("pesq_wb", "stoi", "si_sdr_db", "csig", "cbak", "covl")
COLUMNS = {
    "valentini_test_dev": _REFERENCED_COLUMNS,
    "synthetic": _REFERENCED_COLUMNS,
    "valentini_dev": _REFERENCED_COLUMNS,
    "real_noisy_dev": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"),
}
# The per-file scores the bootstrap compares, per kind of set.
COMPARED = {"referenced": ("pesq_wb", "stoi"), "dnsmos": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")}
RESAMPLES, SEED = 2000, 0


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


def interpolated_model(start: str, end: str, fraction: float) -> str:
    """A model directory with the weights ``fraction`` of the way from ``start`` to ``end`` (WiSE-FT)."""
    from hushnet.model_dir import load_model, save_model

    folder = WORK / "interpolated" / f"{Path(start).name}-{Path(end).name}-{fraction:g}"
    first, last = load_model(start, kind="can"), load_model(end, kind="can")
    end_state = last.state_dict()
    mixed = {
        k: v + fraction * (end_state[k] - v) if v.is_floating_point() else end_state[k]
        for k, v in first.state_dict().items()
    }
    last.load_state_dict(mixed)
    card = (
        f"# WiSE-FT interpolation\n\nWeights {fraction:g} of the way from `{start}` to `{end}` (config of `{end}`).\n"
    )
    save_model(last, folder, card, extra={"interpolated": {"start": str(start), "end": str(end), "fraction": fraction}})
    return str(folder)


def candidate_enhancer(model: str, options: dict):
    """The Denoiser for a candidate, with its dry/wet off (the sweep mixes the input back itself)."""
    from hushnet.denoiser import Denoiser

    if model.startswith("wise:"):
        _, start, end, fraction = model.split(":")
        model = interpolated_model(start, end, float(fraction))

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
    if overrides:  # the plan is fixed when the Denoiser is made: make it again from the changed config
        denoiser.scheme = denoiser.scheme_for(denoiser.level_scope)

    def enhance(x: np.ndarray) -> np.ndarray:
        return denoiser.denoise(x, RATE)

    scheme = denoiser.scheme
    plan = f"{scheme.length / RATE:g}-s segments" if scheme.kind == "segments" else "chunks"
    level = "as is" if denoiser.level_db is None else f"{denoiser.level_db:g} dBFS"
    enhance.description = f"`{model}`, {denoiser.engine_name} engine, {plan}, level {level}"  # type: ignore[attr-defined]
    return enhance


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
        enhanced = np.pad(
            enhanced, (0, noisy.size - enhanced.size)
        )  # resampling peers can come back a few samples short
        spent += time.perf_counter() - started
        audio += noisy.size / rate
        sf.write(folder / f"{pair.name}.wav", enhanced, rate, subtype="FLOAT")
    return spent, audio


def score_lean(pair: Pair) -> dict:
    """PESQ-WB, STOI, ESTOI and SI-SDR of one pair (``score`` without the composite measures)."""
    from pystoi import stoi

    from hushnet.metrics import align, pesq_score, si_sdr

    clean, _ = sf.read(pair.clean, dtype="float32")
    enhanced, _ = sf.read(pair.enhanced, dtype="float32")
    aligned = align(clean, enhanced, RATE)
    c, e = aligned.clean.astype(np.float64), aligned.enhanced.astype(np.float64)
    return {
        "name": pair.name,
        "pesq_wb": pesq_score(c, e),
        "stoi": float(stoi(c, e, RATE)),
        "estoi": float(stoi(c, e, RATE, extended=True)),
        "si_sdr_db": si_sdr(c, e),
    }


def score_dry(pairs: list[Pair], folder: Path, dry: float, jobs: int, lean: bool = False) -> tuple[dict, dict]:
    """Mix ``dry`` of the input back into the outputs in ``folder`` and score the set:
    (the set's means, the per-file scores that the bootstrap compares)."""
    mixed_folder = folder.parent / f"{folder.name}.dry{dry:g}"
    mixed_folder.mkdir(parents=True, exist_ok=True)
    scored = []
    for pair in pairs:
        noisy, rate = sf.read(pair.noisy, dtype="float32")
        enhanced, _ = sf.read(folder / f"{pair.name}.wav", dtype="float32")
        path = mixed_folder / f"{pair.name}.wav"
        sf.write(path, enhanced + dry * (noisy - enhanced), rate, subtype="FLOAT")
        scored.append(Pair(pair.name, pair.clean, enhanced=path))
    if pairs[0].clean is not None:
        rows = [score_lean(p) for p in scored] if lean else score_pairs(scored, jobs=jobs)
        failed = [f"{r['name']}: {r['error']}" for r in rows if "error" in r]
        if failed:
            raise SystemExit(f"scoring failed for {failed}")
        summary = summarize(rows)
        means = {m: round(summary[m]["mean"], 4) for m in REFERENCED if m in summary}
        compared = COMPARED["referenced"]
    else:
        from speechmos import dnsmos

        results = [dnsmos.run(np.clip(sf.read(p.enhanced, dtype="float32")[0], -1, 1), RATE) for p in scored]
        rows = [
            {"name": p.name, **{f"dnsmos_{k}": float(r[f"{k}_mos"]) for k in ("sig", "bak", "ovrl")}}
            for p, r in zip(scored, results)
        ]
        means = {m: round(float(np.mean([r[m] for r in rows])), 3) for m in COMPARED["dnsmos"]}
        compared = COMPARED["dnsmos"]
    per_file = {"names": [r["name"] for r in rows], **{m: [round(float(r[m]), 5) for r in rows] for m in compared}}
    return means, per_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", action="append", default=[], help="NAME=MODEL[,option=value...] (repeatable)")
    parser.add_argument("--peers", nargs="*", default=[], choices=list(PEERS), help="peer systems to add (dry 0 only)")
    parser.add_argument(
        "--dry", nargs="*", type=float, default=[0.0], help="dry/wet values to score for each candidate"
    )
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(RESULTS / "candidates"))
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--lean", action="store_true", help="no composite measures (CSIG/CBAK/COVL)")
    parser.add_argument("--reference", default="authors-dfl", help="row the referenced sets' differences are taken to")
    parser.add_argument("--dnsmos-reference", default="hushnet-dfl", help="row the DNSMOS differences are taken to")
    parser.add_argument(
        "--missing-only",
        action="store_true",
        help="skip a candidate on a set where all its rows are already in the record",
    )
    parser.add_argument("--verdict", help="a text file: the written verdict shown above the tables")
    parser.add_argument(
        "--merge",
        nargs="*",
        default=[],
        help="other runs' JSON records to merge into this one (rows of the same name are replaced)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if "synthetic" in args.sets and not (SETS["synthetic"] / "manifest.csv").is_file():
        build_test_set(SHARED / "data", SETS["synthetic"])
    stem = Path(args.output)
    record = (
        json.loads(stem.with_suffix(".json").read_text())
        if stem.with_suffix(".json").is_file() and not args.fresh
        else {"sets": {}, "systems": {}, "per_file": {}}
    )
    systems = [
        (name, lambda m=model, o=options: candidate_enhancer(m, o), args.dry, f"{model} {options}")
        for name, model, options in map(parse_candidate, args.candidate)
    ]
    systems += [(name, PEERS[name], [0.0], "peer") for name in args.peers]
    for name, make, dry_values, what in systems:
        labels = [name if dry == 0 else f"{name} dry {dry:g}" for dry in dry_values]
        todo = [
            s
            for s in args.sets
            if not (args.missing_only and all(label in record["per_file"].get(s, {}) for label in labels))
        ]
        if not todo:
            continue
        enhance = make()
        what = getattr(enhance, "description", what)
        for set_name in todo:
            pairs = noisy_files(SETS[set_name])
            folder = WORK / "candidates" / set_name / name.replace(":", "_").replace("/", "_")
            spent, audio = enhance_set(enhance, pairs, folder)
            for dry in dry_values:
                label = name if dry == 0 else f"{name} dry {dry:g}"
                means, per_file = score_dry(pairs, folder, dry, args.jobs, args.lean)
                row = {**means, "rtf": round(spent / audio, 4), "load": round(os.getloadavg()[0], 2)}
                record["sets"].setdefault(set_name, {})[label] = row
                record.setdefault("per_file", {}).setdefault(set_name, {})[label] = per_file
                record["systems"][label] = what
                print(f"{set_name:14s} {label:34s} " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            record["references"] = {"referenced": args.reference, "dnsmos": args.dnsmos_reference}
            stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
            stem.with_suffix(".md").write_text(markdown(record))
    for path in args.merge:
        other = json.loads(Path(path).read_text())
        for key in ("sets", "per_file"):
            for set_name, rows in other.get(key, {}).items():
                record.setdefault(key, {}).setdefault(set_name, {}).update(rows)
        record["systems"].update(other.get("systems", {}))
    if args.verdict:
        record["verdict"] = Path(args.verdict).read_text().strip()
    record["references"] = {"referenced": args.reference, "dnsmos": args.dnsmos_reference}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(record))
    print(f"wrote {stem.with_suffix('.md')}")


def differences(record: dict) -> dict:
    """{set: {row: {metric: PairedDifference}}}: each row's paired bootstrap difference to its set's reference."""
    from hushnet.metrics import paired_bootstrap

    references = record.get("references", {"referenced": "authors-dfl", "dnsmos": "hushnet-dfl"})
    out: dict = {}
    for set_name, rows in record.get("per_file", {}).items():
        kind = "dnsmos" if set_name == "real_noisy_dev" else "referenced"
        reference = rows.get(references[kind])
        if reference is None:
            continue
        for label, scores in rows.items():
            if label == references[kind] or scores["names"] != reference["names"]:
                continue
            out.setdefault(set_name, {})[label] = {
                m: paired_bootstrap(scores[m], reference[m], RESAMPLES, seed=SEED) for m in COMPARED[kind]
            }
    return out


def _differencecell(d) -> str:
    text = f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
    return f"**{text}**" if d.win else text


def verdict(record: dict, found: dict) -> list[str]:
    """The lines saying which rows beat the references outside their intervals."""
    references = record.get("references", {"referenced": "authors-dfl", "dnsmos": "hushnet-dfl"})
    lines = []
    for set_name, metrics, reference in (
        ("valentini_test_dev", ("pesq_wb", "stoi"), references["referenced"]),
        ("synthetic", ("pesq_wb", "stoi"), references["referenced"]),
        ("real_noisy_dev", ("dnsmos_ovrl", "dnsmos_sig"), references["dnsmos"]),
    ):
        for metric in metrics:
            rows = found.get(set_name, {})
            if not rows:
                continue
            better = [
                f"`{label}` ({d[metric].mean:+.3f} [{d[metric].low:+.3f}, {d[metric].high:+.3f}])"
                for label, d in rows.items()
                if d[metric].win and d[metric].mean > 0
            ]
            lines.append(
                f"- {set_name} {metric}, beating `{reference}` outside the interval: "
                + (", ".join(better) if better else "**none**")
            )
    return lines


def markdown(record: dict) -> str:
    """The verdict, one table of means (a row per system, the sets side by side), then the bootstrap differences."""
    sets = [s for s in SETS if s in record["sets"]]
    present = {s: [c for c in COLUMNS[s] if any(c in row for row in record["sets"][s].values())] for s in sets}
    header = [f"{s}: {c}" for s in sets for c in present[s]]
    found = differences(record)
    written = [record["verdict"], ""] if record.get("verdict") else []
    lines = [
        "# Candidates on the development sets",
        "",
        "## Verdict",
        "",
        *written,
        "Computed from the per-file scores below:",
        "",
        *verdict(record, found),
        "",
        "## Means",
        "",
        "`valentini_test_dev` (25 real pairs of the Valentini *test* set, speakers p232 and p257: the fair yardstick), the synthetic "
        "test set (96 files of 10 s, held-out speakers and noise), `valentini_dev` (7 real pairs of Valentini *training* speakers, which "
        "`authors-dfl` trained on: a training-fit check only) and DNSMOS P.835 on `real_noisy_dev` (16 real recordings, no references). "
        "`dry A` rows mix a fraction A of the input back into that system's output. Empty cells: not scored.",
        "",
        "| system | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    names = list(dict.fromkeys(n for s in sets for n in record["sets"][s]))
    for name in names:
        cells = [cell(record["sets"][s].get(name, {}).get(c)) for s in sets for c in present[s]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    references = record.get("references", {"referenced": "authors-dfl", "dnsmos": "hushnet-dfl"})
    lines += [
        "",
        "## Paired differences",
        "",
        f"Mean per-file difference to `{references['referenced']}` (PESQ-WB, STOI) and to `{references['dnsmos']}` (DNSMOS on "
        f"`real_noisy_dev`), with its paired bootstrap 95 % interval (BCa, {RESAMPLES} resamples of the files, seed {SEED}; "
        "`hushnet.metrics.paired_bootstrap`). **Bold**: the interval excludes 0 (a win or a loss); otherwise not a win.",
        "",
    ]
    columns = [
        (s, m) for s in SETS if s in found for m in COMPARED["dnsmos" if s == "real_noisy_dev" else "referenced"]
    ]
    lines += ["| system | " + " | ".join(f"{s}: {m}" for s, m in columns) + " |", "|---|" + "---|" * len(columns)]
    for name in dict.fromkeys(n for s, _ in columns for n in found[s]):
        cells = [_differencecell(found[s][name][m]) if name in found[s] else "" for s, m in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    bases = dict.fromkeys(n.split(" dry ")[0] for n in names)
    lines += ["", "Systems:", ""] + [f"- `{n}`: {record['systems'].get(n, '')}" for n in bases]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
