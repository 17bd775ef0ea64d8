"""``hushnet serve``: a local web page and HTTP API around the CLI's Denoiser (extra ``hushnet[serve]``).

``config`` (the ServeConfig dataclass and the command's flags) imports nothing heavy; ``app`` needs FastAPI.
"""

from hushnet.serve.config import ServeConfig, add_parser

__all__ = ["ServeConfig", "add_parser"]
