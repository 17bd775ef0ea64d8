"""The denoiser's trainer: its data, model, loss and validation, run by the shared loop.

``TrainConfig`` is the whole job. Checkpoints go to ``OUTPUT/checkpoints/step_NNNNNNN/`` (a model
directory plus the training state, all safetensors/JSON, no pickle), published by atomically
rewriting ``OUTPUT/checkpoints/latest``; a run killed at any instant resumes from the last complete
one and continues bit-exactly on CPU, because the data a step sees is a function of the step alone.
Data parallel under ``torchrun`` (gloo on CPU, NCCL on GPU): ``batch_size`` is per process, and
process r of w takes the samples ``(step * w + r) * batch ... + batch - 1`` of the seeded stream.
The loop itself (one flat loop in the manner of nanoGPT), the schedule, logs, checkpoints, resume
and time budget are the shared skeleton's (:mod:`hushnet.training.skeleton`); ``DenoiserTrainer``
supplies the rest.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
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
from hushnet.inference.choice import PRECISION_HELP, PRECISIONS
from hushnet.loss import LossConfig, TrainingLoss
from hushnet.metrics import pesq_score, si_sdr
from hushnet.model_dir import load_model, read_config, resolve_model_dir, save_model
from hushnet.models.can import CAN, NORM_MODES, CANConfig, to_batch_mode
from hushnet.options import DEVICE_HELP, THREADS_HELP, Sub, nested, option
from hushnet.training import distrib, fastpath
from hushnet.training.skeleton import (
    RUN_CONFIG_FILE,
    Trainer,
    config_from_dict,
    get_lr,
    model_card,
    read_log,
    run_training,
)


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
        return config_from_dict(cls, values, LEGACY_KEYS, NESTED_CONFIGS, "training config keys")


# Keys of run folders written before they were renamed: (the new name, what the old value becomes).
LEGACY_KEYS = {
    "autocast": ("precision", lambda on: "bf16" if on else "float32"),  # before ``precision``: keep what that run did
}
NESTED_CONFIGS = {"mixing": MixingConfig, "model": CANConfig, "loss": LossConfig}


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
    """Index batches of the seeded sample stream for one process, one for each of ``steps``
    (``length``: that of a finite dataset, whose indices wrap around)."""

    def __init__(self, steps: range, batch_size: int, rank: int = 0, world: int = 1, length: int | None = None) -> None:
        self.steps = steps
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.length = length

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        for step in self.steps:
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


def card(config: TrainConfig, step: int, best: dict) -> str:
    """The model card of a checkpoint, ``initial/`` or ``best/``: which step of which job it is."""
    source = config.valentini or (f"{config.clean} + {config.noisy}" if config.clean else config.data)
    lines = [
        f"- Step {step} of {config.max_steps}, batch {config.batch_size} x {config.mixing.segment_seconds} s, init `{config.init}`.",
        f"- Normalisation `{config.model.norm}`, input level {config.model.input_rms_db} dBFS, {config.model.channels} channels.",
        f"- Loss: feature {config.loss.feature} (loss network `{config.loss.lossnet}`), L1 {config.loss.l1}, L2 {config.loss.l2}.",
        f"- Data: `{source}`.",
    ]
    if best:
        lines.append(f"- Best validation so far: {json.dumps(best)}.")
    return model_card("hushnet CAN (training checkpoint)", lines)


# --- validation ---------------------------------------------------------------------------------


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.stack([item[key] for item in items])) for key in ("noisy", "clean")}


def validation_scores(model: CAN, dataset, loss: TrainingLoss, config: TrainConfig, device: torch.device) -> dict:
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


# --- the trainer: what the shared loop (skeleton.run_training) runs ------------------------------

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


class DenoiserTrainer(Trainer):
    """The CAN denoiser's data (mixtures or pairs), model, loss (with the layer-weight calibration and
    the L2-SP anchor) and validation (PESQ-tracked ``best/``)."""

    log_columns = LOG_COLUMNS

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.grad_clip = config.grad_clip
        self.best: dict = {}  # the best validation so far, with its step

    def build(self) -> None:
        config = self.config
        self.training_data, self.validation_data = build_datasets(config)
        calibration = None
        if (
            config.init not in ("identity", "default")
            and config.model.norm == "batch"
            and read_config(resolve_model_dir(config.init))["config"]["norm"] != "batch"
        ):
            calibration = level_normalise(
                *_collate([self.training_data[len(self.training_data) - 1 - i] for i in range(16)]).values(),
                config.model.input_rms_db,
            )[0]
        self.model = build_model(config, calibration).to(self.device)
        # The starting weights, for the L2-SP pull (taken before a checkpoint replaces them on resume).
        self.anchor = [p.detach().clone() for p in self.model.parameters()] if config.loss.anchor else None
        lossnet = load_model(config.loss.lossnet, kind="lossnet") if config.loss.feature else None
        self.criterion = TrainingLoss(config.loss, lossnet).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.99)
        )

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        loss_state = {k[len("loss.") :]: v for k, v in tensors.items() if k.startswith("loss.")}
        self.criterion.load_state_dict(loss_state, strict=False)
        self.best = info.get("best", {})
        set_training_mode(self.model, self.config)
        # Wrapped once the weights are final: DDP's construction hands rank 0's weights to every process.
        self.trained = distrib.wrap(self.model, self.device, self.run.world)

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """The loss calibration (the frozen loss network is not saved) and the best validation."""
        loss = {f"loss.{k}": v for k, v in self.criterion.state_dict().items() if not k.startswith("feature.lossnet.")}
        return loss, {"best": self.best}

    def save(self, directory: Path, step: int) -> None:
        self._save(directory, step, self.best)

    def _save(self, directory: Path, step: int, best: dict, validation: dict | None = None) -> None:
        """The model as a model directory whose config.json says which step of which job it is."""
        training = {
            "step": step,
            "config": self.config.to_dict(),
            **({"validation": validation} if validation is not None else {}),
        }
        save_model(self.model, directory, card(self.config, step, best), {"training": training})

    def batches(self, start: int) -> torch.utils.data.DataLoader:
        config, run = self.config, self.run
        length = len(self.training_data) if isinstance(self.training_data, PairDataset) else None
        return torch.utils.data.DataLoader(
            self.training_data,
            batch_sampler=StepBatches(range(start, config.max_steps), config.batch_size, run.rank, run.world, length),
            num_workers=config.workers,
            collate_fn=_collate,
            persistent_workers=False,
        )

    def forward(self, noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The CAN's forward and the loss through the loss network."""
        return self.criterion(self.trained(noisy).float(), clean)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noisy, clean = level_normalise(
            batch["noisy"].to(self.device), batch["clean"].to(self.device), self.config.model.input_rms_db
        )
        total, terms = self.compiled(noisy, clean)
        if self.anchor is not None:
            terms["anchor"] = sum((p - a).pow(2).sum() for p, a in zip(self.model.parameters(), self.anchor))
            total = total + self.config.loss.anchor * terms["anchor"]
        return total, terms

    def after_step(
        self, total: torch.Tensor, terms: dict[str, torch.Tensor], grad_norm: torch.Tensor, seconds: float
    ) -> tuple[dict, dict]:
        """Record the layer distances while calibrating; log the loss terms averaged over every
        process (not rank 0's share alone: all ranks take part)."""
        config, world = self.config, self.run.world
        feature = self.criterion.feature
        if feature is not None and feature.record(terms["feature_layers"]):
            feature.finish_calibration(self._average())
        logged = {"loss": total, **{k: v for k, v in terms.items() if k in LOGGED_TERMS}}
        averaged = {k: distrib.average(v.detach(), world).item() for k, v in logged.items()}
        row = {
            **{k: f"{v:.6g}" for k, v in averaged.items()},
            "grad_norm": f"{float(grad_norm):.4g}",
            "seconds": f"{seconds:.3f}",
            "audio_seconds_per_second": f"{config.batch_size * world * config.mixing.segment_seconds / seconds:.3f}",
        }
        return row, {"loss": f"{averaged['loss']:.4g}"}

    def _average(self) -> Callable | None:
        """How the layer calibration averages its distances over the processes (None: one process)."""
        world = self.run.world
        return (lambda t: distrib.average(t, world)) if world > 1 else None

    def before_steps(self, step: int) -> None:
        """Calibrate before step one when asked; a new run keeps ``initial/`` and validates it."""
        config, feature = self.config, self.criterion.feature
        if config.loss.calibrate_before_training and feature is not None and feature.calibrating:
            self._calibrate_before_training()
        self.validation_log = self.run.log("validation.csv", VALIDATION_COLUMNS, step)
        if self.run.main and step == 0:
            # The starting point as a model directory, so that a run can be compared with where it began.
            self._save(self.run.output / "initial", 0, {})
            if config.validate_every <= config.max_steps:
                self.validate(0, keep_best=False)  # the starting point, for the curve

    def _calibrate_before_training(self) -> None:
        """Layer weights from the starting model's distances on ``calibration_steps`` batches of items
        that training never draws (counted down from the end of the item stream)."""
        config, feature = self.config, self.criterion.feature
        self.model.eval()
        with torch.no_grad():
            for step in range(config.loss.calibration_steps):
                last = len(self.training_data) - 1 - step * config.batch_size
                batch = _collate([self.training_data[last - i] for i in range(config.batch_size)])
                noisy, clean = level_normalise(
                    batch["noisy"].to(self.device), batch["clean"].to(self.device), config.model.input_rms_db
                )
                with fastpath.autocast(self.device, self.precision):
                    _, distances = feature(self.model(noisy).float(), clean)
                if feature.record(distances):
                    feature.finish_calibration(self._average())
        set_training_mode(self.model, config)

    def validate(self, step: int, keep_best: bool = True) -> None:
        """Score the validation set, log it, and save ``best/`` when PESQ improved."""
        scores = validation_scores(self.model, self.validation_data, self.criterion, self.config, self.device)
        self.validation_log.write({"step": step, **scores})
        if keep_best and "pesq" in scores and scores["pesq"] > self.best.get("pesq", -math.inf):
            self.best = {"step": step, **scores}
            self._save(self.run.output / "best", step, self.best, scores)
        tqdm.write(f"step {step}: validation {scores}")

    def finish(self, step: int) -> None:
        write_run_summary(self.run.output)


def train(
    config: TrainConfig, resume: bool = False, progress: bool = True, on_step: Callable[[int], None] | None = None
) -> Path:
    """Run (or resume) a training job; returns the run folder. ``best/`` holds the best validated model."""
    return run_training(DenoiserTrainer(config), resume, progress, on_step)


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
