"""Training throughput (seconds of audio per second) of the full training step, path by path.

The full step: the CAN's forward and backward from ``authors-dfl``, the deep feature loss through the
authors' loss network, AdamW. Paths: today's conv1d float32 ([batch, channels, time]), channels-last
conv2d float32, channels-last bf16 autocast, and ``torch.compile`` of each. Where the time goes: the
same step with an L1 loss instead of the feature loss (the loss network's share is the difference),
the optimizer step alone, and the data (one batch of on-the-fly mixtures). Also the loss network
trainer's step. Each configuration runs in its own process (its own threads and peak RSS).

    python benchmarks/train_speed.py                       # every path, 1 and 2 threads: results/training.md
    python benchmarks/train_speed.py --job OLD_SRC         # also `hushnet train`'s 12-step job, OLD_SRC's code against this one
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, SHARED, cpu_facts

PATHS = {
    "conv1d float32 (before)": {"channels_last": False, "precision": "float32", "compile": False},
    "channels-last float32": {"channels_last": True, "precision": "float32", "compile": False},
    "channels-last bf16": {"channels_last": True, "precision": "bf16", "compile": False},
    "compiled conv1d float32": {"channels_last": False, "precision": "float32", "compile": True},
    "compiled channels-last float32": {"channels_last": True, "precision": "float32", "compile": True},
    "compiled channels-last bf16 (default)": {"channels_last": True, "precision": "bf16", "compile": True},
}


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def measure_denoiser_step(options: dict) -> dict:
    """Warm-up then timed full steps of one path, in this process."""
    import torch

    from hushnet.loss import LossConfig, TrainingLoss
    from hushnet.model_dir import load_model
    from hushnet.training import fastpath

    torch.set_num_threads(options["threads"])
    torch.manual_seed(0)
    model = load_model("authors-dfl", kind="can")
    model.channels_last = options["channels_last"]
    feature = options.get("loss", "feature") == "feature"
    lossnet = load_model("authors-lossnet", kind="lossnet") if feature else None
    if lossnet is not None:
        lossnet.channels_last = options["channels_last"]
    loss = TrainingLoss(
        LossConfig(feature=1.0 if feature else 0.0, l1=0.0 if feature else 1.0, calibration_steps=0), lossnet
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    device = torch.device("cpu")
    samples = int(options["seconds"] * 16000)
    generator = torch.Generator().manual_seed(0)
    noisy = 0.05 * torch.randn(options["batch"], samples, generator=generator)
    clean = 0.05 * torch.randn(options["batch"], samples, generator=generator)

    def forward(noisy: torch.Tensor, clean: torch.Tensor):
        with fastpath.autocast(device, options["precision"]):
            return loss(model(noisy).float(), clean)

    step_forward = fastpath.CompiledStep(forward, options["compile"], print)
    times, optimizer_times = [], []
    first = None
    for index in range(options["warmup"] + options["steps"]):
        started = time.perf_counter()
        total, _ = step_forward(noisy, clean)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        before_optimizer = time.perf_counter()
        optimizer.step()
        done = time.perf_counter()
        if index == 0:
            first = done - started
        if index >= options["warmup"]:
            times.append(done - started)
            optimizer_times.append(done - before_optimizer)
    step = _median(times)
    return {
        "step_s": round(step, 3),
        "audio_s_per_s": round(options["batch"] * options["seconds"] / step, 3),
        "optimizer_s": round(_median(optimizer_times), 4),
        "first_step_s": round(first, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def measure_data(options: dict) -> dict:
    """Seconds to draw one batch of on-the-fly mixtures (decode, crop, reverb, mix) in this process."""
    import numpy as np

    from hushnet.data.mixing import MixingConfig
    from hushnet.training.denoiser import TrainConfig, build_datasets

    config = TrainConfig(data=options["data"], mixing=MixingConfig(segment_seconds=options["seconds"]))
    training, _ = build_datasets(config)
    for index in range(options["batch"]):  # decode and cache what the first batches read
        training[index]
    times = []
    for repeat in range(5):
        started = time.perf_counter()
        np.stack([training[1000 + repeat * options["batch"] + i]["noisy"] for i in range(options["batch"])])
        times.append(time.perf_counter() - started)
    return {"batch_s": round(_median(times), 3)}


def measure_lossnet_step(options: dict) -> dict:
    """The loss-network trainer's step (both tasks, batch 16 of ``seconds``-long crops)."""
    import torch
    import torch.nn.functional as F

    from hushnet.models.lossnet import LossNet, LossNetConfig
    from hushnet.training import fastpath

    torch.set_num_threads(options["threads"])
    torch.manual_seed(0)
    network = LossNet(LossNetConfig(scene_classes=15, tags=7), channels_last=options["channels_last"]).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    device = torch.device("cpu")
    audio = 0.05 * torch.randn(16, int(options["seconds"] * 16000))
    labels = torch.randint(0, 15, (16,))
    targets = (torch.rand(16, 7) > 0.5).float()

    def forward(audio, labels, targets):
        with fastpath.autocast(device, options["precision"]):
            scenes, _ = network.classify(audio)
            _, tags = network.classify(audio)
            return F.cross_entropy(scenes.float(), labels) + F.binary_cross_entropy_with_logits(tags.float(), targets)

    step_forward = fastpath.CompiledStep(forward, options["compile"], print)
    times = []
    for index in range(options["warmup"] + options["steps"]):
        started = time.perf_counter()
        total = step_forward(audio, labels, targets)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if index >= options["warmup"]:
            times.append(time.perf_counter() - started)
    step = _median(times)
    return {"step_s": round(step, 3), "audio_s_per_s": round(2 * 16 * options["seconds"] / step, 3)}


