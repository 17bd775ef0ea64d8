"""``hushnet train-lossnet``: a loss-network training job (``LossNetTrainConfig``; the loop is :mod:`hushnet.training.lossnet`)."""

from __future__ import annotations

from hushnet.commands.training_job import run_job
from hushnet.options import JobOptions
from hushnet.training.lossnet import LossNetTrainConfig, train_lossnet

__all__ = ["LossNetTrainConfig", "run"]


def run(options: JobOptions, overrides: dict) -> int:
    """The job: configuration from the run folder (``--resume``), ``--config`` or defaults, plus flags."""
    return run_job(
        LossNetTrainConfig, train_lossnet, options, overrides, lambda folder: f"loss network: {folder / 'lossnet'}"
    )
