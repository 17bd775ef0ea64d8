"""The skeleton both trainers share: the loop, run folder, schedule, run log, checkpoint/resume,
time budget, config loading and the model card's frame.

A trainer is a :class:`Trainer`: it supplies its data, model, loss and validation, and
:func:`run_training` runs it in one flat loop (as facebookresearch/denoiser's and nanoGPT's): set-up
and resume in one block, then each step's learning rate, forward and loss under the precision's
autocast, backward, clipping and optimizer step, the log row, a due validation, a due checkpoint,
and the time budget. :class:`Run` is the run folder: where to start, one log row a step, checkpoints
through :mod:`hushnet.training.state`, the wall-clock budget (``out_of_time``). A run killed at any
instant resumes from its last complete checkpoint; log rows written after that checkpoint are
dropped, so a resumed run's logs read as if it had never stopped.
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import math
import os
import time
from abc import ABC, abstractmethod
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors import SafetensorError
from tqdm import tqdm

from hushnet.audio import one_line
from hushnet.files import CreatedFolders
from hushnet.inference.choice import choose_precision
from hushnet.model_dir import WEIGHTS_FILE, load_weights
from hushnet.options import JobOptions, with_overrides
from hushnet.precision import detect_cpu
from hushnet.temporaries import write_text
from hushnet.training import distrib, fastpath
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


# --- what a trainer supplies, and the loop ----------------------------------------------------------


class Trainer(ABC):
    """One trainer: its data, model, loss and validation; :func:`run_training` does the rest.

    Before ``build`` the loop sets ``run`` (the run folder), ``device`` and ``precision`` (``float32``
    or ``bf16``, what the step's autocast runs); after it, ``compiled``: ``forward`` under that
    autocast, through torch.compile when the job asks (falling back to eager if compiling fails).
    ``config`` is the job: a dataclass with the fields the loop reads (``output``, ``max_steps``,
    ``learning_rate``, ``warmup_steps``, ``validate_every``, ``checkpoint_every``, ``keep_checkpoints``,
    ``time_budget_minutes``, ``device``, ``threads``, ``precision``, ``compile``) and ``to_dict``.
    """

    log_columns: list[str]  # of log.csv: step, learning_rate and precision are the loop's
    grad_clip: float  # the gradient-norm ceiling (0: no clipping, the logged norm is 0)

    def __init__(self, config: Any) -> None:
        self.config = config
        self.run: Run
        self.device: torch.device
        self.precision: str
        self.compiled: fastpath.CompiledStep
        self.model: torch.nn.Module
        self.optimizer: torch.optim.Optimizer

    @property
    def min_learning_rate(self) -> float:
        """Where the cosine decay ends at ``max_steps``."""
        return self.config.min_learning_rate

    # Data and model.
    @abstractmethod
    def build(self) -> None:
        """Data, ``model`` and ``optimizer``, as for a new run (resuming then restores them)."""

    @abstractmethod
    def load_state(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        """This trainer's part of the checkpoint resumed from (``({}, {"step": 0})`` for a new run)."""

    @abstractmethod
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """This trainer's part of a checkpoint: (tensors, information beside the config)."""

    @abstractmethod
    def save(self, directory: Path, step: int) -> None:
        """The model directory of the checkpoint at ``step``."""

    @abstractmethod
    def batches(self, start: int) -> Iterable[Any]:
        """One batch a step, for the steps from ``start`` to ``max_steps``."""

    # Loss.
    @abstractmethod
    def forward(self, *inputs: Any) -> Any:
        """The part of a step that runs under autocast and is compiled (called through ``compiled``)."""

    @abstractmethod
    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss to minimise, its terms) of one batch."""

    @abstractmethod
    def after_step(
        self, total: torch.Tensor, terms: dict[str, torch.Tensor], grad_norm: torch.Tensor, seconds: float
    ) -> tuple[dict, dict]:
        """After the optimizer step, on every process: (this trainer's log-row values, progress-bar postfix)."""

    # Validation.
    def before_steps(self, step: int) -> None:
        """Once set up, before the clock starts, on every process (nothing unless a trainer says)."""

    @abstractmethod
    def validate(self, step: int) -> None:
        """A due validation (rank 0)."""

    @abstractmethod
    def finish(self, step: int) -> None:
        """After the last step (rank 0): the run's result."""


def run_training(trainer: Trainer, resume: bool, progress: bool, on_step: Callable[[int], None] | None) -> Path:
    """Run (or resume) ``trainer``'s job; returns the run folder. ``on_step(step)`` after each step's
    checkpoint (tests interrupt a run there)."""
    config = trainer.config
    run = Run(config.output, resume, config.time_budget_minutes, config.keep_checkpoints, config.threads)
    trainer.run = run
    try:
        trainer.device = distrib.device_for(config.device, run.rank, run.world)
        trainer.precision, _ = choose_precision(config.precision, "train", detect_cpu(), device=trainer.device.type)
        trainer.build()
        # Resume, in one block: weights, optimizer and RNG from the last sound checkpoint, then the
        # trainer's own part of it; a new run starts at step 0.
        tensors, info = run.restore(trainer.model, trainer.optimizer)
        trainer.load_state(tensors, info)
        say = tqdm.write if run.main else (lambda line: None)
        trainer.compiled = fastpath.CompiledStep(_under_autocast(trainer), config.compile, say)
    except BaseException:
        run.abandon_if_empty()
        raise
    run.start(config.to_dict())
    first = step = info["step"]
    if run.main:
        logger.info(fastpath.describe(config.precision, trainer.precision, trainer.compiled.enabled))
    log = run.log("log.csv", trainer.log_columns, step)
    bar = tqdm(
        total=config.max_steps, initial=step, disable=not progress or not run.main, unit="step", dynamic_ncols=True
    )
    trainer.before_steps(step)
    run.start_clock()
    # One flat loop; what differs between the trainers is behind their hooks.
    for batch in trainer.batches(step):
        started = time.perf_counter()
        learning_rate = get_lr(
            step, config.learning_rate, trainer.min_learning_rate, config.warmup_steps, config.max_steps
        )
        set_learning_rate(trainer.optimizer, learning_rate)
        total, terms = trainer.loss(batch)
        trainer.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.grad_clip)
            if trainer.grad_clip
            else torch.tensor(0.0)
        )
        trainer.optimizer.step()
        step += 1
        values, postfix = trainer.after_step(total, terms, grad_norm, time.perf_counter() - started)
        log.write({"step": step, "learning_rate": f"{learning_rate:.3e}", **values, "precision": trainer.precision})
        bar.update(1)
        bar.set_postfix(postfix)
        if step == first + 1 and trainer.compiled.enabled and run.main:
            bar.write(f"first step {time.perf_counter() - started:.1f} s, torch.compile's compilation included")
        if run.main and (step % config.validate_every == 0 or step == config.max_steps):
            trainer.validate(step)
        out_of_time = run.out_of_time(trainer.device)  # every process stops at rank 0's step
        if step % config.checkpoint_every == 0 or step == config.max_steps or out_of_time:
            own_tensors, own_info = trainer.state()
            run.checkpoint(
                step,
                trainer.optimizer,
                lambda staging: trainer.save(staging, step),
                own_tensors,
                {"config": config.to_dict(), **own_info},
            )
        if on_step is not None:
            on_step(step)
        if out_of_time:
            bar.write(
                f"time budget of {config.time_budget_minutes} min spent at step {step}: checkpoint written, --resume continues"
            )
            break
    bar.close()
    if run.main:
        trainer.finish(step)
    run.finish()
    return run.output


