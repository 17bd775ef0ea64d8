"""``hushnet serve`` settings: one dataclass, from which the command's flags are generated.

Imports nothing heavy, so that building the CLI's parser does not need FastAPI installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import sys
from dataclasses import dataclass, field
from typing import Any

MODEL_HELP = "model directory, or the name of a shipped model (default: the package default)"


def _option(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class ServeConfig:
    """Everything ``hushnet serve`` can be told; each field is a ``--flag``."""

    host: str = _option("127.0.0.1", "address to listen on (default 127.0.0.1: this machine only)")
    port: int = _option(8000, "port (default 8000)")
    model: str | None = _option(None, MODEL_HELP)
    workers: int = _option(1, "files denoised at the same time (default 1; each uses --threads)")
    token: str | None = _option(None, "require this token (header 'Authorization: Bearer TOKEN' or ?token=TOKEN)")
    max_upload_mb: float = _option(4096.0, "largest request body in MB (default 4096); larger ones get 413")
    max_jobs: int = _option(32, "jobs held at once, finished or not (default 32); more get 429")
    keep_minutes: float = _option(60.0, "delete a job's files this long after it was last used (default 60)")
    memory_budget_mb: float = _option(512.0, "activation memory for whole-file processing (default 512)")
    threads: int | None = _option(None, "CPU threads for torch (default: torch's choice)")
    device: str = _option("cpu", "cpu or cuda (default: cpu)")

    def validate(self) -> None:
        """Raise ValueError with a one-line message for settings that cannot work."""
        for name in ("workers", "max_jobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError("--threads must be at least 1")
        if self.max_upload_mb <= 0 or self.keep_minutes <= 0:
            raise ValueError("--max-upload-mb and --keep-minutes must be positive")
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


def _type_of(annotation: str) -> type:
    # Annotations are strings (``from __future__ import annotations``): "int", "str | None", ...
    for name, kind in (("int", int), ("float", float)):
        if annotation.split("|")[0].strip() == name:
            return kind
    return str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per ServeConfig field, with its default and help."""
    for item in dataclasses.fields(ServeConfig):
        parser.add_argument("--" + item.name.replace("_", "-"), dest=item.name, type=_type_of(str(item.type)), default=item.default,
                            help=item.metadata["help"])


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(**{item.name: getattr(args, item.name) for item in dataclasses.fields(ServeConfig)})


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        config.validate()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from hushnet.serve.server import serve

    return serve(config)


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to the CLI's subparsers."""
    parser = commands.add_parser("serve", help="a local web page and HTTP API to denoise, listen, compare and download (extra hushnet[serve])")
    add_arguments(parser)
    parser.set_defaults(run=_run)
    return parser
