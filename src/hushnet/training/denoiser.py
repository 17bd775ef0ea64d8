"""The denoiser's training loop: one readable loop in the manner of nanoGPT.

``TrainConfig`` is the whole job. Checkpoints go to ``OUTPUT/checkpoints/step_NNNNNNN/`` (a model
directory plus the training state, all safetensors/JSON, no pickle), published by atomically
rewriting ``OUTPUT/checkpoints/latest``; a run killed at any instant resumes from the last complete
one and continues bit-exactly on CPU, because the data a step sees is a function of the step alone.
Data parallel under ``torchrun`` (gloo on CPU, NCCL on GPU): ``batch_size`` is per process, and
process r of w takes the samples ``(step * w + r) * batch ... + batch - 1`` of the seeded stream.
The schedule, logs, checkpoints and time budget are the shared skeleton's
(:mod:`hushnet.training.skeleton`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from hushnet.data.mixing import MixingConfig, MixtureDataset
from hushnet.data.pairs import VALENTINI_VALIDATION_SPEAKERS, PairDataset, folder_pairs, split_pairs, valentini_pairs
from hushnet.data.sources import (
    DATA_HELP,
    DEFAULT_DATA,
    AudioCache,
    check_data_root,
    impulse_responses,
    noise_clips,
    speech_utterances,
)
from hushnet.data.splits import select
from hushnet.inference.choice import PRECISION_HELP, PRECISIONS, choose_precision
from hushnet.loss import LossConfig, TrainingLoss
from hushnet.metrics import pesq_score, si_sdr
from hushnet.model_dir import load_model, read_config, resolve_model_dir, save_model
from hushnet.models.can import CAN, NORM_MODES, CANConfig, to_batch_mode
from hushnet.options import DEVICE_HELP, THREADS_HELP, Sub, nested, option
from hushnet.precision import detect_cpu
from hushnet.training import distrib, fastpath
from hushnet.training.skeleton import RUN_CONFIG_FILE, Run, get_lr, read_log, set_learning_rate

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """One training job. Saved as ``train_config.json`` in the run folder and in every checkpoint."""

    output: str = option("runs/hushnet", short="-o", help="run folder: checkpoints, logs, best/")
    # Data: a ``../shared/data``-style root (speech/, noise/, rir/) mixed on the fly, or a Valentini
    # root, or a clean/noisy folder pair. The first one given is used.
    data: str | None = option(DEFAULT_DATA, help=DATA_HELP)
    valentini: str | None = option(
        None, help="Valentini noisy-VCTK folder (clean_trainset_28spk_wav/, noisy_trainset_28spk_wav/, ...)"
    )
    clean: str | None = option(None, help="folder of clean files (with --noisy: pairs matched by name)")
    noisy: str | None = option(None, help="folder of noisy files")
    mixing: MixingConfig = nested(
        MixingConfig, {"segment_seconds": Sub("--segment-seconds", "training crop length, s")}
    )
    # Model: "identity" (dilated layers start near identity), "default" (PyTorch init), or a model
    # directory / shipped name to fine-tune from.
    # -23 dBFS: the typical RMS of Valentini noisy files, the level the authors trained at.
    model: CANConfig = nested(
        lambda: CANConfig(input_rms_db=-23.0),
        {
            "norm": Sub("--norm", "normalisation mode", tuple(NORM_MODES)),
            "channels": Sub("--channels", "feature maps"),
            "input_rms_db": Sub("--input-rms-db", "level the input is normalised to, dBFS"),
        },
    )
    init: str = option("identity", help="identity, default, or a model directory/name to fine-tune")
    freeze_norm_statistics: bool = option(False, help="batch mode: keep running statistics fixed")
    loss: LossConfig = nested(
        LossConfig,
        {
            "feature": Sub("--feature-weight", "weight of the deep feature loss (0 turns it off)"),
            "l1": Sub("--l1-weight", "weight of the waveform L1 loss"),
            "l2": Sub("--l2-weight", "weight of the waveform L2 loss"),
            "lossnet": Sub("--lossnet", "loss network: model directory or shipped name"),
            "calibration_steps": Sub("--calibration-steps", "steps whose mean layer distances set the layer weights"),
        },
    )
    # Optimisation
    batch_size: int = option(8, help="crops per step and process (under torchrun the step sees batch size x processes)")
    learning_rate: float = option(3e-4, help="peak AdamW learning rate")
    min_learning_rate: float = 3e-5
    warmup_steps: int = option(100, help="linear warm-up steps")
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_steps: int = option(10_000, help="total steps")
    # Wall-clock budget of this process (a lent GPU, a CI slot): checkpoint and stop once it is spent;
    # --resume continues from there, exactly as after an interruption.
    time_budget_minutes: float | None = option(
        None, help="stop with a checkpoint once this much wall-clock time is spent (--resume continues)"
    )
    precision: str = option("auto", choices=list(PRECISIONS), help=PRECISION_HELP)
    # torch.compile of the forward and loss (about a minute, once per run): fuses the normalisation
    # and activation passes; --no-compile for debugging, or where no C++ compiler is installed.
    compile: bool = option(True, flag="--no-compile", help="run the training step eagerly, without torch.compile")
    # Bookkeeping
    seed: int = option(0, help="seed of initialisation and data")
    validate_every: int = option(500, help="steps between validations")
    validation_items: int = option(16, help="validation mixtures")
    validation_seconds: float = 4.0
    checkpoint_every: int = option(100, help="steps between checkpoints")
    keep_checkpoints: int = 2
    device: str = option("cpu", help=DEVICE_HELP)
    threads: int | None = option(None, help=THREADS_HELP, show_default=False)
    workers: int = option(0, help="data-loading processes")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = dict(values)
        nested_kinds = {"mixing": MixingConfig, "model": CANConfig, "loss": LossConfig}
        for key, kind in nested_kinds.items():
            if isinstance(values.get(key), dict):
                sub = dict(values[key])
                for name, value in sub.items():
                    if isinstance(value, list):
                        sub[name] = tuple(value)
                values[key] = kind(**sub)
        if "autocast" in values:  # written before ``precision`` existed: keep what that run did
            values.setdefault("precision", "bf16" if values.pop("autocast") else "float32")
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**values)


# --- data ---------------------------------------------------------------------------------------


def _mixture_sets(config: TrainConfig, cache: AudioCache) -> tuple[MixtureDataset, MixtureDataset]:
    root = check_data_root(config.data)
    speech = speech_utterances(root / "speech")
    noise = noise_clips(root / "noise")
    rooms = impulse_responses(root / "rir") if (root / "rir").exists() else []
    for name, found in (("speech", speech), ("noise", noise)):
        if not found:
            raise ValueError(f"no audio in {root / name}: nothing to train on")
    train_speech, validation_speech = select(speech, "train"), select(speech, "validation")
    train_noise, validation_noise = select(noise, "train"), select(noise, "validation")
    # Small user folders can hash every speaker or recording into one split: keep both sides usable.
    if not validation_speech and len({u.speaker for u in train_speech}) > 1:
        held = sorted({u.speaker for u in train_speech})[-1]
        validation_speech = [u for u in train_speech if u.speaker == held]
        train_speech = [u for u in train_speech if u.speaker != held]
    if not train_speech:
        raise ValueError(f"'{root}': no training speakers left after the test/validation split")
    train_noise = train_noise or validation_noise
    training = MixtureDataset(
        train_speech, train_noise, select(rooms, "train"), config.mixing, config.seed, 10**9, cache
    )
    validation_mixing = MixingConfig(**{**config.mixing.to_dict(), "segment_seconds": config.validation_seconds})
    validation = MixtureDataset(
        validation_speech or train_speech,
        validation_noise or train_noise,
        select(rooms, "validation"),
        validation_mixing,
        config.seed + 1,
        config.validation_items,
        cache,
    )
    return training, validation


def _pair_sets(config: TrainConfig, cache: AudioCache) -> tuple[PairDataset, PairDataset]:
    if config.valentini:
        pairs = valentini_pairs(config.valentini, "train")
    else:
        pairs = folder_pairs(config.clean, config.noisy)
    training, validation = split_pairs(pairs, VALENTINI_VALIDATION_SPEAKERS)
    if not validation:  # no Valentini speaker names: hold out every 20th pair
        training, validation = [p for i, p in enumerate(pairs) if i % 20], pairs[::20]
    segment = config.mixing.segment_samples
    validation_segment = int(config.validation_seconds * config.mixing.sample_rate)
    return PairDataset(training, segment, config.seed, cache), PairDataset(
        validation[: config.validation_items], validation_segment, config.seed + 1, cache
    )


def build_datasets(config: TrainConfig) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """(training, validation) datasets for the configured source."""
    cache = AudioCache(config.mixing.sample_rate)
    if config.valentini or (config.clean and config.noisy):
        return _pair_sets(config, cache)
    if config.data:
        return _mixture_sets(config, cache)
    raise ValueError("no training data: give --data, --valentini, or --clean with --noisy")


class StepBatches(torch.utils.data.Sampler):
    """Index batches of the seeded sample stream for one process, from a given step on."""

    def __init__(
        self, start_step: int, max_steps: int, batch_size: int, rank: int = 0, world: int = 1, length: int | None = None
    ) -> None:
        self.start_step, self.max_steps = start_step, max_steps
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.length = length

    def __len__(self) -> int:
        return self.max_steps - self.start_step

    def __iter__(self):
        for step in range(self.start_step, self.max_steps):
            first = (step * self.world + self.rank) * self.batch_size
            indices = range(first, first + self.batch_size)
            yield [i % self.length for i in indices] if self.length else list(indices)


# --- model --------------------------------------------------------------------------------------


def build_model(config: TrainConfig, calibration: torch.Tensor | None = None) -> CAN:
    """The network to train: fresh (identity or default init) or loaded from a model directory."""
    if config.init in ("identity", "default"):
        torch.manual_seed(config.seed)
        model = CAN(config.model)
        if config.init == "identity":
            model.init_identity()
        return model
    source = load_model(config.init, kind="can")
    inherited = ("norm", "input_rms_db", "segment_seconds", "dry")  # what the job decides, not the source
    wanted = CANConfig(**{**source.config.to_dict(), **{key: getattr(config.model, key) for key in inherited}})
    if wanted.norm == source.config.norm:
        model = CAN(wanted)
        model.load_state_dict(source.state_dict())
        return model
    if wanted.norm == "batch" and calibration is not None:
        model = to_batch_mode(source, calibration)
        model.config.input_rms_db = wanted.input_rms_db
        return model
    raise ValueError(f"cannot start a {wanted.norm} model from the {source.config.norm} model {config.init}")


def level_normalise(
    noisy: torch.Tensor, clean: torch.Tensor, level_db: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each example so the noisy input has ``level_db`` RMS (as the Denoiser does at inference)."""
    if level_db is None:
        return noisy, clean
    rms = noisy.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-5)
    gain = 10 ** (level_db / 20) / rms
    return noisy * gain, clean * gain


