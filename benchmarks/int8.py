"""Can int8 keep the quality rule? Post-training static quantisation of a shipped model's ``model.onnx``
(onnxruntime ``quantize_static``, QDQ, per-channel int8 weights, or NNCF), mixed with float layers, calibrated on
training-split mixtures only (never on the sets it is judged on), then judged by the quality rule against
the float32 model: PESQ-WB within 0.02 and STOI within 0.002 on ``valentini_test_dev`` (25 pairs, paired
bootstrap 95 % intervals), DNSMOS OVRL within 0.02 on ``real_noisy_dev`` (16 recordings), and timed in
process (CPU seconds per audio second, 1 thread, alternating repeats, medians).

    python benchmarks/int8.py [--model hushnet-dfl] [--variants all-int8 ...] [--engines onnx openvino]
    python benchmarks/int8.py --search 6      # greedy: which layers to keep float, by output SNR on training mixtures
    python benchmarks/int8.py --snr --variants ...   # output SNR of built variants, and of int8 weights alone
    python benchmarks/int8.py --two-part      # two-part int8 activations through ConvInteger: SNR and cost
    python benchmarks/int8.py --report        # results/int8.md's tables from the result files

Variants (``VARIANTS``): which convolutions stay float (index 0 = the 1-channel input conv, 14 = the 1x1
output conv), which activation range (min/max or a percentile of the calibration values) and the activation
type (8-bit, or 16-bit where int8 activations lose too much). ``--search`` picks float layers greedily by
the SNR of the int8 output against the float output on held-out training mixtures (training split too).

Results: ``benchmarks/results/int8-*.json`` (``--tag``) and ``int8.md``; per-file scores cached in
``benchmarks/work/int8/scores`` (delete a system's file after rebuilding its model). ``int8.json`` is the
earlier static int8 run on the AMX machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from common import RESULTS, SHARED, cpu_facts
from common import WORK as BENCH_WORK
from hushnet.denoiser import Denoiser
from hushnet.evaluate import match_folders
from hushnet.inference.engines import OnnxEngine, OpenVinoEngine
from hushnet.metrics import dnsmos, paired_bootstrap, pesq_score
from hushnet.model_dir import ONNX_FILE, read_config, resolve_model_dir
from hushnet.models.config import CANConfig

WORK = BENCH_WORK / "int8"
VALENTINI = SHARED / "data" / "valentini_test_dev"
REAL = SHARED / "data" / "real_noisy_dev"
TOLERANCE = {"pesq_wb": 0.02, "stoi": 0.002, "dnsmos_ovrl": 0.02}


@dataclass(frozen=True)
class Variant:
    """One quantised model: conv indices kept float, activation range, activation bits."""

    name: str
    float_convs: tuple[int, ...]
    activation_range: str = "0.001"  # "minmax" or the percentile clipped at each end
    activation_bits: int = 8
    what: str = ""
    tool: str = "onnxruntime"  # or "nncf": NNCF's post-training quantisation (QDQ on conv inputs only)


VARIANTS = {
    v.name: v
    for v in (
        Variant("all-int8", (), "minmax", 8, "every conv int8, min/max activation ranges (the earlier static int8)"),
        Variant("ends-float", (0, 14), "0.001", 8, "input and 1x1 output conv float, 0.001 % percentile ranges"),
        Variant("a16w8", (), "minmax", 16, "every conv with int8 weights, 16-bit activations"),
        Variant(
            "greedy-8-float",
            (0, 1, 2, 3, 4, 5, 13, 14),
            "0.001",
            8,
            "the 8 convs the greedy search keeps float (output SNR on training mixtures), the other 7 int8",
        ),
        Variant(
            "nncf-ends-float",
            (0, 14),
            "minmax",
            8,
            "NNCF PTQ (mixed preset, bias correction), input and output conv ignored (float)",
            "nncf",
        ),
    )
}


def training_mixtures(items: int, seconds: float = 4.0, seed: int = 123):
    """``items`` mixtures of ``seconds`` from the training split of the shared data (never the judged sets)."""
    from hushnet.data.mixing import MixingConfig, MixtureDataset
    from hushnet.data.sources import impulse_responses, noise_clips, speech_utterances
    from hushnet.data.splits import select

    root = SHARED / "data"
    return MixtureDataset(
        select(speech_utterances(root / "speech"), "train"),
        select(noise_clips(root / "noise"), "train"),
        select(impulse_responses(root / "rir"), "train"),
        MixingConfig(segment_seconds=seconds),
        seed=seed,
        length=items,
    )


def at_input_level(noisy: np.ndarray, rms_db: float = -23.0) -> np.ndarray:
    """``noisy`` scaled to ``rms_db`` dBFS RMS (the shipped models' input level), float32."""
    return (noisy * 10 ** (rms_db / 20) / max(float(np.sqrt(np.mean(noisy**2))), 1e-5)).astype(np.float32)


def calibration_batches(items: int, seconds: float = 4.0, seed: int = 123) -> list[np.ndarray]:
    """Training-split mixtures at the model's input level (-23 dBFS), one per batch."""
    dataset = training_mixtures(items, seconds, seed)
    return [at_input_level(dataset[index]["noisy"])[None] for index in range(items)]


def ort_session(model):
    """An onnxruntime CPU session of ``model`` (a path or serialised bytes), one thread, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def activation_tensors(source: Path) -> list[str]:
    """The inputs and outputs of every Conv and LeakyRelu: the tensors QDQ quantisation puts ranges on."""
    import onnx

    nodes = [n for n in onnx.load(str(source)).graph.node if n.op_type in ("Conv", "LeakyRelu")]
    return sorted({n.input[0] for n in nodes} | {n.output[0] for n in nodes})


def activation_ranges(source: Path, batches: list[np.ndarray], per_batch: int = 400_000) -> dict[str, dict]:
    """Per activation tensor: its min/max over the calibration batches and its percentile ranges (a
    random subsample of each batch's values keeps the memory small: 16 batches x 30 tensors)."""
    import onnx

    tensors = activation_tensors(source)
    model = onnx.load(str(source))
    present = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
    for name in tensors:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort_session(model.SerializeToString())
    rng = np.random.default_rng(0)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in tensors}
    for batch in batches:
        for name, value in zip(tensors, session.run(tensors, {"audio": batch})):
            flat = value.ravel()
            samples[name].append(flat[rng.integers(0, flat.size, size=min(flat.size, per_batch))])
    ranges = {}
    for name in tensors:
        values = np.concatenate(samples[name])
        ranges[name] = {"minmax": [float(values.min()), float(values.max())]}
        for percent in ("0.001", "0.01", "0.1"):
            p = float(percent)
            ranges[name][percent] = [
                float(min(np.percentile(values, p), 0.0)),
                float(max(np.percentile(values, 100 - p), 0.0)),
            ]
    return ranges


def quantize(source: Path, target: Path, variant: Variant, ranges: dict[str, dict], batch: np.ndarray) -> None:
    """Write ``variant`` of ``source`` to ``target``: onnxruntime QDQ, per-channel symmetric int8 weights,
    asymmetric activations at the precomputed ``ranges`` (``TensorQuantOverrides``; the one ``batch``
    only satisfies the calibrator), the convs of ``variant.float_convs`` and their activations left float."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([batch])

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"audio": item}

    graph = onnx.load(str(source)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    activations = [n.name for n in graph.node if n.op_type == "LeakyRelu"]
    exclude = []
    for index in variant.float_convs:
        exclude.append(convs[index])
        if index < len(activations):
            exclude.append(activations[index])
    overrides = {
        name: [{"rmin": np.float32(r[variant.activation_range][0]), "rmax": np.float32(r[variant.activation_range][1])}]
        for name, r in ranges.items()
    }
    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8 if variant.activation_bits == 8 else QuantType.QUInt16,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        extra_options={"TensorQuantOverrides": overrides},
    )


def quantize_nncf(source: Path, target: Path, variant: Variant, batches: list[np.ndarray]) -> None:
    """Write ``variant`` of ``source`` with NNCF's post-training quantisation (ONNX backend): asymmetric
    8-bit activations on the conv inputs (the runtimes fuse the activation into the conv), per-channel
    symmetric int8 weights, full bias correction, the convs of ``variant.float_convs`` ignored."""
    import nncf
    import onnx

    model = onnx.load(str(source))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(batches, lambda batch: {"audio": batch}),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(batches),
        fast_bias_correction=False,
        ignored_scope=nncf.IgnoredScope(names=[convs[i] for i in variant.float_convs]),
    )
    onnx.save(quantized, str(target))


def two_part(source: Path, target: Path, ranges: dict[str, dict], convs: tuple[int, ...] = tuple(range(1, 14))) -> None:
    """Write ``source`` with each conv of ``convs`` on two-part int8 activations, x ~ s1 q1 + s2 q2 (q1 the
    8-bit code of x at its calibrated min/max, q2 the 8-bit code of the residual at s1 / 254), each part
    through ``ConvInteger`` with the same per-channel int8 weights, summed in float: about 16-bit
    activations from int8 arithmetic, with no 8-bit requantisation of the conv output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    all_convs = [n for n in graph.node if n.op_type == "Conv"]

    def const(name: str, value) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    nodes = []
    for node in graph.node:
        if node.op_type != "Conv" or all_convs.index(node) not in convs:
            nodes.append(node)
            continue
        p, x = f"two_part_{all_convs.index(node)}_", node.input[0]
        low, high = min(ranges[x]["minmax"][0], 0.0), max(ranges[x]["minmax"][1], 0.0)
        s1 = (high - low) / 255
        z1 = int(np.clip(round(-low / s1), 0, 255))
        w = numpy_helper.to_array(weights[node.input[1]])
        bias = numpy_helper.to_array(weights[node.input[2]])
        sw = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127
        wq = np.clip(np.round(w / sw[:, None, None]), -127, 127).astype(np.int8)
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        S1, Z1 = const(p + "s1", np.float32(s1)), const(p + "z1", np.uint8(z1))
        S2, Z2 = const(p + "s2", np.float32(s1 / 254)), const(p + "z2", np.uint8(128))
        W, WZ = const(p + "w", wq), const(p + "wz", np.int8(0))
        A1 = const(p + "a1", (s1 * sw).astype(np.float32).reshape(1, -1, 1))
        A2 = const(p + "a2", (s1 / 254 * sw).astype(np.float32).reshape(1, -1, 1))
        B = const(p + "b", bias.astype(np.float32).reshape(1, -1, 1))
        nodes += [
            helper.make_node("QuantizeLinear", [x, S1, Z1], [p + "q1"]),
            helper.make_node("DequantizeLinear", [p + "q1", S1, Z1], [p + "x1"]),
            helper.make_node("Sub", [x, p + "x1"], [p + "r"]),
            helper.make_node("QuantizeLinear", [p + "r", S2, Z2], [p + "q2"]),
            helper.make_node("ConvInteger", [p + "q1", W, Z1, WZ], [p + "y1"], **attributes),
            helper.make_node("ConvInteger", [p + "q2", W, Z2, WZ], [p + "y2"], **attributes),
            helper.make_node("Cast", [p + "y1"], [p + "f1"], to=TensorProto.FLOAT),
            helper.make_node("Cast", [p + "y2"], [p + "f2"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "f1", A1], [p + "m1"]),
            helper.make_node("Mul", [p + "f2", A2], [p + "m2"]),
            helper.make_node("Add", [p + "m1", p + "m2"], [p + "sum"]),
            helper.make_node("Add", [p + "sum", B], list(node.output)),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(target))


def output_snr(path: Path, batches: list[np.ndarray], references: list[np.ndarray]) -> float:
    """SNR (dB) of a model's outputs against the float model's ``references`` over ``batches``."""
    session = ort_session(str(path))
    signal = error = 0.0
    for batch, reference in zip(batches, references):
        out = session.run(None, {"audio": batch})[0]
        signal += float(np.sum(reference.astype(np.float64) ** 2))
        error += float(np.sum((out.astype(np.float64) - reference) ** 2))
    return 10 * np.log10(signal / max(error, 1e-30))


def valentini_scores(denoiser: Denoiser) -> dict[str, list[float]]:
    """Per-file PESQ-WB and STOI on valentini_test_dev (file order of ``match_folders``)."""
    from pystoi import stoi

    scores: dict[str, list[float]] = {"pesq_wb": [], "stoi": []}
    for pair in match_folders(VALENTINI / "clean", VALENTINI / "noisy").pairs:
        clean, rate = sf.read(pair.clean, dtype="float32")
        noisy, _ = sf.read(pair.noisy, dtype="float32")
        enhanced = denoiser.denoise(noisy, rate)
        scores["pesq_wb"].append(pesq_score(clean, enhanced, rate))
        scores["stoi"].append(float(stoi(clean, enhanced, rate, extended=False)))
    return scores


def real_scores(denoiser: Denoiser) -> dict[str, list[float]]:
    """Per-file DNSMOS P.835 OVRL on real_noisy_dev (sorted file names)."""
    values = []
    for path in sorted(REAL.glob("*.flac")):
        noisy, rate = sf.read(path, dtype="float32")
        values.append(dnsmos(denoiser.denoise(noisy, rate), rate)["dnsmos_ovrl"])
    return {"dnsmos_ovrl": values}


def cpu_seconds(denoiser: Denoiser, signal: np.ndarray) -> float:
    """CPU seconds (user+sys of this process) of one ``denoise`` of ``signal``, per audio second."""
    started = time.process_time()
    denoiser.denoise(signal, 16000)
    return (time.process_time() - started) / (signal.size / 16000)


def speeds(denoisers: dict[str, Denoiser], seconds: float = 60.0, repeats: int = 3) -> dict[str, float]:
    """Median CPU s per audio s of each denoiser, the systems alternating within each repeat (one warm-up call each)."""
    signal = (0.05 * np.random.default_rng(0).standard_normal(int(seconds * 16000))).astype(np.float32)
    spent: dict[str, list[float]] = {name: [] for name in denoisers}
    for denoiser in denoisers.values():
        denoiser.denoise(signal[:16000], 16000)
    for _ in range(repeats):
        for name, denoiser in denoisers.items():
            spent[name].append(cpu_seconds(denoiser, signal))
    return {name: round(statistics.median(values), 4) for name, values in spent.items()}


def parse_variant(text: str) -> Variant:
    """A named variant, or ``float=0,1,14/range=0.001/bits=8`` for any other mix."""
    if text in VARIANTS:
        return VARIANTS[text]
    fields = dict(part.split("=", 1) for part in text.split("/"))
    convs = tuple(int(i) for i in fields.get("float", "").split(",") if i)
    return Variant(
        text,
        convs,
        fields.get("range", "0.001"),
        int(fields.get("bits", "8")),
        f"convs {', '.join(map(str, convs)) or 'none'} float, {fields.get('range', '0.001')} ranges, "
        f"{fields.get('bits', '8')}-bit activations",
    )


def search(source: Path, ranges: dict, calibration: list[np.ndarray], steps: int, activation_range: str) -> list[dict]:
    """Greedy: starting from the input and output convs float, keep one more conv float per step, the one
    whose float-ness raises the output SNR (against float32, held-out training mixtures) most."""
    held_out = calibration_batches(24)[16:]  # items 16-23 of the same training-split generator
    reference = ort_session(str(source))
    references = [reference.run(None, {"audio": b})[0] for b in held_out]
    kept, steps_log = [0, 14], []
    target = WORK / "search.onnx"
    quantize(source, target, Variant("s", tuple(kept), activation_range), ranges, calibration[0])
    steps_log.append({"float_convs": list(kept), "snr_db": round(output_snr(target, held_out, references), 2)})
    print(steps_log[-1], flush=True)
    for _ in range(steps):
        tried = {}
        for index in range(1, 14):
            if index in kept:
                continue
            quantize(source, target, Variant("s", tuple(kept + [index]), activation_range), ranges, calibration[0])
            tried[index] = output_snr(target, held_out, references)
        best = max(tried, key=tried.get)
        kept.append(best)
        steps_log.append(
            {
                "float_convs": sorted(kept),
                "snr_db": round(tried[best], 2),
                "tried": {k: round(v, 2) for k, v in tried.items()},
            }
        )
        print(steps_log[-1], flush=True)
    return steps_log


def weights_only(source: Path, target: Path, convs: tuple[int, ...] | None = None) -> None:
    """A float model whose conv weights (all, or those of ``convs``) are rounded to per-channel symmetric
    int8 steps: how much the int8 weights alone cost, with every activation float."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    weights = {i.name: i for i in model.graph.initializer}
    for index, node in enumerate(n for n in model.graph.node if n.op_type == "Conv"):
        if convs is not None and index not in convs:
            continue
        w = numpy_helper.to_array(weights[node.input[1]])
        step = np.abs(w).reshape(w.shape[0], -1).max(axis=1).reshape(-1, 1, 1) / 127
        weights[node.input[1]].CopyFrom(
            numpy_helper.from_array((np.round(w / step) * step).astype(np.float32), node.input[1])
        )
    onnx.save(model, str(target))


def snr_table(source: Path, work: Path, names: list[str]) -> dict[str, float]:
    """Output SNR against float32 on held-out training mixtures: the built variants, then int8 weights alone."""
    held_out = calibration_batches(24)[16:]
    reference = ort_session(str(source))
    references = [reference.run(None, {"audio": b})[0] for b in held_out]
    table = {}
    for name in names:
        table[name] = round(
            output_snr(work / f"{name.replace('/', '_').replace('=', '-')}.onnx", held_out, references), 2
        )
        print(name, table[name], flush=True)
    target = work / "weights-only.onnx"
    for convs in [None, *((i,) for i in range(15))]:
        weights_only(source, target, convs)
        key = "int8 weights only, all convs" if convs is None else f"int8 weights only, conv {convs[0]}"
        table[key] = round(output_snr(target, held_out, references), 2)
        print(key, table[key], flush=True)
    return table


def scores_of(name: str, denoiser: Denoiser, sets: tuple[str, ...]) -> dict[str, list[float]]:
    """Per-file scores of a system (cached in WORK/scores/NAME.json, which a rebuilt model must delete)."""
    cache = WORK / "scores" / f"{name.replace('/', '_')}.json"
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    if "valentini" in sets and "pesq_wb" not in cached:
        cached.update(valentini_scores(denoiser))
    if "real" in sets and "dnsmos_ovrl" not in cached:
        cached.update(real_scores(denoiser))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(cached))
    return cached


def verdict(scores: dict[str, list[float]], reference: dict[str, list[float]]) -> dict:
    """Each metric's mean difference to float32 with its paired bootstrap 95 % interval, and the rule's verdict."""
    out, misses = {}, []
    for metric, allowed in TOLERANCE.items():
        if metric not in scores:
            continue
        d = paired_bootstrap(scores[metric], reference[metric])
        out[metric] = {
            "mean": round(float(np.nanmean(scores[metric])), 4),
            "delta": round(d.mean, 4),
            "low": round(d.low, 4),
            "high": round(d.high, 4),
        }
        if abs(d.mean) > allowed:
            misses.append(f"{metric} by {abs(d.mean) - allowed:.4f}")
    complete = all(m in scores for m in TOLERANCE)
    out["rule"] = ("misses: " + ", ".join(misses)) if misses else ("meets" if complete else "pending")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hushnet-dfl")
    parser.add_argument("--calibration-items", type=int, default=16)
    parser.add_argument(
        "--variants", nargs="*", default=list(VARIANTS), help="[ENGINE,ENGINE:]VARIANT (default engines: --engines)"
    )
    parser.add_argument("--engines", nargs="*", default=["onnx"], choices=["onnx", "openvino"])
    parser.add_argument("--sets", nargs="*", default=["valentini", "real"], choices=["valentini", "real"])
    parser.add_argument("--search", type=int, default=0, metavar="STEPS", help="greedy float-layer search, then stop")
    parser.add_argument("--search-range", default="0.001")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--two-part", action="store_true", help="two-part int8 activations (ConvInteger): SNR and cost")
    parser.add_argument("--snr", action="store_true", help="output SNR of the built --variants on training mixtures")
    parser.add_argument("--no-quality", action="store_true", help="timings only")
    parser.add_argument("--tag", default="", help="suffix of the result files (int8TAG.{md,json})")
    args = parser.parse_args()
    directory = resolve_model_dir(args.model)
    config = CANConfig.from_dict(read_config(directory)["config"])
    source = directory / ONNX_FILE
    work = WORK / args.model
    work.mkdir(parents=True, exist_ok=True)
    calibration = calibration_batches(args.calibration_items)
    ranges_file = work / f"ranges-{args.calibration_items}.json"
    if not ranges_file.is_file():
        ranges_file.write_text(json.dumps(activation_ranges(source, calibration)))
    ranges = json.loads(ranges_file.read_text())
    if args.two_part:
        target = work / "two-part.onnx"
        two_part(source, target, ranges)
        held_out = calibration_batches(24)[16:]
        reference = ort_session(str(source))
        snr = output_snr(target, held_out, [reference.run(None, {"audio": b})[0] for b in held_out])
        pair = {
            "onnx float32": Denoiser(OnnxEngine(source, config, threads=1)),
            "onnx two-part": Denoiser(OnnxEngine(target, config, threads=1)),
            "openvino float32": Denoiser(OpenVinoEngine(source, config, threads=1, precision="float32")),
            "openvino two-part": Denoiser(OpenVinoEngine(target, config, threads=1, precision="float32")),
        }
        load_before = os.getloadavg()
        record = {
            "output_snr_db": round(snr, 2),
            "cpu_s_per_audio_s": speeds(pair),
            "load_average": [round(x, 2) for x in load_before + os.getloadavg()],
            "cpu": cpu_facts(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        (RESULTS / "int8-two-part.json").write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(record))
        return
    if args.snr:
        table = snr_table(source, work, args.variants)
        (RESULTS / "int8-snr.json").write_text(json.dumps(table, indent=1) + "\n")
        return
    if args.search:
        log = search(source, ranges, calibration, args.search, args.search_range)
        (work / f"search-{args.search_range}.json").write_text(json.dumps(log, indent=1) + "\n")
        return
    systems: dict[str, Denoiser] = {}
    for engine in ("onnx", "openvino"):
        systems[f"{engine} float32"] = Denoiser(
            OnnxEngine(source, config, threads=1)
            if engine == "onnx"
            else OpenVinoEngine(source, config, threads=1, precision="float32")
        )
    files = {}
    for text in args.variants:
        engines, _, text = text.rpartition(":")
        engines = engines.split(",") if engines else args.engines
        variant = parse_variant(text)
        path = work / f"{variant.name.replace('/', '_').replace('=', '-')}.onnx"
        if not path.is_file():
            if variant.tool == "nncf":
                quantize_nncf(source, path, variant, calibration)
            else:
                quantize(source, path, variant, ranges, calibration[0])
        files[variant.name] = path
        for engine in engines:
            systems[f"{engine} {variant.name}"] = Denoiser(
                OnnxEngine(path, config, threads=1)
                if engine == "onnx"
                else OpenVinoEngine(path, config, threads=1, precision="float32")
            )
    reference = (
        {} if args.no_quality else scores_of(f"{args.model} onnx float32", systems["onnx float32"], tuple(args.sets))
    )
    rows = {}
    for name, denoiser in systems.items():
        if args.no_quality:
            break
        if name == "openvino float32":  # the same sums as onnxruntime's to float precision (results/engines.md)
            continue
        started = time.time()
        scores = scores_of(f"{args.model} {name}", denoiser, tuple(args.sets))
        rows[name] = verdict(scores, reference)
        print(name, json.dumps(rows[name]), f"({time.time() - started:.0f} s)", flush=True)
    load_before = os.getloadavg()
    cost = {} if args.no_speed else speeds(systems)
    record = {
        "model": args.model,
        "calibration": f"{args.calibration_items} training-split mixtures of 4 s (seed 123)",
        "cpu": cpu_facts(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "load_average": [round(x, 2) for x in load_before] + [round(x, 2) for x in os.getloadavg()],
        "cpu_s_per_audio_s": cost,
        "rule": rows,
        "variants": {t: parse_variant(t.rpartition(":")[2]).__dict__ for t in args.variants},
        "bytes": {name: path.stat().st_size for name, path in files.items()} | {"float32": source.stat().st_size},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"int8{args.tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"cpu_s_per_audio_s": cost, "load": record["load_average"]}))


def report(quality: list[Path], timings: list[Path]) -> str:
    """``int8.md`` from the result files of the quality runs and the timing runs."""
    lines = [
        "# int8 for `hushnet-dfl`: post-training quantisation against the quality rule",
        "",
        "`python benchmarks/int8.py` (the commands below). Calibration: 16 training-split mixtures of 4 s (seed 123;",
        "`hushnet.data.mixing`), never the judged sets. Rule, against onnxruntime float32: PESQ-WB within 0.02 and STOI",
        "within 0.002 on `valentini_test_dev` (25 pairs; mean difference with its paired bootstrap 95 % interval,",
        "`hushnet.metrics.paired_bootstrap`), DNSMOS OVRL within 0.02 on `real_noisy_dev` (16 recordings).",
        "Scored in process as `benchmarks/engines.py` does (PESQ-WB and STOI of the float output against the clean file).",
        "",
        "Commands (1 thread each, `OMP_NUM_THREADS=1`):",
        "",
        "    python benchmarks/int8.py --variants a16w8 ends-float --no-speed                      # int8-quality1.json",
        "    python benchmarks/int8.py --variants onnx:all-int8 openvino:nncf-ends-float onnx:greedy-8-float \\",
        "        --no-speed --tag=-quality2                                                        # int8-quality2.json",
        "    python benchmarks/int8.py --variants onnx,openvino:all-int8 openvino:nncf-ends-float \\",
        "        onnx,openvino:a16w8 onnx:greedy-8-float --no-quality --tag=-speed-native          # int8-speed-native.json",
        "    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/int8.py --variants openvino:all-int8 \\",
        "        openvino:nncf-ends-float --no-quality --tag=-speed-avx2                           # int8-speed-avx2.json",
        "    python benchmarks/int8.py --snr --variants all-int8 ends-float greedy-8-float nncf-ends-float a16w8",
        "    python benchmarks/int8.py --search 6                                                  # the greedy search",
        "    python benchmarks/int8.py --two-part                                                  # int8-two-part.json",
        "    python benchmarks/int8.py --report                                                    # this file's tables",
        "",
        "| variant | engine | what | PESQ-WB (delta [95 % CI]) | STOI (delta [95 % CI]) | DNSMOS OVRL (delta [95 % CI]) | rule |",
        "|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for path in quality:
        record = json.loads(path.read_text())
        for system, row in record["rule"].items():
            if system in seen:  # the float32 reference of every run
                continue
            seen.add(system)
            engine, name = system.split(" ", 1)
            variants = {v["name"]: v for v in record["variants"].values()}
            what = variants.get(name, {}).get("what", "reference" if name == "float32" else "")
            cells = [
                f"{row[m]['mean']:.4f} ({row[m]['delta']:+.4f} [{row[m]['low']:+.4f}, {row[m]['high']:+.4f}])"
                if m in row
                else "-"
                for m in TOLERANCE
            ]
            lines.append(f"| {name} | {engine} | {what} | " + " | ".join(cells) + f" | {row['rule']} |")
    lines += [
        "",
        "Load average (1, 5, 15 min) at the end of each quality run (they time nothing): "
        + "; ".join(f"`{path.name}` {json.loads(path.read_text())['load_average'][3:]}" for path in quality)
        + ".",
    ]
    snr_file = RESULTS / "int8-snr.json"
    if snr_file.is_file():
        lines += [
            "",
            "## Output SNR against float32 on 8 held-out training mixtures (`--snr`)",
            "",
            "| model | SNR dB |",
            "|---|---|",
        ]
        lines += [f"| {name} | {value} |" for name, value in json.loads(snr_file.read_text()).items()]
    search_file = WORK / "hushnet-dfl" / "search-0.001.json"
    if search_file.is_file():
        lines += [
            "",
            "## Greedy float-layer search (`--search 6`; onnxruntime QDQ, 0.001 % percentile ranges)",
            "",
            "| float convs | output SNR dB |",
            "|---|---|",
        ]
        lines += [
            f"| {', '.join(map(str, step['float_convs']))} | {step['snr_db']} |"
            for step in json.loads(search_file.read_text())
        ]
    two_part_file = RESULTS / "int8-two-part.json"
    if two_part_file.is_file():
        record = json.loads(two_part_file.read_text())
        lines += [
            "",
            f"## Two-part int8 activations, convs 1-13 (`--two-part`, {record['date']})",
            "",
            f"Output SNR {record['output_snr_db']} dB against float32 on the held-out training mixtures. Native ISA, "
            f"load average before and after {record['load_average']}; same timing method as below.",
            "",
            "| system | CPU s per audio s |",
            "|---|---|",
        ]
        lines += [f"| {name} | {cost} |" for name, cost in record["cpu_s_per_audio_s"].items()]
    for path in timings:
        record = json.loads(path.read_text())
        cpu = record["cpu"]
        isa = record.get("onednn_max_cpu_isa")
        lines += [
            "",
            f"## Cost: `{path.name}` ({record['date']})",
            "",
            f"CPU: {cpu['model']}, {cpu['cores']} cores, flags {' '.join(cpu['flags'])}; "
            f"`ONEDNN_MAX_CPU_ISA={isa}` (OpenVINO's oneDNN kernels emulate that ISA; onnxruntime's MLAS ignores it "
            "and runs natively)"
            if isa
            else f"CPU: {cpu['model']}, {cpu['cores']} cores, flags {' '.join(cpu['flags'])}; native ISA",
            f"Load average (1, 5, 15 min) before and after the timings: {record['load_average']}. In process, 1 thread, "
            "60 s of audio per call, CPU s (user+sys) per audio s, median of 3 alternating repeats.",
            "",
            "| system | CPU s per audio s | vs onnxruntime float32 |",
            "|---|---|---|",
        ]
        base = record["cpu_s_per_audio_s"].get("onnx float32")
        for system, cost in record["cpu_s_per_audio_s"].items():
            lines.append(f"| {system} | {cost} | {cost / base:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:
        text = report(sorted(RESULTS.glob("int8-quality*.json")), sorted(RESULTS.glob("int8-speed*.json")))
        (RESULTS / "int8.md").write_text(text)
        print(text)
    else:
        main()
