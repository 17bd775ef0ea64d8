"""Helpers the tests share: paths to the shared reference data, tiny models, synthetic audio and corpora.

Imported as ``from helpers import ...`` (the tests folder is on pytest's path); fixtures are in conftest.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hushnet.models.can import CAN, CANConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference"
DEV = SHARED / "data" / "valentini_dev"
# For tests that read the shared reference data (../shared next to the repository): skipped where it is absent.
SHARED_MISSING = not (SHARED / "data").is_dir() or not REFERENCE.is_dir()
needs_shared = pytest.mark.skipif(SHARED_MISSING, reason="needs ../shared (data and reference outputs)")


def require_shared() -> None:
    """In a fixture that reads ../shared: skip the tests using it where it is absent (a mark cannot)."""
    if SHARED_MISSING:
        pytest.skip("needs ../shared (data and reference outputs)")


def tiny_can(
    norm: str = "batch", seed: int = 0, channels: int = 8, dilated_layers: int = 4, input_rms_db: float | None = None
) -> CAN:
    """A small CAN with non-trivial weights and running statistics (as after training)."""
    torch.manual_seed(seed)
    model = CAN(CANConfig(channels=channels, dilated_layers=dilated_layers, norm=norm, input_rms_db=input_rms_db))
    with torch.no_grad():
        for layer in model.layers:
            layer.norm.w0.fill_(0.8)
            layer.norm.w1.fill_(0.4)
            layer.norm.beta.normal_(0, 0.1)
            if norm == "batch":
                layer.norm.running_mean.normal_(0, 0.05)
                layer.norm.running_var.uniform_(0.05, 0.5)
    return model.eval()


def speechlike(seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Deterministic noisy harmonic signal [channels, samples] at about -20 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    rows = []
    for c in range(channels):
        tone = sum(np.sin(2 * np.pi * (140 + 20 * c) * k * t) / k for k in range(1, 6))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
        rows.append(0.05 * tone * envelope + 0.02 * rng.standard_normal(t.size))
    return np.asarray(rows, dtype=np.float32)


def write_tiny_corpus(root: Path, speakers: int = 6, files_per_speaker: int = 3, seconds: float = 0.6) -> Path:
    """A ``shared/data``-style folder without manifests: speech/SPEAKER/*.wav, noise/LABEL/*.wav, rir/*.wav."""
    rng = np.random.default_rng(0)
    for s in range(speakers):
        for f in range(files_per_speaker):
            path = root / "speech" / f"spk{s}" / f"spk{s}_{f:03d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, speechlike(seconds * (1 + f / 2), seed=10 * s + f)[0], 16000)
    for label in ("hum", "hiss", "clatter"):
        for f in range(2):
            path = root / "noise" / label / f"{label}_{f}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (0.05 * rng.standard_normal(int(16000 * 0.9))).astype(np.float32), 16000)
    (root / "rir").mkdir(parents=True, exist_ok=True)
    response = np.zeros(800, np.float32)
    response[10] = 1.0
    response[10:] += (0.3 * rng.standard_normal(790) * np.exp(-np.arange(790) / 150)).astype(np.float32)
    sf.write(root / "rir" / "room.wav", response, 16000)
    return root


def tiny_lossnet(seed: int = 0):
    from hushnet.models.lossnet import LossNet, LossNetConfig

    torch.manual_seed(seed)
    return LossNet(LossNetConfig(layers=6, base_channels=4, double_every=3, max_channels=8, scene_classes=3, tags=2))


def run_from_config_file(command: str, config, tmp_path: Path, monkeypatch) -> tuple[int, Path]:
    """``hushnet COMMAND --config FILE -q`` (FILE: ``config`` as JSON) from an empty working folder;
    (exit status, that folder), so that a test can check nothing went to the default run folder."""
    import json

    from hushnet.cli import main

    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return main([command, "--config", str(config_file), "-q"]), work


def wav_header(channels: int, frames: int = 10) -> bytes:
    """A 16-bit PCM WAV file of ``frames`` silent frames with ``channels`` channels, written by hand
    (soundfile refuses absurd channel counts, which is what some tests need)."""
    data = b"\0\0" * channels * frames
    fmt = struct.pack("<HHIIHH", 1, channels, 16000, 32000 * channels, 2 * channels, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def multipart(
    parts: list[tuple[str, str | None, bytes]], boundary: str = "hushnetboundary", close: bool = True
) -> tuple[bytes, dict]:
    """A multipart/form-data body written by hand, so that it can be cut short or malformed:
    ``parts`` are (field name, file name or None, bytes); the body and its content-type header."""
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    if close:
        body += f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}