def set_training_mode(model: CAN, config: TrainConfig) -> None:
    """Train mode, except the normalisation statistics when they are to stay fixed."""
    model.train()
    if config.freeze_norm_statistics:
        for layer in model.layers:
            layer.norm.eval()


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_learning_rate`` at ``max_steps``."""
    return get_lr(step, config.learning_rate, config.min_learning_rate, config.warmup_steps, config.max_steps)


# --- checkpoints --------------------------------------------------------------------------------


def model_card(config: TrainConfig, step: int, extra: dict) -> str:
    source = config.valentini or (f"{config.clean} + {config.noisy}" if config.clean else config.data)
    lines = [
        "# hushnet CAN (training checkpoint)",
        "",
        f"- Step {step} of {config.max_steps}, batch {config.batch_size} x {config.mixing.segment_seconds} s, init `{config.init}`.",
        f"- Normalisation `{config.model.norm}`, input level {config.model.input_rms_db} dBFS, {config.model.channels} channels.",
        f"- Loss: feature {config.loss.feature} (loss network `{config.loss.lossnet}`), L1 {config.loss.l1}, L2 {config.loss.l2}.",
        f"- Data: `{source}`.",
    ]
    if extra.get("best"):
        lines.append(f"- Best validation so far: {json.dumps(extra['best'])}.")
    return "\n".join(lines) + "\n"


def _save(
    model: CAN, directory: Path, config: TrainConfig, step: int, best: dict, validation: dict | None = None
) -> None:
    """``model`` as a model directory whose config.json says which step of which job it is."""
    training = {
        "step": step,
        "config": config.to_dict(),
        **({"validation": validation} if validation is not None else {}),
    }
    save_model(model, directory, model_card(config, step, {"best": best} if best else {}), {"training": training})


# --- the loop -----------------------------------------------------------------------------------


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.stack([item[key] for item in items])) for key in ("noisy", "clean")}


def validate(model: CAN, dataset, loss: TrainingLoss, config: TrainConfig, device: torch.device) -> dict:
    """Validation loss, PESQ-WB, STOI and SI-SDR over the validation items (each processed whole)."""
    from pystoi import stoi

    model.eval()
    totals: dict[str, list[float]] = {"loss": [], "pesq": [], "stoi": [], "si_sdr": []}
    rate = config.mixing.sample_rate
    with torch.no_grad():
        for index in range(len(dataset)):
            item = _collate([dataset[index]])
            noisy, clean = level_normalise(
                item["noisy"].to(device), item["clean"].to(device), config.model.input_rms_db
            )
            denoised = model(noisy).float()
            totals["loss"].append(float(loss(denoised, clean)[0]))
            reference, estimate = clean[0].cpu().numpy(), denoised[0].cpu().numpy()
            if np.any(reference):
                totals["pesq"].append(pesq_score(reference, estimate, rate))
                totals["stoi"].append(float(stoi(reference, estimate, rate, extended=False)))
                totals["si_sdr"].append(si_sdr(reference, estimate))
    set_training_mode(model, config)
    return {key: round(float(np.mean(values)), 4) for key, values in totals.items() if values}


LOG_COLUMNS = [
    "step",
    "learning_rate",
    "loss",
    "feature",
    "l1",
    "l2",
    "stft",
    "anchor",
    "grad_norm",
    "seconds",
    "audio_seconds_per_second",
    "precision",
]
VALIDATION_COLUMNS = ["step", "loss", "pesq", "stoi", "si_sdr"]
LOGGED_TERMS = ("feature", "l1", "l2", "stft", "anchor")


@dataclass
class _Job:
    """What the loop works with, once set up (fresh or restored from a checkpoint)."""

    model: CAN
    trained: torch.nn.Module  # the model, or its DDP wrapper
    loss: TrainingLoss
    optimizer: torch.optim.Optimizer
    anchor: list[torch.Tensor] | None
    training_data: torch.utils.data.Dataset
    validation_data: torch.utils.data.Dataset
    device: torch.device
    step: int
    best: dict
    precision: str  # what runs: float32 or bf16
    forward: fastpath.CompiledStep  # (noisy, clean) -> (total loss, terms), compiled


def _forward_loss(trained: torch.nn.Module, loss: TrainingLoss, device: torch.device, precision: str) -> Callable:
    """The part of a step that torch.compile fuses: the CAN's forward and the loss through the loss network."""

    def forward(noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with fastpath.autocast(device, precision):
            denoised = trained(noisy)
            return loss(denoised.float(), clean)

    return forward


def _set_up(config: TrainConfig, run: Run) -> _Job:
    device = distrib.device_for(config.device, run.rank, run.world)
    training_data, validation_data = build_datasets(config)
    calibration = None
    if (
        config.init not in ("identity", "default")
        and config.model.norm == "batch"
        and read_config(resolve_model_dir(config.init))["config"]["norm"] != "batch"
    ):
        calibration = level_normalise(
            *_collate([training_data[len(training_data) - 1 - i] for i in range(16)]).values(),
            config.model.input_rms_db,
        )[0]
    model = build_model(config, calibration).to(device)
    # The starting weights, for the L2-SP pull (taken before a checkpoint replaces them on resume).
    anchor = [p.detach().clone() for p in model.parameters()] if config.loss.anchor else None
    lossnet = load_model(config.loss.lossnet, kind="lossnet") if config.loss.feature else None
    loss = TrainingLoss(config.loss, lossnet).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.99)
    )
    tensors, info = run.restore(model, optimizer)
    loss.load_state_dict({k[len("loss.") :]: v for k, v in tensors.items() if k.startswith("loss.")}, strict=False)
    set_training_mode(model, config)
    trained = distrib.wrap(model, device, run.world)
    precision, _ = choose_precision(config.precision, "train", detect_cpu(), device=device.type)
    say = print if run.main else (lambda line: None)
    forward = fastpath.CompiledStep(_forward_loss(trained, loss, device, precision), config.compile, say)
    return _Job(
        model,
        trained,
        loss,
        optimizer,
        anchor,
        training_data,
        validation_data,
        device,
        info["step"],
        info.get("best", {}),
        precision,
        forward,
    )


