"""The skeleton both trainers share: run folder, schedule, run log, checkpoint/resume, time budget.

A trainer builds its model and data, then asks :class:`Run` where to start (``resume``), writes one
row a step (``log``), checkpoints through :mod:`hushnet.training.state`, and stops when the step
budget or the wall-clock budget (``out_of_time``) is spent. A run killed at any instant resumes from
its last complete checkpoint; log rows written after that checkpoint are dropped, so a resumed run's
logs read as if it had never stopped.
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError

from hushnet.audio import one_line
from hushnet.files import CreatedFolders
from hushnet.model_dir import WEIGHTS_FILE, load_weights
from hushnet.options import JobOptions, with_overrides
from hushnet.temporaries import write_text
from hushnet.training import distrib
from hushnet.training.state import (
    CHECKPOINTS_DIR,
    TRAINING_INFO_FILE,
    TRAINING_STATE_FILE,
    latest_checkpoint,
    publish_checkpoint,
    read_training_state,
    write_training_state,
)

logger = logging.getLogger(__name__)

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
    """A CSV log of a run folder, one row a step (or a validation); on resume, cut back to ``step``.
    With no ``path`` (ranks other than 0 under torchrun) rows are dropped: one process writes the log."""

    def __init__(self, path: Path | None, columns: list[str], resume_step: int | None = None) -> None:
        self.path, self.columns = path, columns
        if path is None:
            return
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
        if self.path is None:
            return
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([row.get(c, "") for c in self.columns])


def read_log(path: Path) -> list[dict]:
    """The rows of a run log (empty when there is none)."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class RunFolderLock:
    """An exclusive lock on a run folder (``OUTPUT/.lock``, naming the holder's process id), so that two
    trainers never write into one folder. The OS drops the lock when its process ends however it ends,
    so a dead process's lock file is taken over. A lock this process still holds (a run that raised,
    its handle not yet collected) is reused: one process runs one trainer at a time."""

    NAME = ".lock"

    def __init__(self, folder: Path) -> None:
        self.path = folder / self.NAME
        try:
            self.handle = open(self.path, "a+")
        except OSError as error:  # a folder or something unreadable in the way
            raise FileExistsError(
                f"cannot lock the run folder: {self.path} is not a lock file we can open "
                f"({error.strerror or error}); remove it or choose another --output"
            ) from None
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip()
            self.handle.close()
            if holder == str(os.getpid()):
                return
            raise FileExistsError(
                f"{folder} is in use by another trainer (process {holder or 'unknown'}); "
                "wait for it to finish or choose another --output"
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()

    def release(self, remove: bool = False) -> None:
        """Let go (``remove``: delete the lock file too, before an empty run folder is removed)."""
        if remove:
            self.path.unlink(missing_ok=True)
        if not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


class Run:
    """One training process's view of its run folder: ranks, lock, resume point, budget, checkpoints.

    ``threads``: torch's CPU threads for the whole job (set here, once, for both trainers)."""

    def __init__(
        self,
        output: str,
        resume: bool,
        time_budget_minutes: float | None = None,
        keep_checkpoints: int = 2,
        threads: int | None = None,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.rank, self.world = distrib.init()
        self.main = self.rank == 0
        self.output = Path(output)
        self.resume = resume
        self.keep_checkpoints = keep_checkpoints
        self.budget_minutes = time_budget_minutes
        self.started = time.monotonic()  # set again by start_clock(), once the steps begin
        # A job that fails before it has written anything leaves no empty run folder behind.
        self.folders = CreatedFolders()
        self.lock = None
        if self.main:
            self.folders.make(self.output)
            self.lock = RunFolderLock(self.output)
        try:
            self.latest = latest_checkpoint(self.output) if resume else None
            if not resume and (self.output / CHECKPOINTS_DIR).exists():
                raise FileExistsError(
                    f"{self.output} already holds a run: pass --resume to continue it, or choose another --output"
                )
        except BaseException:
            self.abandon_if_empty()
            raise
        if resume and self.latest is None and self.main:
            logger.warning("no checkpoint in %s: starting from step 0", self.output)

    def abandon_if_empty(self) -> None:
        """Let go of the run folder, and remove it if this run created it and nothing was written into it."""
        if self.main:
            self.lock.release(remove=True)  # ours, whether or not this run made the folder (a failed --resume)
            self.folders.remove_empty()

    def start(self, config_dict: dict) -> None:
        """Once the job is set up: its configuration is written, and the run folder is kept from here on."""
        self.folders.created = []
        if self.main:
            write_text(self.output / RUN_CONFIG_FILE, json.dumps(config_dict, indent=2) + "\n")

    def log(self, name: str, columns: list[str], step: int) -> RunLog:
        """A log of this run folder, cut back to ``step`` when resuming (written by rank 0 only)."""
        if not self.main:
            return RunLog(None, columns)
        # --resume without a checkpoint starts again at step 0: the header stays, any rows go.
        return RunLog(self.output / name, columns, step if self.resume else None)

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, info) of the checkpoint to resume from, with the model's weights, the optimizer and
        the RNG restored; ({}, {"step": 0}) for a new run."""
        if self.latest is None:
            return {}, {"step": 0}
        check_same_network(model, self.latest)
        candidates = [self.latest, *reversed([c for c in checkpoints(self.output) if c.name < self.latest.name])]
        for index, checkpoint in enumerate(candidates):
            part = checkpoint / WEIGHTS_FILE
            try:
                load_weights(model, checkpoint)
                part = checkpoint / TRAINING_STATE_FILE
                return read_training_state(checkpoint, optimizer)
            except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
                damaged = f"checkpoint step {checkpoint_step(checkpoint)} is damaged ({damage(part, error)})"
            if index + 1 == len(candidates):
                raise ValueError(f"{damaged}, and there is no earlier checkpoint in {self.output} to resume from")
            if self.main:
                logger.warning("%s: resuming from step %d", damaged, checkpoint_step(candidates[index + 1]))
        raise AssertionError("unreachable")

    def start_clock(self) -> None:
        """The time budget counts from here: the steps, not the setup or the starting validation."""
        self.started = time.monotonic()

    def out_of_time(self, device: torch.device) -> bool:
        """Whether the wall-clock budget is spent; every process follows rank 0's clock."""
        if self.budget_minutes is None:
            return False
        return distrib.rank0_flag(time.monotonic() - self.started > self.budget_minutes * 60, device, self.world)

    def checkpoint(
        self,
        step: int,
        optimizer: torch.optim.Optimizer,
        save_model: Callable[[Path], None],
        tensors: dict[str, torch.Tensor],
        info: dict,
    ) -> Path | None:
        """Publish a checkpoint: ``save_model`` writes the model directory, then the training state (rank 0)."""
        if not self.main:
            return None

        def write(staging: Path) -> None:
            save_model(staging)
            write_training_state(staging, step, optimizer, tensors, info)

        return publish_checkpoint(self.output, step, write, self.keep_checkpoints)

    def end_step(
        self,
        step: int,
        checkpoint_every: int,
        max_steps: int,
        device: torch.device,
        checkpoint: Callable[[], None],
        on_step: Callable[[int], None] | None,
        say: Callable[[str], None],
    ) -> bool:
        """After a step: checkpoint when due or when the budget is spent, tell ``on_step``; whether to stop now."""
        out_of_time = self.out_of_time(device)
        if step % checkpoint_every == 0 or step == max_steps or out_of_time:
            checkpoint()
        if on_step is not None:
            on_step(step)
        if out_of_time:
            say(
                f"time budget of {self.budget_minutes} min spent at step {step}: checkpoint written, --resume continues"
            )
        return out_of_time

    def finish(self) -> None:
        distrib.barrier(self.world)
        if self.main:
            self.lock.release(remove=True)


def checkpoints(output: Path) -> list[Path]:
    """The complete-looking checkpoint folders of a run folder, oldest first."""
    return sorted(p for p in (Path(output) / CHECKPOINTS_DIR).glob("step_*") if p.is_dir())


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix("step_"))


