"""Quantisation-aware fine-tuning of a shipped CAN for int8, judged by the int8 quality rule.

The int8 model is onnxruntime's static QDQ model of ``benchmarks/int8.py`` (per-channel symmetric int8
weights, asymmetric 8-bit activations at every Conv and LeakyRelu, the input and 1x1 output convs
float: the ``ends-float`` variant). Post-training, that variant loses 0.39 PESQ-WB. Here the network is
first fine-tuned with the same quantisation simulated in its forward pass (torch's fake-quantise ops,
straight-through gradients), so that its weights learn to live with it:
- every int8 conv's weight is fake-quantised per output channel; the norm is frozen (batch statistics
  of the shipped model), so the folded conv of the ONNX graph quantises the same way;
- every int8 conv's input, its pre-activation (the folded conv's output) and the last int8 layer's
  output are fake-quantised per tensor at ranges that follow the batches (moving min/max);
- the loss is the deep feature loss against the *float* model's output on the same mixture
  (distillation): the rule asks for the float model's quality, not a new one.
The learned ranges become the QDQ model's activation ranges, so the int8 model is the one trained.
Mixtures come from the training split only (``hushnet.data``), never from the judged sets.

    python benchmarks/qat.py --steps 600 --threads 2 --tag=-feature    # train, build, judge: results/int8-qat-feature.json
    python benchmarks/qat.py --loss snr --lr 1e-4 --threads 2 --tag=-snr --work benchmarks/work/int8/qat-snr
    python benchmarks/qat.py --judge-only                             # build and judge the last checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import RESULTS, cpu_facts
from hushnet.denoiser import Denoiser
from hushnet.inference.engines import OnnxEngine, OpenVinoEngine
from hushnet.inference.networks import export_onnx
from hushnet.loss import FeatureLoss
from hushnet.model_dir import ONNX_FILE, fingerprint_metadata, load_model, resolve_model_dir, save_model
from int8 import (
    WORK,
    Variant,
    at_input_level,
    calibration_batches,
    quantize,
    scores_of,
    speeds,
    training_mixtures,
    verdict,
)

FLOAT_CONVS = (0, 14)  # the input conv (1 channel in) and the 1x1 output conv stay float
MOMENTUM = 0.01


class Range(torch.nn.Module):
    """A per-tensor activation range that follows the batches (moving min/max), and the asymmetric
    8-bit fake quantisation onnxruntime's QUInt8 applies at it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                low, high = x.detach().min().clamp(max=0), x.detach().max().clamp(min=0)
                if int(self.seen) == 0:
                    self.low.copy_(low)
                    self.high.copy_(high)
                else:
                    self.low.lerp_(low, MOMENTUM)
                    self.high.lerp_(high, MOMENTUM)
                self.seen += 1
        scale = float(max(float(self.high - self.low), 1e-8) / 255)
        zero_point = int(round(-float(self.low) / scale))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)


