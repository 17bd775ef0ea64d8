"""Training the loss network on acoustic scene classification and sound tagging (its own loop).

Each step draws one crop length, log-uniform in ``crop_seconds`` (the authors used crops of varying
length), and a batch for each task; the task losses (cross-entropy for scenes, binary cross-entropy
for tags) are summed or alternated. Checkpoints and ``--resume`` work as in :mod:`hushnet.train`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm import tqdm

from hushnet.checkpoint import (
    CHECKPOINTS_DIR, latest_checkpoint, publish_checkpoint, read_training_state, save_model, write_atomic_text,
    write_training_state,
)
from hushnet.data.scenes import SceneDataset, TagDataset, chime_home, dcase2016_scenes, noise_scenes, speech_and_noise_tags
from hushnet.data.sources import AudioCache
from hushnet.models.lossnet import LossNet, LossNetConfig

ESC10_CLASSES = ("baby_cry", "chainsaw", "clock_tick", "dog_bark", "fire_crackling", "helicopter", "person_sneeze", "rain", "rooster", "sea_waves")


@dataclass
class LossNetTrainConfig:
    """One loss-network training job."""

    output: str = "runs/lossnet"
    data: str | None = "../shared/data"  # our own scene and tag tasks
    dcase_scenes: str | None = None  # TUT Acoustic Scenes 2016 development folder (replaces our scene task)
    dcase_fold: int = 1
    chime_home: str | None = None  # CHiME-Home folder (replaces our tag task)
    chime_fold: int = 0
    tag_noise_classes: tuple[str, ...] = ESC10_CLASSES
    layers: int = 14
    base_channels: int = 32
    crop_seconds: tuple[float, float] = (0.5, 4.0)
    evaluation_seconds: float = 4.0
    evaluation_tag_items: int = 300
    tasks: str = "sum"  # "sum": both task losses every step; "alternate": one task per step
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = 3000
    evaluate_every: int = 500
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LossNetTrainConfig":
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown loss-network training keys: {sorted(unknown)}")
        return cls(**values)


@dataclass
class Tasks:
    scene_train: SceneDataset
    scene_eval: SceneDataset
    scene_names: list[str]
    tag_train: TagDataset
    tag_eval: TagDataset
    tag_names: list[str] = field(default_factory=list)


def build_tasks(config: LossNetTrainConfig) -> Tasks:
    cache = AudioCache()
    if config.dcase_scenes:
        scene_train, scene_eval, scene_names = dcase2016_scenes(config.dcase_scenes, config.dcase_fold)
    elif config.data:
        scene_train, scene_eval, scene_names = noise_scenes(config.data)
    else:
        raise ValueError("no scene data: give --data or --dcase-scenes")
    if config.chime_home:
        tag_train_clips, tag_eval_clips, _ = chime_home(config.chime_home, config.chime_fold)
        tag_train, tag_eval = TagDataset(tag_train_clips, seed=config.seed, cache=cache), TagDataset(tag_eval_clips, seed=config.seed + 1, cache=cache)
    elif config.data:
        tag_train = speech_and_noise_tags(config.data, config.tag_noise_classes, "train", config.seed, cache)
        tag_eval = speech_and_noise_tags(config.data, config.tag_noise_classes, "held-out", config.seed + 1, cache)
    else:
        raise ValueError("no tagging data: give --data or --chime-home")
    return Tasks(SceneDataset(scene_train, config.seed, cache=cache), SceneDataset(scene_eval, config.seed + 1, gain_db=0.0, cache=cache),
                 scene_names, tag_train, tag_eval, tag_train.tag_names)


# --- metrics (hand-written: two short formulas, not worth a scikit-learn dependency) --------------


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the precision-recall curve as the mean precision at each positive (no interpolation)."""
    order = np.argsort(-scores, kind="stable")
    hits = truth[order] > 0
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].mean())


def equal_error_rate(scores: np.ndarray, truth: np.ndarray) -> float:
    """The error rate where false-positive and false-negative rates are equal (DCASE 2016 task 4's metric)."""
    positives, negatives = truth > 0, truth <= 0
    if not positives.any() or not negatives.any():
        return float("nan")
    thresholds = np.unique(scores)
    fpr = np.array([(scores[negatives] >= t).mean() for t in thresholds])
    fnr = np.array([(scores[positives] < t).mean() for t in thresholds])
    best = int(np.argmin(np.abs(fpr - fnr)))
    return float((fpr[best] + fnr[best]) / 2)


