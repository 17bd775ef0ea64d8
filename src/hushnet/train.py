"""The denoiser's training loop: one readable loop in the manner of nanoGPT.

``TrainConfig`` is the whole job. Checkpoints go to ``OUTPUT/checkpoints/step_NNNNNNN/`` (a model
directory plus the training state, all safetensors/JSON, no pickle), published by atomically
rewriting ``OUTPUT/checkpoints/latest``; a run killed at any instant resumes from the last complete
one and continues bit-exactly on CPU, because the data a step sees is a function of the step alone.
Data parallel under ``torchrun`` (gloo on CPU, NCCL on GPU): process r of w takes the samples
``(step * w + r) * batch ... + batch - 1`` of the seeded stream.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from tqdm import tqdm

from hushnet.checkpoint import (
    CHECKPOINTS_DIR, latest_checkpoint, load_model, publish_checkpoint, read_config, read_training_state, resolve_model_dir, save_model,
    write_atomic_text, write_training_state,
)
from hushnet.data.mixing import MixingConfig, MixtureDataset
from hushnet.data.pairs import VALENTINI_VALIDATION_SPEAKERS, PairDataset, folder_pairs, split_pairs, valentini_pairs
from hushnet.data.sources import AudioCache, impulse_responses, noise_clips, speech_utterances
from hushnet.data.splits import select
from hushnet.loss import LossConfig, TrainingLoss
from hushnet.metrics import pesq_score, si_sdr
from hushnet.models.can import CAN, CANConfig, to_batch_mode

DEFAULT_DATA = "../shared/data"



@dataclass
class TrainConfig:
    """One training job. Saved as ``train_config.json`` in the run folder and in every checkpoint."""

    output: str = "runs/hushnet"
    # Data: a ``../shared/data``-style root (speech/, noise/, rir/) mixed on the fly, or a Valentini
    # root, or a clean/noisy folder pair. The first one given is used.
    data: str | None = DEFAULT_DATA
    valentini: str | None = None
    clean: str | None = None
    noisy: str | None = None
    mixing: MixingConfig = field(default_factory=MixingConfig)
    # Model: "identity" (dilated layers start near identity), "default" (PyTorch init), or a model
    # directory / shipped name to fine-tune from.
    # -23 dBFS: the typical RMS of Valentini noisy files, the level the authors trained at.
    model: CANConfig = field(default_factory=lambda: CANConfig(input_rms_db=-23.0))
    init: str = "identity"
    freeze_norm_statistics: bool = False  # batch mode: train with the running statistics fixed
    loss: LossConfig = field(default_factory=LossConfig)
    # Optimisation
    batch_size: int = 8
    learning_rate: float = 3e-4
    min_learning_rate: float = 3e-5
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_steps: int = 10_000
    # Wall-clock budget of this process (a lent GPU, a CI slot): checkpoint and stop once it is spent;
    # --resume continues from there, exactly as after an interruption.
    time_budget_minutes: float | None = None
    autocast: bool = False  # bf16 autocast (GPU, or CPUs with bf16 support)
    # Bookkeeping
    seed: int = 0
    validate_every: int = 500
    validation_items: int = 16
    validation_seconds: float = 4.0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    device: str = "cpu"
    threads: int | None = None
    workers: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = dict(values)
        nested = {"mixing": MixingConfig, "model": CANConfig, "loss": LossConfig}
        for key, kind in nested.items():
            if isinstance(values.get(key), dict):
                sub = dict(values[key])
                for name, value in sub.items():
                    if isinstance(value, list):
                        sub[name] = tuple(value)
                values[key] = kind(**sub)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**values)


# --- data ---------------------------------------------------------------------------------------


def _mixture_sets(config: TrainConfig, cache: AudioCache) -> tuple[MixtureDataset, MixtureDataset]:
    root = Path(config.data)
    if not (root / "speech").exists() or not (root / "noise").exists():
        raise FileNotFoundError(f"'{root}' needs speech/ and noise/ folders (with manifest.csv or audio files)")
    speech = speech_utterances(root / "speech")
    noise = noise_clips(root / "noise")
    rooms = impulse_responses(root / "rir") if (root / "rir").exists() else []
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
    training = MixtureDataset(train_speech, train_noise, select(rooms, "train"), config.mixing, config.seed, 10**9, cache)
    validation_mixing = MixingConfig(**{**config.mixing.to_dict(), "segment_seconds": config.validation_seconds})
    validation = MixtureDataset(
        validation_speech or train_speech, validation_noise or train_noise, select(rooms, "validation"),
        validation_mixing, config.seed + 1, config.validation_items, cache,
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
    return PairDataset(training, segment, config.seed, cache), PairDataset(validation[: config.validation_items], validation_segment, config.seed + 1, cache)


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

    def __init__(self, start_step: int, max_steps: int, batch_size: int, rank: int = 0, world: int = 1, length: int | None = None) -> None:
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


def level_normalise(noisy: torch.Tensor, clean: torch.Tensor, level_db: float | None) -> tuple[torch.Tensor, torch.Tensor]:
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
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    return config.min_learning_rate + 0.5 * (1 + math.cos(math.pi * progress)) * (config.learning_rate - config.min_learning_rate)


# --- checkpoints --------------------------------------------------------------------------------


def save_checkpoint(output: Path, step: int, model: CAN, optimizer: torch.optim.Optimizer, loss: TrainingLoss, config: TrainConfig, extra: dict) -> Path:
    """A complete checkpoint folder (model directory + training state), published atomically."""

    def write(staging: Path) -> None:
        save_model(model, staging, model_card(config, step, extra), {"training": {"step": step, "config": config.to_dict()}})
        loss_state = {f"loss.{k}": v for k, v in loss.state_dict().items() if not k.startswith("feature.lossnet.")}
        write_training_state(staging, step, optimizer, loss_state, {"config": config.to_dict(), **extra})

    return publish_checkpoint(output, step, write, config.keep_checkpoints)


def load_checkpoint(directory: Path, model: CAN, optimizer: torch.optim.Optimizer, loss: TrainingLoss) -> dict:
    """Restore model, optimizer, loss calibration and RNG from a checkpoint; returns its info."""
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    tensors, info = read_training_state(directory, optimizer)
    loss.load_state_dict({k[len("loss."):]: v for k, v in tensors.items() if k.startswith("loss.")}, strict=False)
    return info


def model_card(config: TrainConfig, step: int, extra: dict) -> str:
    source = config.valentini or (f"{config.clean} + {config.noisy}" if config.clean else config.data)
    lines = [
        "# hushnet CAN (training checkpoint)", "",
        f"- Step {step} of {config.max_steps}, batch {config.batch_size} x {config.mixing.segment_seconds} s, init `{config.init}`.",
        f"- Normalisation `{config.model.norm}`, input level {config.model.input_rms_db} dBFS, {config.model.channels} channels.",
        f"- Loss: feature {config.loss.feature} (loss network `{config.loss.lossnet}`), L1 {config.loss.l1}, L2 {config.loss.l2}.",
        f"- Data: `{source}`.",
    ]
    if extra.get("best"):
        lines.append(f"- Best validation so far: {json.dumps(extra['best'])}.")
    return "\n".join(lines) + "\n"


# --- the loop -----------------------------------------------------------------------------------


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.stack([item[key] for item in items])) for key in ("noisy", "clean")}


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get("HUSHNET_BACKEND") != "gloo" else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def _out_of_time(run_started: float, budget_minutes: float | None, device: torch.device, world: int) -> bool:
    """Whether the wall-clock budget is spent; under DDP every process follows rank 0's clock."""
    if budget_minutes is None:
        return False
    spent = torch.tensor([float(time.monotonic() - run_started > budget_minutes * 60)], device=device)
    if world > 1:
        dist.broadcast(spent, src=0)
    return bool(spent.item())


