"""``hushnet serve``: load the model once into a Denoiser, then serve the page and the HTTP API with
uvicorn until interrupted (extra ``hushnet[serve]``). Runs on the light runtime (no torch) as well."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from typing import Iterator

from hushnet.options import check_runtime
from hushnet.serve.config import ServeConfig


def build_app(config: ServeConfig):
    """The application with the Denoiser ``config`` describes (its engine, threads and options), loaded once.

    Raises ValueError (one line) for runtime options or a model that cannot work, ImportError without
    FastAPI; the other settings were checked when ``config`` was made."""
    from hushnet.denoiser import Denoiser
    from hushnet.serve.app import create_app

    check_runtime(config)
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
    # No access log: it would print ?token= values. A bounded graceful stop: requests get 10 s to finish.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10))
    with ctrl_c_interrupts():
        server.run(sockets=[listener])
    return 0


@contextlib.contextmanager
def ctrl_c_interrupts() -> Iterator[None]:
    """Within the block, SIGINT raises KeyboardInterrupt, also in a process started with SIGINT ignored
    (a background job of a shell script). uvicorn stops on SIGINT whatever its disposition, then
    raises it again against the handler it found; an ignored one made the stop look like a clean
    exit (status 0 instead of 130)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