def _child(kind: str, options: dict, env: dict | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps({"kind": kind, **options})],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def job_speed(
    source: Path | None, data: str, output: Path, threads: int, allocator: str = "default", steps: int = 12
) -> dict:
    """`hushnet train`'s 12-step job from authors-dfl (batch 4 x 4 s): median audio s/s over steps 3-12,
    and the command's user and system CPU seconds (GNU time). ``allocator``: ``system`` sets
    HUSHNET_ALLOCATOR=system (no jemalloc re-exec); ``default``: what the code does by itself."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("LD_PRELOAD", None)
    if allocator == "system":
        env["HUSHNET_ALLOCATOR"] = "system"
    if source is not None:
        env["PYTHONPATH"] = str(source)
    report = output.parent / f"{output.name}.time"
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        "/usr/bin/time",
        "-f",
        "%U %S %F %R %M",
        "-o",
        str(report),
        sys.executable,
        "-m",
        "hushnet.cli",
        "train",
        "-o",
        str(output),
        "--data",
        data,
        "--init",
        "authors-dfl",
        "--norm",
        "per-input",
        "--batch-size",
        "4",
        "--segment-seconds",
        "4",
        "--max-steps",
        str(steps),
        "--validate-every",
        "1000",
        "--checkpoint-every",
        "1000",
        "--threads",
        str(threads),
        "--learning-rate",
        "5e-5",
        "--warmup-steps",
        "2",
        "-q",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1]}
    with open(output / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    speeds = [float(r["audio_seconds_per_second"]) for r in rows[2:steps]]
    user, system, major, minor, peak_kb = report.read_text().split()[-5:]
    return {
        "audio_s_per_s": round(_median(speeds), 3),
        "first_step_s": float(rows[0]["seconds"]),
        "wall_s": round(time.perf_counter() - started, 1),
        "user_s": float(user),
        "system_s": float(system),
        "page_faults": int(major) + int(minor),
        "peak_rss_mb": round(int(peak_kb) / 1024),
        "precision": rows[-1].get("precision", "float32 (before)"),
        "allocator": allocator if source is None else "system (the code before has no choice)",
        "load1": round(os.getloadavg()[0], 2),
    }


def _cpu_class() -> str:
    """This CPU's class as hushnet reads it ($HUSHNET_CPU_FLAGS included), and whether emulated."""
    from hushnet.precision import cpu_class, cpu_model

    emulated = (
        " (emulated: HUSHNET_CPU_FLAGS, ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY)"
        if "HUSHNET_CPU_FLAGS" in os.environ
        else ""
    )
    return f"{cpu_class()} on {cpu_model()}{emulated}"


