"""``hushnet serve``: a local web page and HTTP API around the CLI's Denoiser (extra ``hushnet[serve]``).

``config`` (the ServeConfig dataclass and the command's flags) imports nothing heavy; ``app`` needs FastAPI.
"""

from hushnet.serve.config import ServeConfig, run

__all__ = ["ServeConfig", "run"]