def evaluate(network: LossNet, tasks: Tasks, config: LossNetTrainConfig, device: torch.device) -> dict:
    """Held-out scene accuracy (+ confusion matrix) and tagging mAP / mean EER."""
    samples = int(config.evaluation_seconds * 16000)
    network.eval()
    classes = len(tasks.scene_names)
    confusion = np.zeros((classes, classes), np.int64)
    tag_scores, tag_truth = [], []
    with torch.no_grad():
        # Batch statistics normalise the classifier: mix the classes within each evaluation batch.
        order = np.random.default_rng(config.seed).permutation(len(tasks.scene_eval))
        for start in range(0, len(order), 32):
            items = [tasks.scene_eval.item(int(i), samples) for i in order[start : start + 32]]
            logits, _ = network.classify(torch.from_numpy(np.stack([a for a, _ in items])).to(device))
            for (_, label), predicted in zip(items, logits.argmax(dim=1).tolist()):
                confusion[label, predicted] += 1
        count = min(len(tasks.tag_eval), config.evaluation_tag_items)
        for start in range(0, count, 32):
            items = [tasks.tag_eval.item(i, samples) for i in range(start, min(start + 32, count))]
            _, logits = network.classify(torch.from_numpy(np.stack([a for a, _ in items])).to(device))
            tag_scores.append(torch.sigmoid(logits).cpu().numpy())
            tag_truth.append(np.stack([t for _, t in items]))
    network.train()
    scores, truth = np.concatenate(tag_scores), np.concatenate(tag_truth)
    precisions = [average_precision(scores[:, k], truth[:, k]) for k in range(truth.shape[1])]
    errors = [equal_error_rate(scores[:, k], truth[:, k]) for k in range(truth.shape[1])]
    evaluated = confusion.sum(axis=1) > 0
    return {
        "scene_accuracy": round(float(np.trace(confusion) / max(confusion.sum(), 1)), 4),
        "scene_chance": round(float(confusion.sum(axis=1).max() / max(confusion.sum(), 1)), 4),
        "scene_classes_evaluated": int(evaluated.sum()),
        "tag_map": round(float(np.nanmean(precisions)), 4),
        "tag_map_chance": round(float(np.nanmean(truth.mean(axis=0))), 4),
        "tag_eer": round(float(np.nanmean(errors)), 4),
        "tag_ap": {name: round(ap, 4) for name, ap in zip(tasks.tag_names, precisions)},
        "confusion": confusion.tolist(),
    }


