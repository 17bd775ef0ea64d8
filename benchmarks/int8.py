"""Is onnxruntime int8 worth it? Static (QDQ, per-channel) quantisation of a shipped model's
``model.onnx``, calibrated on training mixtures (never the test set), then: in-process speed on 120 s
of audio at 1 thread against the float model, and PESQ-WB on the synthetic test set. The rule allows
int8 only if PESQ-WB drops by less than 0.02.

    python benchmarks/int8.py [--model hushnet-dfl] [--calibration-items 16]

Results: ``benchmarks/results/int8.{md,json}``. Measurement only: the runtime does not ship int8.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from common import RESULTS, SHARED, TEST_SETS
from hushnet.denoiser import Denoiser
from hushnet.evaluate import match_folders
from hushnet.inference.engines import OnnxEngine
from hushnet.metrics import pesq_score
from hushnet.model_dir import ONNX_FILE, read_config, resolve_model_dir
from hushnet.models.config import CANConfig


def calibration_batches(items: int, seconds: float = 4.0) -> list[np.ndarray]:
    """Training-split mixtures at the model's input level (-23 dBFS), one per batch."""
    from hushnet.data.mixing import MixingConfig, MixtureDataset
    from hushnet.data.sources import impulse_responses, noise_clips, speech_utterances
    from hushnet.data.splits import select

    root = SHARED / "data"
    dataset = MixtureDataset(
        select(speech_utterances(root / "speech"), "train"),
        select(noise_clips(root / "noise"), "train"),
        select(impulse_responses(root / "rir"), "train"),
        MixingConfig(segment_seconds=seconds),
        seed=123,
        length=items,
    )
    batches = []
    for index in range(items):
        noisy = dataset[index]["noisy"]
        batches.append(
            (noisy * 10 ** (-23 / 20) / max(float(np.sqrt(np.mean(noisy**2))), 1e-5))[None].astype(np.float32)
        )
    return batches


def quantize(
    source: Path, target: Path, batches: list[np.ndarray], method: str = "minmax", float_ends: bool = False
) -> None:
    """``float_ends``: the first conv (1 input channel, the raw waveform) and the 1x1 output conv stay
    float, where 8-bit steps would be audible directly in the signal."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else {"audio": batch}

    convs = [node.name for node in onnx.load(str(source)).graph.node if node.op_type == "Conv"]
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=methods[method],
        nodes_to_exclude=[convs[0], convs[-1]] if float_ends else [],
    )


def speed(denoiser: Denoiser, seconds: float = 120.0, repeats: int = 3) -> float:
    """Median CPU seconds per audio second of ``denoise`` on noise-like speech-level audio."""
    signal = (0.05 * np.random.default_rng(0).standard_normal(int(seconds * 16000))).astype(np.float32)
    spent = []
    for _ in range(repeats):
        started = time.process_time()
        denoiser.denoise(signal, 16000)
        spent.append((time.process_time() - started) / seconds)
    return float(np.median(spent))


def synthetic_pesq(denoiser: Denoiser) -> float:
    pairs = match_folders(TEST_SETS["synthetic"] / "clean", TEST_SETS["synthetic"] / "noisy").pairs
    scores = []
    for pair in pairs:
        clean, rate = sf.read(pair.clean, dtype="float32")
        noisy, _ = sf.read(pair.noisy, dtype="float32")
        scores.append(pesq_score(clean, denoiser.denoise(noisy, rate), rate))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hushnet-dfl")
    parser.add_argument("--calibration-items", type=int, default=16)
    parser.add_argument(
        "--method", choices=["minmax", "percentile", "entropy"], default="minmax", help="activation range calibration"
    )
    parser.add_argument("--float-ends", action="store_true", help="keep the first and the output conv in float")
    args = parser.parse_args()
    directory = resolve_model_dir(args.model)
    config = CANConfig.from_dict(read_config(directory)["config"])
    with tempfile.TemporaryDirectory() as work:
        int8_path = Path(work) / "model.int8.onnx"
        quantize(
            directory / ONNX_FILE, int8_path, calibration_batches(args.calibration_items), args.method, args.float_ends
        )
        systems = {
            "float32": Denoiser(OnnxEngine(directory / ONNX_FILE, config, threads=1)),
            "int8": Denoiser(OnnxEngine(int8_path, config, threads=1)),
        }
        row = {
            name: {"cpu_s_per_audio_s": round(speed(d), 4), "pesq_wb_synthetic": round(synthetic_pesq(d), 4)}
            for name, d in systems.items()
        }
        size = {"float32": (directory / ONNX_FILE).stat().st_size, "int8": int8_path.stat().st_size}
    record = {
        "model": args.model,
        "method": args.method,
        "float_ends": args.float_ends,
        "calibration_items": args.calibration_items,
        "load": round(os.getloadavg()[0], 2),
        "systems": row,
        "bytes": size,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8.json").write_text(json.dumps(record, indent=2) + "\n")
    drop = row["float32"]["pesq_wb_synthetic"] - row["int8"]["pesq_wb_synthetic"]
    ratio = row["int8"]["cpu_s_per_audio_s"] / row["float32"]["cpu_s_per_audio_s"]
    lines = [
        f"# onnxruntime int8 (static QDQ, per-channel, {args.method} calibration on {args.calibration_items} training mixtures"
        f"{', first and output conv float' if args.float_ends else ''}) for `{args.model}`",
        "",
        f"1 thread, in process, 120 s of audio; PESQ-WB over the 96 synthetic test files; load average {record['load']}.",
        "",
        "| model | CPU s per audio s | PESQ-WB (synthetic) | file MB |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {r['cpu_s_per_audio_s']} | {r['pesq_wb_synthetic']} | {size[n] / 1e6:.2f} |" for n, r in row.items()
    ]
    lines += [
        "",
        f"int8 / float32 CPU time: {ratio:.2f}x; PESQ-WB drop {drop:+.4f} (allowed: < 0.02): "
        + ("passes" if drop < 0.02 else "fails")
        + ".",
    ]
    (RESULTS / "int8.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