def calibrate_before_training(job: _Job, config: TrainConfig, world: int) -> None:
    """Layer weights from the starting model's distances on ``calibration_steps`` batches of items
    that training never draws (counted down from the end of the item stream)."""
    feature = job.loss.feature
    job.model.eval()
    with torch.no_grad():
        for step in range(config.loss.calibration_steps):
            last = len(job.training_data) - 1 - step * config.batch_size
            batch = _collate([job.training_data[last - i] for i in range(config.batch_size)])
            noisy, clean = level_normalise(
                batch["noisy"].to(job.device), batch["clean"].to(job.device), config.model.input_rms_db
            )
            with fastpath.autocast(job.device, job.precision):
                _, distances = feature(job.model(noisy).float(), clean)
            if feature.record(distances):
                feature.finish_calibration((lambda t: distrib.average(t, world)) if world > 1 else None)
    set_training_mode(job.model, config)


def _train_step(
    job: _Job, batch: dict[str, torch.Tensor], config: TrainConfig, world: int
) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """One optimisation step: (total loss, its terms, gradient norm)."""
    noisy, clean = level_normalise(
        batch["noisy"].to(job.device), batch["clean"].to(job.device), config.model.input_rms_db
    )
    total, terms = job.forward(noisy, clean)
    if job.anchor is not None:
        terms["anchor"] = sum((p - a).pow(2).sum() for p, a in zip(job.model.parameters(), job.anchor))
        total = total + config.loss.anchor * terms["anchor"]
    job.optimizer.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = (
        torch.nn.utils.clip_grad_norm_(job.model.parameters(), config.grad_clip)
        if config.grad_clip
        else torch.tensor(0.0)
    )
    job.optimizer.step()
    if job.loss.feature is not None and job.loss.feature.record(terms["feature_layers"]):
        job.loss.feature.finish_calibration((lambda t: distrib.average(t, world)) if world > 1 else None)
    return total, terms, grad_norm