def _table(results: dict, seconds: float, batch: int) -> list[str]:
    lines = [
        "| path | threads | step s | audio s per s | x before | first step s (compile) | optimizer s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for threads in (1, 2):
        base = results.get(f"conv1d float32 (before)|{threads}|feature", {}).get("audio_s_per_s")
        for name in PATHS:
            r = results.get(f"{name}|{threads}|feature")
            if not r:
                continue
            if "error" in r:
                lines.append(f"| {name} | {threads} | error: {r['error']} | | | | | |")
                continue
            ratio = f"{r['audio_s_per_s'] / base:.2f}x" if base else "-"
            lines.append(
                f"| {name} | {threads} | {r['step_s']} | {r['audio_s_per_s']} | {ratio} | {r['first_step_s']} | {r['optimizer_s']} | {r['peak_rss_mb']} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="crop length per example")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per path (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="none: measure no path")
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=list(PATHS),
        default=list(PATHS),
        metavar="PATH",
        help="paths to measure (default all)",
    )
    parser.add_argument("--data", default=str(SHARED / "data"))
    parser.add_argument(
        "--job",
        metavar="OLD_SRC",
        help="a src/ folder of the code before: run the 12-step job with it and with this code",
    )
    parser.add_argument("--job-steps", type=int, default=12, help="steps of the --job runs (speeds: steps 3 on)")
    parser.add_argument("--skip-extras", action="store_true", help="no data and train-lossnet measurements")
    parser.add_argument("--results", default="training", help="results/NAME.{json,md} to write (and add to)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        options = json.loads(args.child)
        kind = options.pop("kind")
        measure = {"step": measure_denoiser_step, "data": measure_data, "lossnet": measure_lossnet_step}[kind]
        print(json.dumps(measure(options)))
        return
    import torch

    common = {"batch": args.batch, "seconds": args.seconds, "steps": args.steps, "warmup": 2}
    # Runs add to the record (e.g. 1 thread now, 2 threads later); a result measured again replaces the old one.
    stored = RESULTS / f"{args.results}.json"
    previous = json.loads(stored.read_text()) if stored.is_file() else {}
    same_setup = all(previous.get(k) == v for k, v in common.items() if k != "steps")
    results: dict[str, dict] = dict(previous.get("results", {})) if same_setup else {}
    load = list(previous.get("load_average", [])) if same_setup else []
    load.append(os.getloadavg()[0])
    for threads in args.threads:
        for name, path in PATHS.items():
            if name not in args.paths:
                continue
            for loss in ("feature", "l1") if threads == 1 else ("feature",):
                key = f"{name}|{threads}|{loss}"
                results[key] = _child("step", {**common, **path, "threads": threads, "loss": loss})
                print(f"{key:60s} {results[key]}", flush=True)
                load.append(os.getloadavg()[0])
    if not args.job and "data" in results and "lossnet|before" in results:
        args.skip_extras = True
    if not getattr(args, "skip_extras", False):
        results["data"] = _child("data", {"batch": args.batch, "seconds": args.seconds, "data": args.data})
    for name, path in (("before", PATHS["conv1d float32 (before)"]), ("default", PATHS["channels-last bf16"])):
        if getattr(args, "skip_extras", False):
            break
        results[f"lossnet|{name}"] = _child(
            "lossnet", {**path, "threads": 1, "seconds": 2.0, "steps": args.steps, "warmup": 2}
        )
        print(f"lossnet {name}: {results[f'lossnet|{name}']}", flush=True)
    if args.job:
        with tempfile.TemporaryDirectory() as folder:
            runs = (
                ("before", Path(args.job), "system"),
                ("now, system allocator", None, "system"),
                ("now", None, "default"),
            )
            for name, source, allocator in runs:
                key = f"job|{name}"
                results[key] = job_speed(source, args.data, Path(folder) / name, 1, allocator, args.job_steps)
                results[key].update(cpu_class=_cpu_class(), job_steps=args.job_steps)
                print(f"{args.job_steps}-step job, {name}: {results[key]}", flush=True)
                load.append(os.getloadavg()[0])
    RESULTS.mkdir(exist_ok=True)
    record = {
        "cpu": _cpu_class(),
        "machine": cpu_facts(),
        "torch": torch.__version__,
        **common,
        "load_average": load,
        "results": results,
    }
    stored.write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(record, RESULTS / f"{args.results}.md")


def write_markdown(record: dict, path: Path = RESULTS / "training.md") -> None:
    """results/training.md (or ``path``) from the record."""
    results, batch, seconds = record["results"], record["batch"], record["seconds"]
    machine = record.get("machine", {})  # records before the CPU facts were kept have none
    lines = [
        f"# Training step speed (batch {batch} x {seconds} s, CAN from authors-dfl + deep feature loss, AdamW)",
        "",
        f"torch {record['torch']}, {record['cpu']}; load average during the runs {min(record['load_average']):.1f}-{max(record['load_average']):.1f}"
        f" (2-core machine, {machine.get('model', 'CPU')} family {machine.get('family', '?')}"
        f" model {machine.get('model_number', '?')}). Medians of timed steps after 2 warm-up steps.",
        "The first step includes torch.compile's compilation, from whatever inductor cache /tmp holds at the time.",
        "",
    ]
    lines += _table(results, seconds, batch)
    lines += [
        "",
        "## Where the time goes (1 thread)",
        "",
        "| path | full step s | CAN fwd+bwd with L1 (s) | loss network's share (s) | optimizer s |",
        "|---|---|---|---|---|",
    ]
    for name in PATHS:
        full, can = results.get(f"{name}|1|feature", {}), results.get(f"{name}|1|l1", {})
        if "step_s" in full and "step_s" in can:
            share = full["step_s"] - can["step_s"]
            # Under load the two timings scatter by more than the loss network costs here.
            shown = f"{share:.3f}" if share > 0.05 * full["step_s"] else "about 0 (below the timing noise)"
            lines.append(
                f"| {name} | {full['step_s']} | {can['step_s'] - can['optimizer_s']:.3f} | {shown} | {full['optimizer_s']} |"
            )
    if "batch_s" in results.get("data", {}):
        lines += [
            "",
            f"Data: one batch of {batch} on-the-fly mixtures of {seconds} s takes {results['data']['batch_s']} s in the main process"
            " (`--workers N` moves it to N loader processes).",
        ]
    if "lossnet|before" in results:
        b, d = results["lossnet|before"], results["lossnet|default"]
        if "audio_s_per_s" in b and "audio_s_per_s" in d:
            lines += [
                "",
                f"`train-lossnet` step (both tasks, 16 crops of 2 s each, 1 thread): before {b['step_s']} s ({b['audio_s_per_s']} audio s/s), "
                f"channels-last bf16 (its default: eager) {d['step_s']} s ({d['audio_s_per_s']} audio s/s): {d['audio_s_per_s'] / b['audio_s_per_s']:.2f}x.",
            ]
    if "job|before" in results:
        b, n = results["job|before"], results["job|now"]
        steps = n.get("job_steps", 12)
        lines += [
            "",
            f"## `hushnet train`, the {steps}-step job (from authors-dfl, batch 4 x 4 s, 1 thread), the code before against this one",
            "",
            f"CPU class: {n.get('cpu_class', 'not recorded')}. CPU s = user + system of the whole command (GNU time).",
            "",
            "| code | allocator | audio s per s (median of steps 3 on) | first step s | whole command s | user s | system s "
            "| page faults | peak RSS MB | precision | load1 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name in ("before", "now, system allocator", "now"):
            r = results.get(f"job|{name}")
            if r:
                lines.append(
                    f"| {name} | {r.get('allocator', '')} | {r.get('audio_s_per_s')} | {r.get('first_step_s')} | "
                    f"{r.get('wall_s')} | {r.get('user_s', '')} | {r.get('system_s', '')} | {r.get('page_faults', '')} | "
                    f"{r.get('peak_rss_mb', '')} | {r.get('precision')} | {r.get('load1', '')} |"
                )
        if b.get("audio_s_per_s") and n.get("audio_s_per_s"):
            lines.append(f"\nSpeed-up of the whole training step: **{n['audio_s_per_s'] / b['audio_s_per_s']:.2f}x**.")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
