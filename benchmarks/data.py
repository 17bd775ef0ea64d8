"""The data study: which part of the speech set pulls a fine-tune off Valentini, judged per run.

    python benchmarks/data.py                      # every run folder in runs/data/ with a best/, writes results/data.md
    python benchmarks/data.py --runs asterisk vctk

Every run is the same short recipe (``runs/data/base.json``: 80 steps from authors-dfl, per-input,
feature loss only, batch 4 x 2 s) on one derived data folder (``hushnet build-data``, its command in
``runs/data/commands.md``). Each run's ``best/`` (its step-80 model) denoises the 25 real Valentini
test pairs and the 16 real noisy recordings with the torch engine, one file at a time; PESQ-WB/STOI are
paired against authors-dfl with a bootstrap 95 % interval, DNSMOS against authors-dfl too. The
speech properties of each run's data (medians over its utterances) come from the data folder's
``speech/manifest.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "data"
RESULTS = Path(__file__).parent / "results"
WORK = Path(__file__).parent / "work" / "data"
SHARED = ROOT.parent / "shared" / "data"
VALENTINI = SHARED / "valentini_test_dev"
REAL = SHARED / "real_noisy_dev"
SHOWN = ("snr_db", "floor_db", "bandwidth_hz", "silence", "lead_s", "dc")


def enhance(model: str, name: str, folder: Path, part: str) -> Path:
    """Denoise every file of ``folder`` with ``model`` (torch engine, 1 thread) into WORK/name/part (cached)."""
    from hushnet import Denoiser

    output = WORK / name / part
    done = output / ".done"
    if done.is_file():
        return output
    output.mkdir(parents=True, exist_ok=True)
    denoiser = Denoiser.from_pretrained(model, engine="torch", threads=1)
    for path in sorted(folder.glob("*.flac")):
        denoiser.denoise_file(path, output / f"{path.stem}.wav", subtype="FLOAT")  # float WAV: no PCM rounding
    done.touch()
    return output


def scores(model: str, name: str) -> dict[str, list[dict]]:
    """Per-file rows: PESQ/STOI on the Valentini pairs, DNSMOS on the real recordings (cached as JSON)."""
    from hushnet.evaluate import match_folders, score_pairs, unreferenced

    cache = WORK / name / "scores.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    valentini = enhance(model, name, VALENTINI / "noisy", "valentini")
    real = enhance(model, name, REAL, "real")
    rows = {
        "valentini": score_pairs(match_folders(VALENTINI / "clean", enhanced=valentini).pairs),
        "real": score_pairs(unreferenced(real).pairs, with_dnsmos=True),
    }
    cache.write_text(json.dumps(rows))
    return rows


def data_properties(run: Path, keys: tuple[str, ...] = SHOWN) -> dict:
    """Hours and property medians of the speech a run trained on (its ``--data`` folder's manifest)."""
    config = json.loads((run / "train_config.json").read_text())
    manifest = Path(config["data"])
    manifest = (manifest if manifest.is_absolute() else ROOT / manifest) / "speech" / "manifest.csv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    facts = {"hours": sum(float(r["seconds"]) for r in rows) / 3600}
    for key in keys:
        if rows and key in rows[0]:
            facts[key] = float(np.median([float(r[key]) for r in rows]))
    return facts


def property_rows(built: Path) -> list[str]:
    """Markdown rows: the median properties per speech set of a built folder, and of the Valentini clean files."""
    import soundfile as sf

    from hushnet.data.build import property_table
    from hushnet.data.properties import PROPERTY_NAMES, measure

    with open(built / "speech" / "properties.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for name in ("valentini_test_dev", "valentini_dev"):
        for path in sorted((SHARED / name / "clean").glob("*.flac")):
            audio, rate = sf.read(path)
            rows.append({"set": f"Valentini clean ({name})", "seconds": len(audio) / rate, **measure(audio, rate)})
    lines = [
        "| speech set | files | minutes | " + " | ".join(PROPERTY_NAMES) + " |",
        "|---|---|---|" + "---|" * len(PROPERTY_NAMES),
    ]
    for entry in property_table(rows):
        values = " | ".join(f"{entry[k]:.4g}" for k in PROPERTY_NAMES)
        lines.append(f"| {entry['set']} | {entry['utterances']} | {entry['hours'] * 60:.1f} | {values} |")
    return lines


def property_correlations(names: list[str], reference: dict) -> list[str]:
    """Spearman's rank correlation, across runs, of each property median with the run's PESQ-WB difference."""
    from scipy.stats import spearmanr

    from hushnet.data.properties import PROPERTY_NAMES

    ref = np.mean([r["pesq_wb"] for r in reference["valentini"]])
    runs = [(name, data_properties(RUNS / name, PROPERTY_NAMES)) for name in names]
    deltas = [np.mean([r["pesq_wb"] for r in scores(str(RUNS / n / "best"), n)["valentini"]]) - ref for n, _ in runs]
    lines = [f"Rank correlation with the PESQ-WB difference over {len(runs)} runs:", ""]
    lines += ["| property | Spearman rho | p |", "|---|---|---|"]
    for key in PROPERTY_NAMES:
        values = [facts.get(key, float("nan")) for _, facts in runs]
        if len(set(values)) < 2:
            lines.append(f"| {key} | - (the same in every run) | - |")
            continue
        rho, p = spearmanr(values, deltas)
        lines.append(f"| {key} | {rho:+.2f} | {p:.2f} |")
    return lines


def main() -> None:
    from hushnet.metrics import paired_bootstrap

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", help="run folder names under runs/data (default: all with a best/)")
    parser.add_argument("--properties", help="a hushnet build-data folder: write its property medians per set")
    args = parser.parse_args()
    if args.properties:
        lines = property_rows(Path(args.properties))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "data_properties.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    names = args.runs or sorted(p.parent.parent.name for p in RUNS.glob("*/best/model.safetensors"))
    reference = scores("authors-dfl", "authors-dfl")
    ref_mean = {k: np.mean([r[k] for r in reference["valentini"]]) for k in ("pesq_wb", "stoi")}
    ref_real = {k: np.mean([r[k] for r in reference["real"]]) for k in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")}
    header = (
        "| run | speech (h) | " + " | ".join(SHOWN) + " | PESQ-WB | vs authors-dfl | STOI | vs authors-dfl "
        "| DNSMOS SIG / BAK / OVRL | OVRL vs authors-dfl |"
    )
    lines = [
        "| `authors-dfl` | - | " + " | ".join("-" for _ in SHOWN) + f" | {ref_mean['pesq_wb']:.3f} | - | "
        f"{ref_mean['stoi']:.3f} | - | {ref_real['dnsmos_sig']:.2f} / {ref_real['dnsmos_bak']:.2f} / "
        f"{ref_real['dnsmos_ovrl']:.2f} | - |"
    ]
    for name in names:
        run = RUNS / name
        rows = scores(str(run / "best"), name)
        facts = data_properties(run)
        cells = [f"{facts.get('hours', float('nan')):.3f}"] + [f"{facts.get(k, float('nan')):.4g}" for k in SHOWN]
        for key in ("pesq_wb", "stoi"):
            d = paired_bootstrap([r[key] for r in rows["valentini"]], [r[key] for r in reference["valentini"]])
            text = f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
            cells += [f"{np.mean([r[key] for r in rows['valentini']]):.3f}", f"**{text}**" if d.win else text]
        real = {k: np.mean([r[k] for r in rows["real"]]) for k in ref_real}
        d = paired_bootstrap([r["dnsmos_ovrl"] for r in rows["real"]], [r["dnsmos_ovrl"] for r in reference["real"]])
        cells += [
            f"{real['dnsmos_sig']:.2f} / {real['dnsmos_bak']:.2f} / {real['dnsmos_ovrl']:.2f}",
            f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]",
        ]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr)
    table = [header, "|" + "---|" * (len(SHOWN) + 8)] + lines
    table += ["", *property_correlations(names, reference)]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data_runs.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
