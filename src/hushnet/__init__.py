"""hushnet: speech denoising with deep feature losses."""

import os

# onnxruntime (1.32 on Linux) writes a ``.ses`` telemetry session file into the temp folder when it is
# imported, a file left behind by every run; its documented opt-out must be set before that import.
# A user's own setting is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = ["Denoiser"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use: `import hushnet` stays cheap (and torch-free whatever the engine).
    if name == "Denoiser":
        from hushnet.denoiser import Denoiser

        return Denoiser
    raise AttributeError(f"module 'hushnet' has no attribute {name!r}")
