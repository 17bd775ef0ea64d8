"""``hushnet serve``: load the model once into a Denoiser, then serve the page and the HTTP API with
uvicorn until interrupted (extra ``hushnet[serve]``). Runs on the light runtime (no torch) as well."""

from __future__ import annotations

import atexit
import ipaddress
import math
import re
import shutil
import socket
import sys
from dataclasses import dataclass

from hushnet.options import DenoiserOptions, check_runtime, option

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

    def validate(self) -> None:
        """Raise ValueError with a one-line message for settings that cannot work (threads capped at the cores)."""
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
        check_runtime(self)

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the server."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


def build_app(config: ServeConfig):
    """The application with the Denoiser ``config`` describes (its engine, threads and options), loaded once.

    Raises ValueError (one line) for settings or a model that cannot work, ImportError without FastAPI."""
    from hushnet.denoiser import Denoiser
    from hushnet.serve.app import create_app

    config.validate()
    denoiser = Denoiser.from_pretrained(config.model, workers=config.workers, **config.denoiser_options())
    return create_app(denoiser, config)


def run(config: ServeConfig) -> int:
    """Serve until interrupted; 2 for settings that cannot work."""
    try:
        import uvicorn

        app = build_app(config)
    except ImportError as error:
        print(f"error: hushnet serve needs the 'serve' extra (pip install 'hushnet[serve]'): {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # settings, ModelError, AudioError
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:  # bound here, so that a taken port is one line and --port 0 prints the port it got
        listener = bind(config.host, config.port)
    except OSError as error:
        app.state.store.close()
        print(f"error: cannot listen on {config.host}:{config.port}: {error.strerror or error}", file=sys.stderr)
        return 2
    if not config.loopback:
        guard = "with --token" if config.token else "WITHOUT a token: anyone who can reach it can use it (add --token)"
        print(
            f"warning: serving on {config.host}, reachable from other machines, {guard}; traffic is not encrypted",
            file=sys.stderr,
        )
    shown = f"[{config.host}]" if ":" in config.host and not config.host.startswith("[") else config.host
    query = "/?token=" + config.token if config.token else "/"
    port = listener.getsockname()[1]
    print(
        f"hushnet serve: open http://{shown}:{port}{query}  (API docs at /docs; Ctrl-C stops and deletes all uploads)",
        file=sys.stderr,
        flush=True,
    )
    # Uploads are deleted on a clean stop (the app's lifespan); this covers an interrupted one too.
    atexit.register(shutil.rmtree, app.state.store.root, ignore_errors=True)
    # No access log: it would print ?token= values. A bounded graceful stop: requests get 10 s to finish.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10))
    server.run(sockets=[listener])
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv6 for an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), port))
        listener.listen(2048)
        listener.set_inheritable(True)
    except OSError:
        listener.close()
        raise
    return listener