def damage(part: Path, error: BaseException) -> str:
    """What is wrong with a checkpoint, naming the file (``part``: the one being read)."""
    if isinstance(error, json.JSONDecodeError):
        return f"{part.parent / TRAINING_INFO_FILE}: {one_line(error)}"
    if isinstance(error, KeyError):
        return f"{part.parent} lacks {error}"
    return f"{part}: {one_line(error)}"


def check_same_network(model: torch.nn.Module, checkpoint: Path) -> None:
    """ValueError naming the flag where the network asked for (``--channels``, ``--norm``, ...) is not
    the one the run trained: its weights would not fit."""
    from hushnet.model_dir import CONFIG_FILE, ModelError, read_config

    try:
        saved = read_config(checkpoint)["config"]
    except ModelError:
        return  # a damaged checkpoint: restore says so, and falls back to an earlier one
    wanted = model.config.to_dict()
    for name in (
        "channels",
        "dilated_layers",
        "norm",
        "layers",
        "base_channels",
        "max_channels",
        "double_every",
        "tags",
    ):
        if name in saved and name in wanted and saved[name] != wanted[name]:
            raise ValueError(
                f"--{name.replace('_', '-')} cannot change on --resume (the run has {saved[name]}, "
                f"in {checkpoint / CONFIG_FILE}); start a new run with another --output"
            )


# Whole-number job options and their least value: 0 crops per step stacked nothing once the data was loaded.
JOB_COUNTS = {"batch_size": 1, "max_steps": 0, "validate_every": 1, "checkpoint_every": 1, "keep_checkpoints": 1}


def check_job_counts(config: Any) -> None:
    """ValueError for a step count or batch size that cannot run, before any folder, lock or data."""
    for name, least in JOB_COUNTS.items():
        if not hasattr(config, name):
            continue
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"--{name.replace('_', '-')} must be a whole number of at least {least}, got {value!r}")


# --- the command around a trainer ------------------------------------------------------------------


def job_config(config_class: type, options: JobOptions, overrides: dict[str, Any]) -> Any:
    """The job: the run folder's own configuration on ``--resume``, else ``--config``, else the
    defaults; then the flags given (dotted keys for nested configs). The run folder is ``-o`` when
    given, else the ``output`` of ``--config``, else the default."""
    config_file = None
    if options.config:
        if not Path(options.config).is_file():
            raise FileNotFoundError(f"--config {options.config}: no such file")
        config_file = config_class.from_dict(json.loads(Path(options.config).read_text()))
    output = overrides.get("output") or (config_file or config_class()).output
    saved = Path(output) / RUN_CONFIG_FILE
    if options.resume and saved.is_file():
        base = config_class.from_dict(json.loads(saved.read_text()))
    else:
        base = config_file or config_class()
    return with_overrides(base, {**overrides, "output": output})
