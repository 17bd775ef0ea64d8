"""``hushnet serve``: load the model once, then run the app with uvicorn until interrupted."""

from __future__ import annotations

import atexit
import shutil
import sys
from pathlib import Path

from hushnet.serve.config import ServeConfig


def serve(config: ServeConfig) -> int:
    """Run the server in the foreground; returns the exit status."""
    try:
        import uvicorn

        from hushnet.serve.app import create_app
    except ImportError as error:
        print(f"error: hushnet serve needs the 'serve' extra (pip install 'hushnet[serve]'): {error}", file=sys.stderr)
        return 2
    from hushnet.denoiser import Denoiser
    from hushnet.model_dir import DEFAULT_MODEL, ModelError
    from hushnet.options import check_runtime

    try:
        check_runtime(config)  # threads go to the engine; torch is imported only by the torch engine
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        denoiser = Denoiser.from_pretrained(config.model, device=config.device, engine=config.engine, precision=config.precision,
                                            threads=config.threads, workers=config.workers, memory_budget_mb=config.memory_budget_mb)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not config.loopback:
        guard = "with --token" if config.token else "WITHOUT a token: anyone who can reach it can use it (add --token)"
        print(f"warning: serving on {config.host}, reachable from other machines, {guard}; traffic is not encrypted", file=sys.stderr)
    app = create_app(denoiser, config, model_name=Path(config.model).name if config.model else DEFAULT_MODEL)
    shown = f"[{config.host}]" if ":" in config.host and not config.host.startswith("[") else config.host
    query = "/?token=" + config.token if config.token else "/"
    print(f"hushnet serve: open http://{shown}:{config.port}{query}  (API docs at /docs; Ctrl-C stops and deletes all uploads)", file=sys.stderr)
    # Uploads are deleted on a clean stop (the app's lifespan); this covers an interrupted one too.
    atexit.register(shutil.rmtree, app.state.store.root, ignore_errors=True)
    # No access log: it would print ?token= values. A bounded graceful stop: requests get 10 s to finish.
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False, timeout_graceful_shutdown=10)
    return 0