def _under_autocast(trainer: Trainer) -> Callable:
    """``trainer.forward`` under the precision's autocast: what torch.compile fuses."""

    def forward(*inputs: Any) -> Any:
        with fastpath.autocast(trainer.device, trainer.precision):
            return trainer.forward(*inputs)

    return forward


def config_from_dict(
    config_class: type, values: dict, legacy: dict[str, tuple[str, Callable]], nested: dict[str, type], what: str
) -> Any:
    """A job config from its saved dict (``train_config.json``, ``--config``): nested configs made
    from their dicts, JSON lists back to tuples, then each ``legacy`` key (a name written by an older
    version) read as ``(its new name, what its value becomes)`` unless the new name is given too;
    ValueError naming any key left unknown (``what``: what the keys are, for that message)."""
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    for key, kind in nested.items():
        if isinstance(values.get(key), dict):
            values[key] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values[key].items()})
    for old, (new, convert) in legacy.items():
        if old in values:
            values.setdefault(new, convert(values.pop(old)))
    unknown = set(values) - {f.name for f in fields(config_class)}
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")
    return config_class(**values)


def model_card(title: str, lines: list[str]) -> str:
    """The README.md of a trained model directory: its title, then the trainer's lines."""
    return "\n".join([f"# {title}", "", *lines]) + "\n"


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
