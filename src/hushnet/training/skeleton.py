"""The skeleton both trainers share: run folder, schedule, run log, checkpoint/resume, time budget.

A trainer builds its model and data, then asks :class:`Run` where to start (``resume``), writes one
row a step (``log``), checkpoints through :mod:`hushnet.training.state`, and stops when the step
budget or the wall-clock budget (``out_of_time``) is spent. A run killed at any instant resumes from
its last complete checkpoint; log rows written after that checkpoint are dropped, so a resumed run's
logs read as if it had never stopped.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from hushnet.audio import AudioError, one_line
from hushnet.files import CreatedFolders
from hushnet.model_dir import write_atomic_text
from hushnet.options import JobOptions, configure_runtime, with_overrides
from hushnet.training import distrib
from hushnet.training.state import CHECKPOINTS_DIR, latest_checkpoint, publish_checkpoint, read_training_state, write_training_state

RUN_CONFIG_FILE = "train_config.json"


def get_lr(step: int, peak: float, minimum: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warm-up to ``peak``, then cosine decay to ``minimum`` at ``max_steps`` (as nanoGPT's ``get_lr``)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return minimum + 0.5 * (1 + math.cos(math.pi * progress)) * (peak - minimum)


def set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


class RunLog:
    """A CSV log of a run folder, one row a step (or a validation); on resume, cut back to ``step``."""

    def __init__(self, path: Path, columns: list[str], resume_step: int | None = None) -> None:
        self.path, self.columns = path, columns
        if resume_step is not None and path.is_file():
            self._truncate(resume_step)
        if not path.is_file() or resume_step is None:
            with open(path, "w", newline="") as handle:
                csv.writer(handle).writerow(columns)

    def _truncate(self, step: int) -> None:
        with open(self.path, newline="") as handle:
            rows = list(csv.reader(handle))
        kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
        with open(self.path, "w", newline="") as handle:
            csv.writer(handle).writerows(kept)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([row.get(c, "") for c in self.columns])


def read_log(path: Path) -> list[dict]:
    """The rows of a run log (empty when there is none)."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class Run:
    """One training process's view of its run folder: ranks, resume point, budget, checkpoints."""

    def __init__(self, output: str, resume: bool, time_budget_minutes: float | None = None, keep_checkpoints: int = 2) -> None:
        self.rank, self.world = distrib.init()
        self.main = self.rank == 0
        self.output = Path(output)
        self.resume = resume
        self.keep_checkpoints = keep_checkpoints
        self.budget_minutes = time_budget_minutes
        self.started = time.monotonic()  # set again by start_clock(), once the steps begin
        self.latest = latest_checkpoint(self.output) if resume else None
        if not resume and (self.output / CHECKPOINTS_DIR).exists():
            raise FileExistsError(f"{self.output} already holds a run: pass --resume to continue it, or choose another --output")
        if resume and self.latest is None and self.main:
            print(f"no checkpoint in {self.output}: starting from step 0", file=sys.stderr)
        # A job that fails before it has written anything leaves no empty run folder behind.
        self.folders = CreatedFolders()
        if self.main:
            self.folders.make(self.output)

    def abandon_if_empty(self) -> None:
        """Remove the run folder this run created, if nothing was written into it."""
        if self.main:
            self.folders.remove_empty()

    def start(self, config_dict: dict) -> None:
        """Once the job is set up: its configuration is written, and the run folder is kept from here on."""
        self.folders.created = []
        if self.main:
            write_atomic_text(self.output / RUN_CONFIG_FILE, json.dumps(config_dict, indent=2) + "\n")

    def log(self, name: str, columns: list[str], step: int) -> RunLog | None:
        """A log of this run folder (rank 0 only), cut back to ``step`` when resuming."""
        if not self.main:
            return None
        # --resume without a checkpoint starts again at step 0: the header stays, any rows go.
        return RunLog(self.output / name, columns, step if self.resume else None)

    def restore(self, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, info) of the checkpoint to resume from, with optimizer and RNG restored; ({}, {"step": 0}) for a new run."""
        if self.latest is None:
            return {}, {"step": 0}
        return read_training_state(self.latest, optimizer)

    def start_clock(self) -> None:
        """The time budget counts from here: the steps, not the setup or the starting validation."""
        self.started = time.monotonic()

    def out_of_time(self, device: torch.device) -> bool:
        """Whether the wall-clock budget is spent; every process follows rank 0's clock."""
        if self.budget_minutes is None:
            return False
        return distrib.rank0_flag(time.monotonic() - self.started > self.budget_minutes * 60, device, self.world)

    def checkpoint(self, step: int, optimizer: torch.optim.Optimizer, save_model: Callable[[Path], None], tensors: dict[str, torch.Tensor],
                   info: dict) -> Path | None:
        """Publish a checkpoint: ``save_model`` writes the model directory, then the training state (rank 0)."""
        if not self.main:
            return None

        def write(staging: Path) -> None:
            save_model(staging)
            write_training_state(staging, step, optimizer, tensors, info)

        return publish_checkpoint(self.output, step, write, self.keep_checkpoints)

    def end_step(self, step: int, checkpoint_every: int, max_steps: int, device: torch.device, checkpoint: Callable[[], None],
                 on_step: Callable[[int], None] | None, say: Callable[[str], None]) -> bool:
        """After a step: checkpoint when due or when the budget is spent, tell ``on_step``; whether to stop now."""
        out_of_time = self.out_of_time(device)
        if step % checkpoint_every == 0 or step == max_steps or out_of_time:
            checkpoint()
        if on_step is not None:
            on_step(step)
        if out_of_time:
            say(f"time budget of {self.budget_minutes} min spent at step {step}: checkpoint written, --resume continues")
        return out_of_time

    def finish(self) -> None:
        distrib.barrier(self.world)


# --- the command around a trainer ------------------------------------------------------------------


def job_config(config_class: type, options: JobOptions, overrides: dict[str, Any]) -> Any:
    """The job: the run folder's own configuration on ``--resume``, else ``--config``, else the
    defaults; then the flags given (dotted keys for nested configs)."""
    output = overrides.get("output") or config_class().output
    saved = Path(output) / RUN_CONFIG_FILE
    if options.resume and saved.is_file():
        base = config_class.from_dict(json.loads(saved.read_text()))
    elif options.config:
        if not Path(options.config).is_file():
            raise FileNotFoundError(f"--config {options.config}: no such file")
        base = config_class.from_dict(json.loads(Path(options.config).read_text()))
    else:
        base = config_class()
    return with_overrides(base, {**overrides, "output": output})


def run_job(config_class: type, train: Callable[..., Path], options: JobOptions, overrides: dict[str, Any], done: Callable[[Path], str]) -> int:
    """Build the job, run ``train``, print ``done(run folder)`` once (rank 0); one line per bad input."""
    try:
        config = job_config(config_class, options, overrides)
        configure_runtime(config)
        folder = train(config, resume=options.resume, progress=not options.quiet)
    except (FileNotFoundError, FileExistsError, ValueError, AudioError) as error:  # JSON and model errors are ValueErrors
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    if distrib.is_main():
        print(done(folder))
    return 0
