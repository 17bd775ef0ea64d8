"""hushnet: speech denoising with deep feature losses."""

from hushnet.denoiser import Denoiser

__all__ = ["Denoiser"]
__version__ = "0.1.0"