def validate(model: CAN, dataset, loss: TrainingLoss, config: TrainConfig, device: torch.device) -> dict:
    """Validation loss, PESQ-WB, STOI and SI-SDR over the validation items (each processed whole)."""
    from pystoi import stoi

    model.eval()
    totals: dict[str, list[float]] = {"loss": [], "pesq": [], "stoi": [], "si_sdr": []}
    rate = config.mixing.sample_rate
    with torch.no_grad():
        for index in range(len(dataset)):
            item = _collate([dataset[index]])
            noisy, clean = level_normalise(item["noisy"].to(device), item["clean"].to(device), config.model.input_rms_db)
            denoised = model(noisy).float()
            totals["loss"].append(float(loss(denoised, clean)[0]))
            reference, estimate = clean[0].cpu().numpy(), denoised[0].cpu().numpy()
            if np.any(reference):
                totals["pesq"].append(pesq_score(reference, estimate, rate))
                totals["stoi"].append(float(stoi(reference, estimate, rate, extended=False)))
                totals["si_sdr"].append(si_sdr(reference, estimate))
    set_training_mode(model, config)
    return {key: round(float(np.mean(values)), 4) for key, values in totals.items() if values}


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint a resumed run restarts from."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)


class _CSVLog:
    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns
        if not path.is_file():
            with open(path, "w", newline="") as handle:
                csv.writer(handle).writerow(columns)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([row.get(c, "") for c in self.columns])