def _validate(job: _Job, config: TrainConfig, run: Run, log, step: int, bar: tqdm, keep_best: bool = True) -> None:
    """Score the validation set, log it, and save ``best/`` when PESQ improved (rank 0)."""
    scores = validate(job.model, job.validation_data, job.loss, config, job.device)
    log.write({"step": step, **scores})
    if keep_best and "pesq" in scores and scores["pesq"] > job.best.get("pesq", -math.inf):
        job.best = {"step": step, **scores}
        _save(job.model, run.output / "best", config, step, job.best, scores)
    bar.write(f"step {step}: validation {scores}")


def _averaged(total: torch.Tensor, terms: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """The logged loss terms, averaged over every process (not rank 0's share alone; all ranks call this)."""
    logged = {"loss": total, **{k: v for k, v in terms.items() if k in LOGGED_TERMS}}
    return {k: distrib.average(v.detach(), world).item() for k, v in logged.items()}


def _log_row(
    step: int,
    learning_rate: float,
    logged: dict[str, float],
    grad_norm: torch.Tensor,
    seconds: float,
    config: TrainConfig,
    world: int,
    precision: str,
) -> dict[str, str]:
    return {
        "step": step,
        "learning_rate": f"{learning_rate:.3e}",
        **{k: f"{v:.6g}" for k, v in logged.items()},
        "grad_norm": f"{float(grad_norm):.4g}",
        "seconds": f"{seconds:.3f}",
        "audio_seconds_per_second": f"{config.batch_size * world * config.mixing.segment_seconds / seconds:.3f}",
        "precision": precision,
    }


def _checkpoint(job: _Job, config: TrainConfig, run: Run, step: int) -> None:
    """Model directory plus optimizer, loss calibration and RNG (the frozen loss network is not saved)."""
    loss_state = {f"loss.{k}": v for k, v in job.loss.state_dict().items() if not k.startswith("feature.lossnet.")}
    run.checkpoint(
        step,
        job.optimizer,
        lambda staging: _save(job.model, staging, config, step, job.best),
        loss_state,
        {"config": config.to_dict(), "best": job.best},
    )


def train(
    config: TrainConfig, resume: bool = False, progress: bool = True, on_step: Callable[[int], None] | None = None
) -> Path:
    """Run (or resume) a training job; returns the run folder. ``best/`` holds the best validated model."""
    run = Run(config.output, resume, config.time_budget_minutes, config.keep_checkpoints, config.threads)
    try:
        job = _set_up(config, run)
    except BaseException:
        run.abandon_if_empty()
        raise
    run.start(config.to_dict())
    step = job.step
    if run.main:
        logger.info(fastpath.describe(config.precision, job.precision, job.forward.enabled))
    if config.loss.calibrate_before_training and job.loss.feature is not None and job.loss.feature.calibrating:
        calibrate_before_training(job, config, run.world)
    log, validation_log = run.log("log.csv", LOG_COLUMNS, step), run.log("validation.csv", VALIDATION_COLUMNS, step)
    length = len(job.training_data) if isinstance(job.training_data, PairDataset) else None
    loader = torch.utils.data.DataLoader(
        job.training_data,
        batch_sampler=StepBatches(step, config.max_steps, config.batch_size, run.rank, run.world, length),
        num_workers=config.workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    bar = tqdm(
        total=config.max_steps, initial=step, disable=not progress or not run.main, unit="step", dynamic_ncols=True
    )
    if run.main and step == 0:
        # The starting point as a model directory, so that a run can be compared with where it began.
        _save(job.model, run.output / "initial", config, 0, {})
        if config.validate_every <= config.max_steps:
            _validate(job, config, run, validation_log, 0, bar, keep_best=False)  # the starting point, for the curve
    run.start_clock()
    for batch in loader:
        started = time.perf_counter()
        learning_rate = learning_rate_at(step, config)
        set_learning_rate(job.optimizer, learning_rate)
        total, terms, grad_norm = _train_step(job, batch, config, run.world)
        step += 1
        logged = _averaged(total, terms, run.world)
        bar.update(1)
        bar.set_postfix(loss=f"{logged['loss']:.4g}")
        if log is not None:
            log.write(
                _log_row(
                    step,
                    learning_rate,
                    logged,
                    grad_norm,
                    time.perf_counter() - started,
                    config,
                    run.world,
                    job.precision,
                )
            )
        if step == job.step + 1 and job.forward.enabled and run.main:
            bar.write(f"first step {time.perf_counter() - started:.1f} s, torch.compile's compilation included")
        if run.main and (step % config.validate_every == 0 or step == config.max_steps):
            _validate(job, config, run, validation_log, step, bar)
        if run.end_step(
            step,
            config.checkpoint_every,
            config.max_steps,
            job.device,
            lambda: _checkpoint(job, config, run, step),
            on_step,
            bar.write,
        ):
            break
    bar.close()
    if run.main:
        write_run_summary(run.output)
    run.finish()
    return run.output


def _arithmetic(log: list[dict], config: dict) -> str:
    """What the logged steps ran in (precision per step; compiled or not), for the summary."""
    ran = sorted({row.get("precision") or "float32" for row in log}) or ["none"]
    compiled = config.get("compile", False)
    return f"{' then '.join(ran)} (requested `{config.get('precision', 'float32')}`), torch.compile {'on' if compiled else 'off'}"


def write_run_summary(output: Path) -> Path:
    """``summary.md`` of a run folder: configuration, machine, steps, time, validation curve."""
    import platform

    log, validation = read_log(output / "log.csv"), read_log(output / "validation.csv")
    config = json.loads((output / RUN_CONFIG_FILE).read_text())
    seconds = sum(float(r["seconds"]) for r in log)
    speed = [float(r["audio_seconds_per_second"]) for r in log]
    lines = [
        f"# Run `{output.name}`",
        "",
        f"- Machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, torch {torch.__version__}, device `{config['device']}`, threads {config['threads']}.",
        f"- Steps: {log[-1]['step'] if log else 0} of {config['max_steps']}; training time {seconds / 60:.1f} min "
        f"(sum of step times, validation excluded); median {np.median(speed) if speed else 0:.2f} s of audio per second.",
        f"- Start: `{config['init']}`; loss {config['loss']}; normalisation `{config['model']['norm']}`"
        f"{' (statistics frozen)' if config.get('freeze_norm_statistics') else ''}; batch {config['batch_size']} x {config['mixing']['segment_seconds']} s.",
        f"- Arithmetic: {_arithmetic(log, config)}.",
        "- Configuration: `train_config.json`; per-step log: `log.csv`.",
        "",
        "| step | validation loss | PESQ-WB | STOI | SI-SDR (dB) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['step']} | {r['loss']} | {r['pesq']} | {r['stoi']} | {r['si_sdr']} |" for r in validation]
    path = output / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path