class PerChannelInt8(torch.nn.Module):
    """Symmetric per-output-channel int8 weight fake quantisation (a weight parametrisation)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # onnxruntime's symmetric QInt8: [-127, 127], scale max|w| / 127.
        scale = (weight.detach().abs().amax(dim=tuple(range(1, weight.dim()))) / 127).clamp_min(1e-12)
        zeros = torch.zeros(weight.shape[0], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zeros, 0, -127, 127)


def simulate_int8(model) -> list[tuple[str, int, Range]]:
    """Put the int8 model's quantisation into ``model``'s forward pass; its ranges as (where, index,
    range): "conv input" / "conv output" of conv ``index``, or "relu output" of LeakyReLU ``index``."""
    from torch.nn.utils import parametrize

    ranges: list[tuple[str, int, Range]] = []
    last = len(model.layers) - 1
    for index, layer in enumerate(model.layers):
        if index in FLOAT_CONVS:
            continue
        parametrize.register_parametrization(layer.conv, "weight", PerChannelInt8())
        layer.input_range, layer.pre_range = Range(), Range()
        ranges += [("conv input", index, layer.input_range), ("conv output", index, layer.pre_range)]
        layer.register_forward_pre_hook(lambda module, args: (module.input_range(args[0]),))

        def activate(self, z, scale, shift):
            return F.leaky_relu(self.pre_range(torch.addcmul(shift, z, scale)), self.negative_slope)

        layer.activate = types.MethodType(activate, layer)
    model.layers[last].output_range = Range()
    ranges.append(("relu output", last, model.layers[last].output_range))
    model.layers[last].register_forward_hook(lambda module, args, out: module.output_range(out))
    return ranges


def train(args, work: Path) -> None:
    teacher = load_model(args.model, kind="can").eval().requires_grad_(False)
    student = load_model(args.model, kind="can")
    student.eval()  # frozen norm statistics: the shipped model's, which the ONNX graph folds in
    ranges = simulate_int8(student)
    checkpoint = work / "checkpoint.pt"
    step = 0
    loss_fn = FeatureLoss(load_model("authors-lossnet", kind="lossnet"), 6, calibration_steps=args.calibration_steps)
    optimiser = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        student.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        loss_fn.load_state_dict(state["loss"])
        step = state["step"]
    for _, _, r in ranges:
        r.train()
    level = student.config.input_rms_db
    data = training_mixtures(args.steps * args.batch, args.seconds, seed=7)
    log = (work / "log.jsonl").open("a")
    started = time.monotonic()
    while step < args.steps and time.monotonic() - started < args.time_budget_minutes * 60:
        batch = torch.from_numpy(
            np.stack([at_input_level(data[step * args.batch + i]["noisy"], level) for i in range(args.batch)])
        )
        with torch.no_grad():
            target = teacher(batch)
        output = student(batch)
        if args.loss == "snr":  # the int8 model's output SNR against the float model's, in dB, negated
            loss = 10 * torch.log10(((output - target) ** 2).sum() / (target**2).sum().clamp_min(1e-12))
        else:
            distances = loss_fn.distances(output, target)
            if loss_fn.record(distances):
                loss_fn.finish_calibration()
            loss = (loss_fn.weights * distances).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimiser.step()
        step += 1
        log.write(
            json.dumps(
                {"step": step, "loss": round(float(loss.detach()), 4), "s": round(time.monotonic() - started, 1)}
            )
            + "\n"
        )
        log.flush()
        if step % 25 == 0 or step == args.steps:
            torch.save(
                {
                    "model": student.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "loss": loss_fn.state_dict(),
                    "step": step,
                },
                checkpoint,
            )
            print(f"step {step}: loss {float(loss):.4f} ({time.monotonic() - started:.0f} s)", flush=True)


def build(args, work: Path) -> tuple[Path, Path]:
    """The fine-tuned float weights as a model directory with model.onnx, and its int8 QDQ model."""
    import onnx
    from torch.nn.utils import parametrize

    student = load_model(args.model, kind="can")
    ranges = simulate_int8(student)
    state = torch.load(work / "checkpoint.pt", weights_only=True)
    student.load_state_dict(state["model"])
    for layer in student.layers:
        if parametrize.is_parametrized(layer.conv, "weight"):
            parametrize.remove_parametrizations(layer.conv, "weight", leave_parametrized=False)
    plain = load_model(args.model, kind="can")
    plain.load_state_dict({k: v for k, v in student.state_dict().items() if k in plain.state_dict()})
    directory = work / "model"
    shipped_card = resolve_model_dir(args.model) / "README.md"
    card = shipped_card.read_text() if shipped_card.is_file() else ""
    save_model(
        plain.eval(), directory, card + f"\n\nQuantisation-aware fine-tune of `{args.model}` ({state['step']} steps).\n"
    )
    source = export_onnx(plain.eval(), directory / ONNX_FILE, fingerprint_metadata(directory))
    graph = onnx.load(str(source)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    relus = [n for n in graph.node if n.op_type == "LeakyRelu"]
    # A conv's output and the LeakyRelu's input are one tensor; the LeakyRelu's output is the next conv's input.
    tensors = {
        "conv input": lambda i: convs[i].input[0],
        "conv output": lambda i: convs[i].output[0],
        "relu output": lambda i: relus[i].output[0],
    }
    learned = {tensors[where](index): {"learned": [float(r.low), float(r.high)]} for where, index, r in ranges}
    target = work / "qat-ends-float.onnx"
    # The one batch only satisfies onnxruntime's calibrator: every range is the learned one.
    quantize(source, target, Variant("qat-ends-float", FLOAT_CONVS, "learned", 8), learned, calibration_batches(1)[0])
    return directory, target


def judge(args, directory: Path, target: Path) -> dict:
    from hushnet.model_dir import read_config
    from hushnet.models.config import CANConfig

    config = CANConfig.from_dict(read_config(directory)["config"])
    shipped = resolve_model_dir(args.model) / ONNX_FILE
    systems = {
        "onnx float32 (shipped)": Denoiser(OnnxEngine(shipped, config, threads=1)),
        "onnx float32 (fine-tuned, before int8)": Denoiser(OnnxEngine(directory / ONNX_FILE, config, threads=1)),
        "onnx qat-ends-float": Denoiser(OnnxEngine(target, config, threads=1)),
        "openvino qat-ends-float": Denoiser(OpenVinoEngine(target, config, threads=1, precision="float32")),
    }
    sets = ("valentini", "real")
    reference = scores_of(f"{args.model}-onnx float32", systems["onnx float32 (shipped)"], sets)
    record = {"model": args.model, "cpu": cpu_facts(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    record["steps"] = torch.load(Path(args.work) / "checkpoint.pt", weights_only=True)["step"]
    record.update(loss=args.loss, lr=args.lr, batch=args.batch, seconds=args.seconds)
    record["quality"] = {}
    for name, key in (
        ("onnx float32 (fine-tuned, before int8)", "qat-finetuned-float"),
        ("onnx qat-ends-float", "qat-int8"),
    ):
        (WORK / "scores" / f"{key}.json").unlink(missing_ok=True)  # a rebuilt model: its scores are new
        record["quality"][name] = verdict(scores_of(key, systems[name], sets), reference)
        print(name, record["quality"][name], flush=True)
    load = os.getloadavg()
    record["cpu_s_per_audio_s"] = speeds(
        {k: systems[k] for k in ("onnx float32 (shipped)", "onnx qat-ends-float", "openvino qat-ends-float")}
    )
    record["load_average"] = [round(x, 2) for x in load + os.getloadavg()]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hushnet-dfl")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--calibration-steps", type=int, default=10)
    parser.add_argument(
        "--loss",
        choices=["feature", "snr"],
        default="feature",
        help="distil with the deep feature loss, or with the output SNR against the float model",
    )
    parser.add_argument("--time-budget-minutes", type=float, default=40.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the fine-tune (judging: 1)")
    parser.add_argument("--judge-only", action="store_true")
    parser.add_argument("--tag", default="", help="suffix of the result file, results/int8-qatTAG.json")
    parser.add_argument("--work", default=str(WORK / "qat"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not args.judge_only:
        train(args, work)
    torch.set_num_threads(1)
    directory, target = build(args, work)
    record = judge(args, directory, target)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"int8-qat{args.tag}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
