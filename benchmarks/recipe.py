"""The recipe ladder: each rung a short run from authors-dfl, scored on valentini_test_dev against authors-dfl.

    python benchmarks/recipe.py                       # every run folder in runs/recipe/ (its best/), writes results/recipe.md
    python benchmarks/recipe.py --runs lr1e-5 p56-snr

Each rung's ``best/`` (the best validated model of its run) is denoised and scored by ``hushnet
evaluate`` on the 25 real Valentini test pairs; the difference to authors-dfl (4-s segments, its own
level) is given with its paired bootstrap 95 % interval (a difference inside it is not a win).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from common import RESULTS, ROOT, SHARED

RUNS = ROOT / "runs" / "recipe"
PAIRS = SHARED / "data" / "valentini_test_dev"
WORK = ROOT / "benchmarks" / "work" / "recipe"

# What each rung changes against the rung above it (the first against the probe).
CHANGES = {
    "lr1e-5": "learning rate 1e-5 (probe: 5e-5), 10 warm-up steps, cosine to 1e-6; feature loss only; every item Valentini-like; 2-s crops, batch 4",
    "calibrated-first": "as lr1e-5, layer weights calibrated on the starting model over 50 batches before step 1",
    "p56-snr": "as lr1e-5, SNR of the mixtures against the speech's active level (ITU-T P.56) instead of its RMS",
}


def evaluate(model: str, name: str) -> list[dict]:
    """Per-file scores of ``model`` on the Valentini test pairs (cached in benchmarks/work/recipe/NAME)."""
    output = WORK / name
    if not (output / "per_file.csv").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "hushnet.cli",
                "evaluate",
                "--clean",
                str(PAIRS / "clean"),
                "--noisy",
                str(PAIRS / "noisy"),
                "--model",
                model,
                "-o",
                str(output),
                "--jobs",
                "1",
                "--threads",
                "1",
                "-q",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    with open(output / "per_file.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def run_facts(run: Path) -> dict:
    """Steps, audio hours seen and the best validation row of a run folder."""
    config = json.loads((run / "train_config.json").read_text())
    with open(run / "log.csv", newline="") as handle:
        steps = len(list(csv.DictReader(handle)))
    best = json.loads((run / "best" / "config.json").read_text()).get("training", {}).get("validation", {})
    hours = steps * config["batch_size"] * config["mixing"]["segment_seconds"] / 3600
    best_step = json.loads((run / "best" / "config.json").read_text()).get("training", {}).get("step")
    return {"steps": steps, "hours": hours, "best_step": best_step, "best_pesq": best.get("pesq")}


def main() -> None:
    from hushnet.metrics import paired_bootstrap

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", help="run folder names under runs/recipe (default: all with a best/)")
    args = parser.parse_args()
    names = args.runs or sorted(p.parent.parent.name for p in RUNS.glob("*/best/model.safetensors"))
    reference = evaluate("authors-dfl", "authors-dfl")
    lines = [
        "# The recipe ladder (short runs from authors-dfl), judged on `valentini_test_dev`",
        "",
        "25 real Valentini test pairs (p232, p257). Differences to `authors-dfl` (4-s segments, its own level) with paired "
        "bootstrap 95 % intervals (`hushnet.metrics.paired_bootstrap`); bold = outside the interval. `python benchmarks/recipe.py`.",
        "",
        "| rung | what changes | steps (audio h) | best step (its validation PESQ) | PESQ-WB | vs authors-dfl | STOI | vs authors-dfl |",
        "|---|---|---|---|---|---|---|---|",
    ]
    mean = lambda rows, key: sum(float(r[key]) for r in rows) / len(rows)  # noqa: E731
    lines.append(
        f"| `authors-dfl` | the start | - | - | {mean(reference, 'pesq_wb'):.3f} | - | {mean(reference, 'stoi'):.3f} | - |"
    )
    for name in names:
        rows = evaluate(str(RUNS / name / "best"), name)
        facts = run_facts(RUNS / name)
        cells = []
        for key in ("pesq_wb", "stoi"):
            d = paired_bootstrap([float(r[key]) for r in rows], [float(r[key]) for r in reference])
            text = f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
            cells += [f"{mean(rows, key):.3f}", f"**{text}**" if d.win else text]
        lines.append(
            f"| `{name}` | {CHANGES.get(name, '')} | {facts['steps']} ({facts['hours']:.2f} h) | {facts['best_step']} ({facts['best_pesq']}) | "
            + " | ".join(cells)
            + " |"
        )
    lines += LONG_RUN_SECTION
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "recipe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# The long run on the fixed data has its own scorer (every committed checkpoint, both dev sets);
# its curve is drawn by benchmarks/long_run.py and shown here beside the short rungs.
LONG_RUN_SECTION = [
    "",
    "## The long run on the fixed data (`runs/long-vctk`)",
    "",
    "The best rung (per-input from `authors-dfl`, feature loss only, lr 5e-5 cosine to 5e-6) on the data the data study",
    "chose (`data/set-vctk-plus`: `hushnet build-data --sets vctk --extra-speech data/extra_speech`), for 4500 steps",
    "(10 h of audio). Every committed checkpoint is scored on `valentini_test_dev` (PESQ-WB, STOI) and `real_noisy_dev`",
    "(DNSMOS SIG/BAK/OVRL) by `python benchmarks/long_run.py report`; the table is in [long_run.md](long_run.md).",
    "",
    "![the long run's dev curve](long_run_long-vctk.png)",
]


if __name__ == "__main__":
    main()