def train(config: TrainConfig, resume: bool = False, progress: bool = True, on_step: Callable[[int], None] | None = None) -> Path:
    """Run (or resume) a training job; returns the run folder. ``best/`` holds the best validated model."""
    rank, world = _distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    if world > 1 and device.type == "cuda":  # one GPU per process under torchrun
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    output = Path(config.output)
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
    latest = latest_checkpoint(output) if resume else None
    if resume and latest is None and rank == 0:
        print(f"no checkpoint in {output}: starting from step 0", file=sys.stderr)
    if latest is None and not resume and (output / CHECKPOINTS_DIR).exists() and rank == 0:
        raise FileExistsError(f"{output} already holds a run: pass --resume to continue it, or choose another --output")

    training_data, validation_data = build_datasets(config)
    calibration = None
    if config.init not in ("identity", "default") and config.model.norm == "batch" and read_config(resolve_model_dir(config.init))["config"]["norm"] != "batch":
        calibration = level_normalise(*_collate([training_data[len(training_data) - 1 - i] for i in range(16)]).values(), config.model.input_rms_db)[0]
    model = build_model(config, calibration).to(device)
    # The starting weights, for the L2-SP pull (taken before a checkpoint replaces them on resume).
    anchor = [p.detach().clone() for p in model.parameters()] if config.loss.anchor else None
    lossnet = load_model(config.loss.lossnet, kind="lossnet") if config.loss.feature else None
    loss = TrainingLoss(config.loss, lossnet).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.99))
    step, best = 0, {}
    if latest is not None:
        info = load_checkpoint(latest, model, optimizer, loss)
        step, best = info["step"], info.get("best", {})
        if rank == 0:
            _truncate_log(output / "log.csv", step)
            _truncate_log(output / "validation.csv", step)
    if rank == 0:
        write_atomic_text(output / "train_config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    log = _CSVLog(output / "log.csv", ["step", "learning_rate", "loss", "feature", "l1", "l2", "stft", "anchor", "grad_norm", "seconds", "audio_seconds_per_second"]) if rank == 0 else None
    validation_log = _CSVLog(output / "validation.csv", ["step", "loss", "pesq", "stoi", "si_sdr"]) if rank == 0 else None

    set_training_mode(model, config)
    trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    length = len(training_data) if isinstance(training_data, PairDataset) else None
    loader = torch.utils.data.DataLoader(
        training_data, batch_sampler=StepBatches(step, config.max_steps, config.batch_size, rank, world, length),
        num_workers=config.workers, collate_fn=_collate, persistent_workers=False,
    )
    reduce = (lambda t: (dist.all_reduce(t, op=dist.ReduceOp.SUM), t / world)[1]) if world > 1 else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.autocast)
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress or rank != 0, unit="step", dynamic_ncols=True)
    segment_seconds = config.mixing.segment_seconds
    if rank == 0 and step == 0:
        # The starting point as a model directory, so that a run can be compared with where it began.
        save_model(model, output / "initial", model_card(config, 0, {}), {"training": {"step": 0, "config": config.to_dict()}})
    if rank == 0 and step == 0 and config.validate_every <= config.max_steps:
        scores = validate(model, validation_data, loss, config, device)  # the starting point, for the curve
        validation_log.write({"step": 0, **scores})
        bar.write(f"step 0: validation {scores}")
    run_started = time.monotonic()
    for batch in loader:
        started = time.perf_counter()
        learning_rate = learning_rate_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        noisy, clean = level_normalise(batch["noisy"].to(device), batch["clean"].to(device), config.model.input_rms_db)
        with autocast:
            denoised = trained(noisy)
            total, terms = loss(denoised.float(), clean)
        if anchor is not None:
            terms["anchor"] = sum((p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor))
            total = total + config.loss.anchor * terms["anchor"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip) if config.grad_clip else torch.tensor(0.0)
        optimizer.step()
        if loss.feature is not None and loss.feature.record(terms["feature_layers"]):
            loss.feature.finish_calibration(reduce)
        step += 1
        elapsed = time.perf_counter() - started
        bar.update(1)
        bar.set_postfix(loss=f"{total.item():.4g}")
        if log is not None:
            log.write({
                "step": step, "learning_rate": f"{learning_rate:.3e}", "loss": f"{total.item():.6g}",
                **{k: f"{terms[k].item():.6g}" for k in ("feature", "l1", "l2", "stft", "anchor") if k in terms},
                "grad_norm": f"{float(grad_norm):.4g}", "seconds": f"{elapsed:.3f}",
                "audio_seconds_per_second": f"{config.batch_size * world * segment_seconds / elapsed:.3f}",
            })
        if rank == 0 and (step % config.validate_every == 0 or step == config.max_steps):
            scores = validate(model, validation_data, loss, config, device)
            validation_log.write({"step": step, **scores})
            if "pesq" in scores and scores["pesq"] > best.get("pesq", -math.inf):
                best = {"step": step, **scores}
                save_model(model, output / "best", model_card(config, step, {"best": best}), {"training": {"step": step, "config": config.to_dict(), "validation": scores}})
            bar.write(f"step {step}: validation {scores}")
        out_of_time = _out_of_time(run_started, config.time_budget_minutes, device, world)
        if rank == 0 and (step % config.checkpoint_every == 0 or step == config.max_steps or out_of_time):
            save_checkpoint(output, step, model, optimizer, loss, config, {"best": best})
        if on_step is not None:
            on_step(step)
        if out_of_time:
            bar.write(f"time budget of {config.time_budget_minutes} min spent at step {step}: checkpoint written, --resume continues")
            break
    bar.close()
    if rank == 0:
        write_run_summary(output)
    if world > 1:
        dist.barrier()
    return output


