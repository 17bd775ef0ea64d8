"""The ``hushnet`` command: parsing and dispatch only.

Each command is a config dataclass whose fields are its flags (:mod:`hushnet.options`) and a
``run`` in its module under :mod:`hushnet.commands`: a new flag is one field, a new command one entry in
``COMMANDS``. Only the chosen command's module is imported, so that ``hushnet --help`` and one
command do not load every other command's dependencies.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Command:
    """A subcommand: ``module.run`` does the job described by ``module.<config>``.

    ``trainer``: the config is a training job's (``--config``/``--resume`` give its base, flags override).
    ``needs``: checked before the module is imported, so that the light install (no torch) answers
    with one line naming the extra.
    """

    module: str
    config: str
    help: str
    trainer: bool = False
    needs: tuple[str, ...] = ()  # modules of the `train` extra the command cannot run without


COMMANDS = {
    "denoise": Command("hushnet.commands.denoise", "DenoiseConfig", "denoise audio files, folders or globs"),
    "evaluate": Command(
        "hushnet.commands.evaluate",
        "EvaluateConfig",
        "score enhanced speech against clean references (PESQ, STOI, CSIG/CBAK/COVL, SI-SDR, ...)",
        needs=("torch", "safetensors", "pesq", "pystoi", "scipy"),
    ),
    "export-onnx": Command(
        "hushnet.commands.export_onnx",
        "ExportConfig",
        "write a denoising model as one self-contained ONNX file",
        needs=("torch", "safetensors", "onnx"),
    ),
    "ensemble": Command(
        "hushnet.commands.ensemble",
        "EnsembleConfig",
        "build a model that averages the outputs of several models (one ONNX graph)",
        needs=("torch", "safetensors", "onnx"),
    ),
    "serve": Command(
        "hushnet.commands.serve",
        "ServeConfig",
        "a local web page and HTTP API to denoise, listen, compare and download (extra hushnet[serve])",
    ),
    "train": Command(
        "hushnet.commands.train",
        "TrainConfig",
        "train a denoiser (deep feature loss and/or waveform losses)",
        trainer=True,
        needs=("torch", "safetensors", "scipy", "auraloss"),
    ),
    "train-lossnet": Command(
        "hushnet.commands.train_lossnet",
        "LossNetTrainConfig",
        "train a loss network on scene classification and sound tagging",
        trainer=True,
        needs=("torch", "safetensors", "scipy"),
    ),
    "make-testset": Command(
        "hushnet.commands.make_testset",
        "TestsetConfig",
        "build the reproducible synthetic test set from held-out speakers and noise",
        needs=("torch", "scipy"),
    ),
    "build-data": Command(
        "hushnet.commands.build_data",
        "BuildDataConfig",
        "measure, filter and clean a speech set into a new training-data folder",
        needs=("scipy",),
    ),
    "import-reference": Command(
        "hushnet.commands.import_reference",
        "ImportConfig",
        "import the authors' released model (TF checkpoint or .npz)",
        needs=("torch", "safetensors"),
    ),
}


class Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds like Ctrl-C, so that every cleanup runs (temporary files, partial results)."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(number, frame) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _StderrLines(logging.Handler):
    """Each record of the package's loggers as one line on stderr, as a ``print`` would have written
    it: the ``sys.stderr`` of the moment (a test's capture, a redirected stream), not the one at setup."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


_HANDLER = _StderrLines()


def configure_logging(verbose: bool = False) -> None:
    """The library logs, the command line shows it: the ``hushnet`` loggers' records on stderr, from
    INFO (DEBUG with ``-v``). ``-q`` is about progress bars and leaves these lines alone."""
    logger = logging.getLogger("hushnet")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def _missing(modules: tuple[str, ...]) -> list[str]:
    from hushnet.inference.engines import installed

    return [module for module in modules if not installed(module)]


def _chosen(argv: list[str]) -> str | None:
    return next((word for word in argv if word in COMMANDS), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; flags are generated for the command named in ``argv`` (all commands when None)."""
    from hushnet.options import JobOptions, add_options

    parser = argparse.ArgumentParser(prog="hushnet", description="Speech denoising with deep feature losses.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = _chosen(argv) if argv is not None else None
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        if argv is None or name == chosen:
            config_class = getattr(importlib.import_module(command.module), command.config)
            add_options(sub, config_class, overrides=command.trainer)
            if command.trainer:
                add_options(sub, JobOptions)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; Ctrl-C at any point, imports and parsing included, is one line and status 130."""
    try:
        return _main(argv)
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    from hushnet.options import JobOptions, config_from_args, overrides_from_args

    as_program = argv is None  # not a call from Python (a test, a script), which must keep its process
    argv = sys.argv[1:] if argv is None else argv
    chosen = _chosen(argv)
    if as_program and chosen is not None and COMMANDS[chosen].trainer:
        from hushnet.allocator import reexec_with_jemalloc

        reexec_with_jemalloc()  # before torch allocates anything; returns where jemalloc is absent or off
    missing = _missing(COMMANDS[chosen].needs) if chosen is not None else []
    if missing:
        print(f'error: hushnet {chosen} needs {", ".join(missing)}: pip install "hushnet[train]"', file=sys.stderr)
        return 2
    args = build_parser(argv).parse_args(argv)
    configure_logging(verbose=getattr(args, "verbose", False))
    command = COMMANDS[args.command]
    module = importlib.import_module(command.module)
    config_class = getattr(module, command.config)
    with terminate_as_interrupt():
        if command.trainer:
            return module.run(config_from_args(JobOptions, args), overrides_from_args(config_class, args))
        try:
            config = config_from_args(config_class, args)
        except ValueError as error:  # a config that checks its values when it is made (ServeConfig)
            print(f"error: {error}", file=sys.stderr)
            return 2
        return module.run(config)


if __name__ == "__main__":
    sys.exit(main())
