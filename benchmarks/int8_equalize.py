"""Does equalising the channels before quantising save int8? Output SNR of the ``ends-float`` int8 model
after per-channel rescaling between consecutive convs, against the float model.

onnxruntime quantises activations per tensor: one scale for all 64 channels of a conv's output.
After the norm is folded in, those channels span very different ranges, so the small ones get few
levels. LeakyReLU is positively homogeneous (f(s x) = s f(x) for s > 0), so scaling output channel c
of conv i by 1/s and input channel c of conv i+1 by s leaves the network's function unchanged while
evening out the ranges (cross-layer equalisation, Nagel et al. 2019). Here ``s`` follows each channel's
activation range to the power ``alpha`` (0: unchanged; 1: equal activation ranges, at the cost of the
next conv's per-channel weight ranges). onnxruntime's quantiser has no such step, so it is done
here, on the float ONNX graph's initialisers, with numpy.

    python benchmarks/int8_equalize.py --alphas 0 0.5 0.75 1     # results/int8-equalize.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from common import RESULTS, cpu_facts
from hushnet.model_dir import ONNX_FILE, resolve_model_dir
from int8 import VARIANTS, WORK, Variant, activation_ranges, calibration_batches, ort_session, output_snr, quantize


def channel_peaks(source: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    """Per conv (graph order), the largest |value| of each output channel over ``batches``."""
    model = onnx.load(str(source))
    outputs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    for name in outputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort_session(model.SerializeToString())
    peaks = [np.zeros(0)] * len(outputs)
    for batch in batches:
        for index, value in enumerate(session.run(outputs, {"audio": batch})):
            peak = np.abs(value).max(axis=(0, 2))
            peaks[index] = peak if peaks[index].size == 0 else np.maximum(peaks[index], peak)
    return peaks


def equalized(source: Path, target: Path, peaks: list[np.ndarray], alpha: float, limit: float = 32.0) -> Path:
    """``source`` with output channel c of conv i divided by s and input channel c of conv i+1
    multiplied by s, s = (peak_c / median peak) ** alpha, for every pair of consecutive convs."""
    model = onnx.load(str(source))
    initializers = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    arrays = {name: numpy_helper.to_array(initializers[name]).copy() for n in convs for name in n.input[1:]}
    for index in range(len(convs) - 1):
        weight, bias = convs[index].input[1], convs[index].input[2]
        following = convs[index + 1].input[1]
        peak = np.maximum(peaks[index], 1e-12)
        scale = np.clip((peak / np.median(peak)) ** alpha, 1 / limit, limit).astype(np.float32)
        arrays[weight] /= scale[:, None, None]
        arrays[bias] /= scale
        arrays[following] *= scale[None, :, None]
    for name, value in arrays.items():
        initializers[name].CopyFrom(numpy_helper.from_array(value, name))
    onnx.save(model, str(target))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hushnet-dfl")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 0.75, 1.0])
    parser.add_argument("--ranges", nargs="+", default=["minmax", "0.001"], help="activation ranges to try")
    args = parser.parse_args()
    source = resolve_model_dir(args.model) / ONNX_FILE
    work = WORK / args.model / "equalize"
    work.mkdir(parents=True, exist_ok=True)
    calibration = calibration_batches(16)
    held_out = calibration_batches(24)[16:]
    reference = ort_session(str(source))
    references = [reference.run(None, {"audio": batch})[0] for batch in held_out]
    peaks = channel_peaks(source, calibration)
    record: dict = {"model": args.model, "cpu": cpu_facts(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    record["spread"] = {
        "conv outputs: max / min channel peak, median over convs": round(
            float(np.median([p.max() / max(p.min(), 1e-12) for p in peaks])), 1
        )
    }
    record["snr_db"] = {}
    for alpha in args.alphas:
        model = equalized(source, work / f"alpha{alpha:g}.onnx", peaks, alpha)
        check = output_snr(model, held_out, references)
        ranges = activation_ranges(model, calibration)
        for activation_range in args.ranges:
            variant = Variant(f"ends-float-{activation_range}", VARIANTS["ends-float"].float_convs, activation_range, 8)
            target = work / f"alpha{alpha:g}-{activation_range}.onnx"
            quantize(model, target, variant, ranges, calibration[0])
            snr = output_snr(target, held_out, references)
            record["snr_db"][f"alpha {alpha:g}, ranges {activation_range}"] = round(snr, 2)
            print(
                f"alpha {alpha:g} (float equalised vs float: {check:.1f} dB), {activation_range}: {snr:.2f} dB",
                flush=True,
            )
    (RESULTS / "int8-equalize.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