def write_run_summary(output: Path) -> Path:
    """``summary.md`` of a run folder: configuration, machine, steps, time, validation curve."""
    import platform

    def rows(name: str) -> list[dict]:
        path = output / name
        if not path.is_file():
            return []
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))

    log, validation = rows("log.csv"), rows("validation.csv")
    config = json.loads((output / "train_config.json").read_text())
    seconds = sum(float(r["seconds"]) for r in log)
    speed = [float(r["audio_seconds_per_second"]) for r in log]
    lines = [
        f"# Run `{output.name}`", "",
        f"- Machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, torch {torch.__version__}, device `{config['device']}`, threads {config['threads']}.",
        f"- Steps: {log[-1]['step'] if log else 0} of {config['max_steps']}; training time {seconds / 60:.1f} min "
        f"(sum of step times, validation excluded); median {np.median(speed) if speed else 0:.2f} s of audio per second.",
        f"- Start: `{config['init']}`; loss {config['loss']}; normalisation `{config['model']['norm']}`"
        f"{' (statistics frozen)' if config.get('freeze_norm_statistics') else ''}; batch {config['batch_size']} x {config['mixing']['segment_seconds']} s.",
        "- Configuration: `train_config.json`; per-step log: `log.csv`.", "",
        "| step | validation loss | PESQ-WB | STOI | SI-SDR (dB) |", "|---|---|---|---|---|",
    ]
    lines += [f"| {r['step']} | {r['loss']} | {r['pesq']} | {r['stoi']} | {r['si_sdr']} |" for r in validation]
    path = output / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def config_with(base: TrainConfig, overrides: dict) -> TrainConfig:
    """``base`` with dotted-key overrides applied, e.g. ``{"model.norm": "batch", "max_steps": 50}``."""
    values = base.to_dict()
    for key, value in overrides.items():
        target = values
        *parents, name = key.split(".")
        for parent in parents:
            target = target[parent]
        if name not in target:
            raise ValueError(f"unknown training option {key!r}")
        target[name] = value
    return TrainConfig.from_dict(values)


def load_run_config(output: str | os.PathLike) -> TrainConfig | None:
    """The configuration a run folder was started with (None for a new folder)."""
    path = Path(output) / "train_config.json"
    return TrainConfig.from_dict(json.loads(path.read_text())) if path.is_file() else None
