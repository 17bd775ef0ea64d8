"""Training throughput (seconds of audio per second) and peak memory of one training step.

Each configuration runs in its own process (so its peak RSS is its own): the 64-channel CAN with the
deep feature loss through the authors' loss network, against the variants that the speed work of
issue 7 compares: gradients through the clean branch of the loss network (the naive way), bf16
autocast, 32 channels, batch-mode normalisation, the waveform L1 loss alone.

    python benchmarks/training.py                 # all variants, CPU, writes results/training.json
    python benchmarks/training.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

VARIANTS = {
    "64ch feature loss (default)": {},
    "64ch feature loss, clean branch with gradients": {"naive_clean_branch": True},
    "64ch feature loss, bf16 autocast": {"autocast": True},
    "64ch feature loss, batch norm": {"norm": "batch"},
    "32ch feature loss": {"channels": 32},
    "64ch L1 only": {"feature": 0.0, "l1": 1.0},
}


def measure(options: dict) -> dict:
    """Run warm-up + timed steps of one configuration in this process; returns throughput and memory."""
    import torch

    from hushnet.model_dir import load_model
    from hushnet.loss import LossConfig, TrainingLoss
    from hushnet.models.can import CAN, CANConfig

    torch.manual_seed(0)
    device = torch.device(options["device"])
    if options.get("threads"):
        torch.set_num_threads(options["threads"])
    model = CAN(CANConfig(channels=options.get("channels", 64), norm=options.get("norm", "per-input"))).to(device)
    model.init_identity()
    loss_config = LossConfig(feature=options.get("feature", 1.0), l1=options.get("l1", 0.0), calibration_steps=0)
    lossnet = load_model("authors-lossnet", kind="lossnet") if loss_config.feature else None
    loss = TrainingLoss(loss_config, lossnet).to(device)
    if options.get("naive_clean_branch") and loss.feature is not None:
        feature = loss.feature

        def distances(denoised, clean):  # the clean branch inside the autograd graph, as a naive port does
            targets = feature.lossnet(clean.requires_grad_(True), feature.layers)
            outputs = feature.lossnet(denoised, feature.layers)
            return torch.stack([(o - t).abs().mean() for o, t in zip(outputs, targets)])

        feature.distances = distances
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch, seconds = options["batch"], options["seconds"]
    samples = int(seconds * 16000)
    generator = torch.Generator().manual_seed(0)
    noisy = (0.05 * torch.randn(batch, samples, generator=generator)).to(device)
    clean = (0.05 * torch.randn(batch, samples, generator=generator)).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(options.get("autocast")))

    def step() -> None:
        with autocast:
            denoised = model(noisy)
            total, _ = loss(denoised.float(), clean)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(options["steps"]):
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    median = sorted(times)[len(times) // 2]
    result = {
        "step_s": round(median, 3),
        "audio_s_per_s": round(batch * seconds / median, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0, help="crop length per example")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="*", help="variant names to run (default all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    results = {}
    for name, variant in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        options = {"device": args.device, "batch": args.batch, "seconds": args.seconds, "steps": args.steps, "threads": args.threads, **variant}
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(options)], capture_output=True, text=True)
        if done.returncode != 0:
            results[name] = {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
        else:
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:50s} {results[name]}", flush=True)
    import torch

    RESULTS.mkdir(exist_ok=True)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    record = {"device": args.device, "device_name": device_name, "threads": args.threads or torch.get_num_threads(),
              "batch": args.batch, "seconds_per_example": args.seconds, "timed_steps": args.steps, "torch": torch.__version__, "results": results}
    path = RESULTS / ("training.json" if args.device == "cpu" else f"training_{args.device.split(':')[0]}.json")
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
