"""The dev curve of a long training run: each saved checkpoint scored on both dev sets.

    python benchmarks/long_run.py snapshot            # keep the run's latest checkpoint model (checkpoints are pruned)
    python benchmarks/long_run.py report              # score every snapshot, write results/long_run.md and its plot

The run (default ``runs/long-vctk``) keeps one checkpoint; ``snapshot`` copies its model files to
``benchmarks/work/long_run/RUN/step_N`` so that the curve can have a point for every snapshot taken
(one each time the run's checkpoint is committed). Each point: PESQ-WB/STOI on ``valentini_test_dev``
and DNSMOS SIG/BAK/OVRL on ``real_noisy_dev`` (``benchmarks/data.py``'s scoring: torch engine, one
file at a time), beside ``authors-dfl`` and ``hushnet-dfl`` scored the same way.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from data import RESULTS, ROOT, scores

WORK = Path(__file__).parent / "work" / "long_run"
MODEL_FILES = ("model.safetensors", "config.json", "README.md")


def snapshot(run: Path) -> Path:
    """Copy the run's latest checkpoint model into WORK/RUN/step_N (once)."""
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    target = WORK / run.name / latest.name
    if not target.is_dir():
        staging = target.with_name(f".{target.name}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in MODEL_FILES:
            if (latest / name).is_file():
                shutil.copy2(latest / name, staging / name)
        staging.rename(target)
    return target


def means(rows: dict) -> dict:
    keys = {"valentini": ("pesq_wb", "stoi"), "real": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")}
    return {k: float(np.mean([r[k] for r in rows[part]])) for part, names in keys.items() for k in names}


def report(run: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hushnet.metrics import paired_bootstrap

    config = __import__("json").loads((run / "train_config.json").read_text())
    audio_per_step = config["batch_size"] * config["mixing"]["segment_seconds"]
    references = {name: scores(name, name) for name in ("authors-dfl", "hushnet-dfl")}
    shown = run.resolve().relative_to(ROOT) if run.resolve().is_relative_to(ROOT) else run
    points = []
    for folder in sorted((WORK / run.name).glob("step_*")):
        step = int(folder.name.split("_")[1])
        rows = scores(str(folder), f"{run.name}-{folder.name}")
        d = paired_bootstrap(
            [r["pesq_wb"] for r in rows["valentini"]], [r["pesq_wb"] for r in references["authors-dfl"]["valentini"]]
        )
        points.append((step, step * audio_per_step / 3600, means(rows), d))
    lines = [
        f"# The long run `{run.name}`: its dev curve",
        "",
        f"Recipe: `{shown}/train_config.json` (data: `{config['data']}`). Each point is a committed checkpoint,",
        "scored by `python benchmarks/long_run.py report` (torch engine, one file at a time). PESQ-WB difference",
        "to `authors-dfl` with its paired bootstrap 95 % interval.",
        "",
        "| step | audio (h) | PESQ-WB | vs authors-dfl | STOI | DNSMOS SIG | BAK | OVRL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in references.items():
        m = means(rows)
        lines.append(
            f"| `{name}` | - | {m['pesq_wb']:.3f} | - | {m['stoi']:.3f} | {m['dnsmos_sig']:.2f} | "
            f"{m['dnsmos_bak']:.2f} | {m['dnsmos_ovrl']:.2f} |"
        )
    for step, hours, m, d in points:
        text = f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        lines.append(
            f"| {step} | {hours:.2f} | {m['pesq_wb']:.3f} | {'**' + text + '**' if d.win else text} | {m['stoi']:.3f} | "
            f"{m['dnsmos_sig']:.2f} | {m['dnsmos_bak']:.2f} | {m['dnsmos_ovrl']:.2f} |"
        )
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    hours = [p[1] for p in points]
    left.plot(hours, [p[2]["pesq_wb"] for p in points], "o-", label=run.name)
    right.plot(hours, [p[2]["dnsmos_ovrl"] for p in points], "o-", label=f"{run.name} OVRL")
    right.plot(hours, [p[2]["dnsmos_sig"] for p in points], "s-", label=f"{run.name} SIG")
    for name, rows in references.items():
        m = means(rows)
        left.axhline(m["pesq_wb"], linestyle="--", color="grey" if name == "authors-dfl" else "black", label=name)
        right.axhline(
            m["dnsmos_ovrl"], linestyle="--", color="grey" if name == "authors-dfl" else "black", label=f"{name} OVRL"
        )
    left.set(xlabel="training audio (h)", ylabel="PESQ-WB", title="valentini_test_dev")
    right.set(xlabel="training audio (h)", ylabel="DNSMOS", title="real_noisy_dev")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.tight_layout()
    plot = RESULTS / f"long_run_{run.name}.png"
    figure.savefig(plot, dpi=100)
    lines += ["", f"![the curve]({plot.name})"]
    (RESULTS / "long_run.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["snapshot", "report"])
    parser.add_argument("--run", default=str(ROOT / "runs" / "long-vctk"))
    args = parser.parse_args()
    run = Path(args.run)
    if args.action == "snapshot":
        print(snapshot(run))
    else:
        report(run)


if __name__ == "__main__":
    main()
