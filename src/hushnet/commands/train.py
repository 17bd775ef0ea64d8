"""``hushnet train``: a denoiser training job (``TrainConfig``; the loop is :mod:`hushnet.training.denoiser`)."""

from __future__ import annotations

from pathlib import Path

from hushnet.commands.training_job import run_job
from hushnet.options import JobOptions
from hushnet.training.denoiser import TrainConfig, train

__all__ = ["TrainConfig", "run"]


def run(options: JobOptions, overrides: dict) -> int:
    """The job: configuration from the run folder (``--resume``), ``--config`` or defaults, plus flags."""
    return run_job(TrainConfig, train, options, overrides, _done)


def _done(folder: Path) -> str:
    # best/ is written when a validation after step 0 improves: none with --max-steps 0.
    if (folder / "best").is_dir():
        return f"run folder: {folder} (best model: {folder / 'best'})"
    return f"run folder: {folder} (no best model: no step was validated)"
