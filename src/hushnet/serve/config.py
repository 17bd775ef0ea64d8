"""The server's settings: ``ServeConfig``, whose fields are the flags of ``hushnet serve``, checked
once, when it is made: a ServeConfig that exists can be served."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass

from hushnet.options import DenoiserOptions, option

TOKEN_PATTERN = re.compile(r"[!-~]+")  # visible ASCII: what an Authorization header carries unchanged


@dataclass
class ServeConfig(DenoiserOptions):
    """Everything ``hushnet serve`` can be told; each field is a ``--flag``. The Denoiser's own flags
    (model, engine, precision, threads, dry, level) are those of ``hushnet denoise``."""

    host: str = option("127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    port: int = option(8000, help="port")
    workers: int = option(1, help="files denoised at the same time (each uses --threads)")
    token: str | None = option(
        None, help="require this token (header 'Authorization: Bearer TOKEN' or ?token=TOKEN)", show_default=False
    )
    max_upload_mb: float = option(4096.0, help="largest request body in MB; larger ones get 413")
    max_jobs: int = option(32, help="jobs held at once, finished or not; more get 429")
    keep_minutes: float = option(60.0, help="delete a job's files this long after it was last used")
    upload_idle_seconds: float = option(
        60.0, help="drop an upload (408) that sends nothing for this long, freeing what it held"
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a one-line message for settings that cannot work. The runtime options
        (threads, device) are the command's to check, before it loads the model."""
        for name in ("workers", "max_jobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("max_upload_mb", "keep_minutes", "upload_idle_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):  # NaN compares false with everything
                raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")
        if self.token is not None and not TOKEN_PATTERN.fullmatch(self.token):
            raise ValueError(
                "--token must be printable ASCII without spaces (it travels in a header); an empty one would turn authentication off"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError("--port must be between 0 and 65535")

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the server."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False