def plot_confusion(confusion: list[list[int]], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    figure, axes = plt.subplots(figsize=(7, 6))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (row, column), value in np.ndenumerate(matrix):
        if value:
            axes.text(column, row, str(value), ha="center", va="center", fontsize=6)
    axes.set_title("held-out scene confusion")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def model_card(config: LossNetTrainConfig, step: int, scores: dict, tasks: Tasks) -> str:
    scene_source = f"DCASE 2016 task 1 fold {config.dcase_fold} (`{config.dcase_scenes}`)" if config.dcase_scenes else f"labelled noise recordings of `{config.data}/noise`"
    tag_source = f"CHiME-Home fold {config.chime_fold} (`{config.chime_home}`)" if config.chime_home else f"mixtures of `{config.data}` speech and noise"
    lines = [
        "# hushnet loss network", "",
        f"{config.layers} strided 3-tap conv layers ({config.base_channels}/64/128 channels), per-input batch norm, LeakyReLU(0.2),",
        "as in Germain, Chen & Koltun (2018); trained here, step {0} of {1}, batch {2} per task, crops of {3[0]}-{3[1]} s.".format(step, config.max_steps, config.batch_size, config.crop_seconds), "",
        f"- Scene task: {len(tasks.scene_names)} classes from {scene_source}.",
        f"- Tag task: {len(tasks.tag_names)} tags ({', '.join(tasks.tag_names)}) from {tag_source}.",
    ]
    if scores:
        lines += [
            f"- Held-out scene accuracy **{scores['scene_accuracy']:.3f}** (majority-class chance {scores['scene_chance']:.3f}, "
            f"{scores['scene_classes_evaluated']} classes evaluated).",
            f"- Held-out tagging mAP **{scores['tag_map']:.3f}** (chance = tag prior {scores['tag_map_chance']:.3f}), mean EER {scores['tag_eer']:.3f}.",
        ]
    return "\n".join(lines) + "\n"


def _learning_rate(step: int, config: LossNetTrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_lossnet(config: LossNetTrainConfig, resume: bool = False, progress: bool = True, on_step: Callable[[int], None] | None = None) -> Path:
    """Run or resume a loss-network job; the frozen result goes to OUTPUT/lossnet (a model directory)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    output = Path(config.output)
    latest = latest_checkpoint(output) if resume else None
    if not resume and (output / CHECKPOINTS_DIR).exists():
        raise FileExistsError(f"{output} already holds a run: pass --resume to continue it, or choose another --output")
    output.mkdir(parents=True, exist_ok=True)
    tasks = build_tasks(config)
    torch.manual_seed(config.seed)
    network = LossNet(LossNetConfig(layers=config.layers, base_channels=config.base_channels, scene_classes=len(tasks.scene_names),
                                    tags=len(tasks.tag_names), scene_names=tasks.scene_names, tag_names=tasks.tag_names)).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    step, scores = 0, {}
    if latest is not None:
        network.load_state_dict(load_file(str(latest / "model.safetensors")))
        _, info = read_training_state(latest, optimizer)
        step, scores = info["step"], info.get("scores", {})
    elif resume:
        print(f"no checkpoint in {output}: starting from step 0", file=sys.stderr)
    write_atomic_text(output / "train_config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    log_path = output / "log.csv"
    if step == 0 or not log_path.is_file():
        log_path.write_text("step,learning_rate,scene_loss,tag_loss\n")
    low, high = config.crop_seconds
    network.train()
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    while step < config.max_steps:
        rng = np.random.default_rng([config.seed, step, 7])
        samples = int(16000 * math.exp(rng.uniform(math.log(low), math.log(high))))
        learning_rate = _learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        first = step * config.batch_size
        indices = range(first, first + config.batch_size)
        do_scenes = config.tasks == "sum" or step % 2 == 0
        do_tags = config.tasks == "sum" or step % 2 == 1
        total, losses = 0.0, {}
        if do_scenes:
            items = [tasks.scene_train.item(len(tasks.scene_train) + i, samples) for i in indices]
            logits, _ = network.classify(torch.from_numpy(np.stack([a for a, _ in items])).to(device))
            losses["scene_loss"] = F.cross_entropy(logits, torch.tensor([label for _, label in items], device=device))
            total = total + losses["scene_loss"]
        if do_tags:
            items = [tasks.tag_train.item(i, samples) for i in indices]
            _, logits = network.classify(torch.from_numpy(np.stack([a for a, _ in items])).to(device))
            losses["tag_loss"] = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(np.stack([t for _, t in items])).to(device))
            total = total + losses["tag_loss"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
        optimizer.step()
        step += 1
        with open(log_path, "a") as handle:
            handle.write(f"{step},{learning_rate:.3e},{losses['scene_loss'].item() if 'scene_loss' in losses else ''},{losses['tag_loss'].item() if 'tag_loss' in losses else ''}\n")
        bar.update(1)
        bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
        if step % config.evaluate_every == 0 or step == config.max_steps:
            scores = evaluate(network, tasks, config, device)
            with open(output / "evaluation.jsonl", "a") as handle:
                handle.write(json.dumps({"step": step, **{k: v for k, v in scores.items() if k != "confusion"}}) + "\n")
            plot_confusion(scores["confusion"], tasks.scene_names, output / "confusion.png")
            bar.write(f"step {step}: scene accuracy {scores['scene_accuracy']} (chance {scores['scene_chance']}), "
                      f"tag mAP {scores['tag_map']} (chance {scores['tag_map_chance']}), EER {scores['tag_eer']}")
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            card = model_card(config, step, scores, tasks)
            extra = {"config": config.to_dict(), "scores": {k: v for k, v in scores.items()}}

            def write(staging: Path) -> None:
                save_model(network, staging, card, {"training": {"step": step}})
                write_training_state(staging, step, optimizer, {}, extra)

            publish_checkpoint(output, step, write, config.keep_checkpoints)
        if on_step is not None:
            on_step(step)
    bar.close()
    card = model_card(config, step, scores, tasks)
    save_model(network.eval(), output / "lossnet", card, {"training": {"step": step, "config": config.to_dict(), "scores": {k: v for k, v in scores.items() if k != "confusion"}}})
    return output
