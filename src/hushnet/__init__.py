"""hushnet: speech denoising with deep feature losses."""

__all__ = ["Denoiser"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use: `import hushnet` stays cheap (and torch-free whatever the engine).
    if name == "Denoiser":
        from hushnet.denoiser import Denoiser

        return Denoiser
    raise AttributeError(f"module 'hushnet' has no attribute {name!r}")
