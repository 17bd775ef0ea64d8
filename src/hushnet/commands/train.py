"""``hushnet train``: a denoiser training job (``TrainConfig``; the loop is :mod:`hushnet.training.denoiser`)."""

from __future__ import annotations

from hushnet.options import JobOptions
from hushnet.training.denoiser import TrainConfig, train
from hushnet.training.skeleton import run_job

__all__ = ["TrainConfig", "run"]


def run(options: JobOptions, overrides: dict) -> int:
    """The job: configuration from the run folder (``--resume``), ``--config`` or defaults, plus flags."""
    return run_job(
        TrainConfig, train, options, overrides, lambda folder: f"run folder: {folder} (best model: {folder / 'best'})"
    )
