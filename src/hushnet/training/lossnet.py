"""Training the loss network on acoustic scene classification and sound tagging.

Each step draws one crop length, log-uniform in ``crop_seconds`` (the authors used crops of varying
length), and a batch for each task; the task losses (cross-entropy for scenes, binary cross-entropy
for tags) are summed or alternated. ``LossNetTrainer`` supplies the data, model, losses and held-out
evaluation; the loop, schedule, log, checkpoints, ``--resume`` and the time budget are the shared
skeleton's (:mod:`hushnet.training.skeleton`), as for the denoiser.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hushnet.audio import MODEL_RATE
from hushnet.data.scenes import (
    SceneDataset,
    TagDataset,
    chime_home,
    dcase2016_scenes,
    noise_scenes,
    speech_and_noise_tags,
)
from hushnet.data.sources import DATA_HELP, DEFAULT_DATA, AudioCache, check_data_root
from hushnet.evaluate import plot_confusion
from hushnet.inference.choice import PRECISION_HELP, PRECISIONS
from hushnet.metrics import average_precision, equal_error_rate
from hushnet.model_dir import save_model
from hushnet.models.lossnet import LossNet, LossNetConfig
from hushnet.options import DEVICE_HELP, THREADS_HELP, option
from hushnet.training.skeleton import Trainer, config_from_dict, model_card, run_training

ESC10_CLASSES = (
    "baby_cry",
    "chainsaw",
    "clock_tick",
    "dog_bark",
    "fire_crackling",
    "helicopter",
    "person_sneeze",
    "rain",
    "rooster",
    "sea_waves",
)


@dataclass
class LossNetTrainConfig:
    """One loss-network training job."""

    output: str = option("runs/lossnet", short="-o", help="run folder; the result goes to OUTPUT/lossnet")
    data: str | None = option(DEFAULT_DATA, help=DATA_HELP + " (our own scene and tag tasks)")
    dcase_scenes: str | None = option(
        None,
        help="TUT Acoustic Scenes 2016 development folder (meta.txt, audio/, evaluation_setup/); replaces our scene task",
    )
    dcase_fold: int = option(1, help="its cross-validation fold")
    chime_home: str | None = option(
        None,
        help="CHiME-Home folder (chunks/, development_chunks_refined_crossval_dcase2016.csv); replaces our tag task",
    )
    chime_fold: int = option(0, help="its cross-validation fold")
    tag_noise_classes: tuple[str, ...] = ESC10_CLASSES
    layers: int = 14
    base_channels: int = 32
    crop_seconds: tuple[float, float] = (0.5, 4.0)
    evaluation_seconds: float = 4.0
    evaluation_tag_items: int = 300
    tasks: str = option("sum", choices=["sum", "alternate"], help="sum both task losses each step, or alternate")
    batch_size: int = option(16, help="clips per task and step")
    learning_rate: float = option(1e-3, help="peak AdamW learning rate")
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = option(3000, help="total steps")
    time_budget_minutes: float | None = option(
        None, help="stop with a checkpoint once this much wall-clock time is spent (--resume continues)"
    )
    # The same name as the denoiser's: steps between held-out evaluations (was ``evaluate_every``).
    validate_every: int = option(500, help="steps between held-out evaluations")
    checkpoint_every: int = option(100, help="steps between checkpoints")
    keep_checkpoints: int = 2
    seed: int = option(0, help="seed")
    device: str = option("cpu", help=DEVICE_HELP)
    threads: int | None = option(None, help=THREADS_HELP, show_default=False)
    precision: str = option("auto", choices=list(PRECISIONS), help=PRECISION_HELP)
    # Off by default: every step draws a new crop length, and a compiled graph holds one length (with
    # dynamic shapes, the symbolic sizes of 14 "SAME"-padded stride-2 layers took inductor over 20
    # minutes to simplify). bf16 on the channels-last layout needs no compiling.
    compile: bool = option(
        False, flag="--compile", help="torch.compile the step (recompiles for every new crop length)"
    )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LossNetTrainConfig":
        return config_from_dict(cls, values, LEGACY_KEYS, {}, "loss-network training keys")


# Keys of run folders written before they were renamed: (the new name, what the old value becomes).
# ``evaluate_every`` took the denoiser's name, ``validate_every``.
LEGACY_KEYS = {"evaluate_every": ("validate_every", lambda steps: steps)}


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
        scene_train, scene_eval, scene_names = noise_scenes(check_data_root(config.data))
    else:
        raise ValueError("no scene data: give --data or --dcase-scenes")
    if config.chime_home:
        tag_train_clips, tag_eval_clips, _ = chime_home(config.chime_home, config.chime_fold)
        tag_train, tag_eval = (
            TagDataset(tag_train_clips, seed=config.seed, cache=cache),
            TagDataset(tag_eval_clips, seed=config.seed + 1, cache=cache),
        )
    elif config.data:
        tag_train = speech_and_noise_tags(
            check_data_root(config.data), config.tag_noise_classes, "train", config.seed, cache
        )
        tag_eval = speech_and_noise_tags(
            check_data_root(config.data), config.tag_noise_classes, "held-out", config.seed + 1, cache
        )
    else:
        raise ValueError("no tagging data: give --data or --chime-home")
    return Tasks(
        SceneDataset(scene_train, config.seed, cache=cache),
        SceneDataset(scene_eval, config.seed + 1, gain_db=0.0, cache=cache),
        scene_names,
        tag_train,
        tag_eval,
        tag_train.tag_names,
    )


def evaluate(network: LossNet, tasks: Tasks, config: LossNetTrainConfig, device: torch.device) -> dict:
    """Held-out scene accuracy (+ confusion matrix) and tagging mAP / mean EER."""
    samples = int(config.evaluation_seconds * MODEL_RATE)
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


def card(config: LossNetTrainConfig, step: int, scores: dict, tasks: Tasks) -> str:
    """The model card of a checkpoint and of the result: architecture, tasks, held-out scores."""
    scene_source = (
        f"DCASE 2016 task 1 fold {config.dcase_fold} (`{config.dcase_scenes}`)"
        if config.dcase_scenes
        else f"labelled noise recordings of `{config.data}/noise`"
    )
    tag_source = (
        f"CHiME-Home fold {config.chime_fold} (`{config.chime_home}`)"
        if config.chime_home
        else f"mixtures of `{config.data}` speech and noise"
    )
    lines = [
        f"{config.layers} strided 3-tap conv layers ({config.base_channels}/64/128 channels), per-input batch norm, LeakyReLU(0.2),",
        "as in Germain, Chen & Koltun (2018); trained here, step {0} of {1}, batch {2} per task, crops of {3[0]}-{3[1]} s.".format(
            step, config.max_steps, config.batch_size, config.crop_seconds
        ),
        "",
        f"- Scene task: {len(tasks.scene_names)} classes from {scene_source}.",
        f"- Tag task: {len(tasks.tag_names)} tags ({', '.join(tasks.tag_names)}) from {tag_source}.",
    ]
    if scores:
        lines += [
            f"- Held-out scene accuracy **{scores['scene_accuracy']:.3f}** (majority-class chance {scores['scene_chance']:.3f}, "
            f"{scores['scene_classes_evaluated']} classes evaluated).",
            f"- Held-out tagging mAP **{scores['tag_map']:.3f}** (chance = tag prior {scores['tag_map_chance']:.3f}), mean EER {scores['tag_eer']:.3f}.",
        ]
    return model_card("hushnet loss network", lines)


# --- the trainer: what the shared loop (skeleton.run_training) runs ------------------------------

LOG_COLUMNS = ["step", "learning_rate", "scene_loss", "tag_loss", "precision"]


class LossNetTrainer(Trainer):
    """The loss network's data (a scene and a tag batch a step, one crop length each), model, task
    losses and held-out evaluation (``evaluation.jsonl``, ``confusion.png``)."""

    log_columns = LOG_COLUMNS
    grad_clip = 5.0

    def __init__(self, config: LossNetTrainConfig) -> None:
        super().__init__(config)
        self.scores: dict = {}  # the last held-out evaluation

    @property
    def min_learning_rate(self) -> float:
        return 0.05 * self.config.learning_rate  # the denoiser's schedule, decaying to 5% of the peak

    def build(self) -> None:
        config = self.config
        self.tasks = build_tasks(config)
        torch.manual_seed(config.seed)
        shape = LossNetConfig(
            layers=config.layers,
            base_channels=config.base_channels,
            scene_classes=len(self.tasks.scene_names),
            tags=len(self.tasks.tag_names),
            scene_names=self.tasks.scene_names,
            tag_names=self.tasks.tag_names,
        )
        self.model = LossNet(shape).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        self.scores = info.get("scores", {})
        self.model.train()

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {}, {"scores": dict(self.scores)}

    def save(self, directory: Path, step: int) -> None:
        card_text = card(self.config, step, self.scores, self.tasks)
        save_model(self.model, directory, card_text, {"training": {"step": step}})

    def batches(self, start: int) -> Iterator[tuple]:
        """Per step one crop length, log-uniform in ``crop_seconds``, and the tasks' audio and targets
        (a task left out of the step, when they alternate, as None)."""
        config, tasks, device = self.config, self.tasks, self.device
        for step in range(start, config.max_steps):
            low, high = config.crop_seconds
            rng = np.random.default_rng([config.seed, step, 7])
            samples = int(MODEL_RATE * math.exp(rng.uniform(math.log(low), math.log(high))))
            indices = range(step * config.batch_size, (step + 1) * config.batch_size)
            scene_audio = scene_labels = tag_audio = tag_targets = None
            if config.tasks == "sum" or step % 2 == 0:
                items = [tasks.scene_train.item(len(tasks.scene_train) + i, samples) for i in indices]
                scene_audio = torch.from_numpy(np.stack([a for a, _ in items])).to(device)
                scene_labels = torch.tensor([label for _, label in items], device=device)
            if config.tasks == "sum" or step % 2 == 1:
                items = [tasks.tag_train.item(i, samples) for i in indices]
                tag_audio = torch.from_numpy(np.stack([a for a, _ in items])).to(device)
                tag_targets = torch.from_numpy(np.stack([t for _, t in items])).to(device)
            yield scene_audio, scene_labels, tag_audio, tag_targets

    def forward(
        self,
        scene_audio: torch.Tensor | None,
        scene_labels: torch.Tensor | None,
        tag_audio: torch.Tensor | None,
        tag_targets: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(scene loss, tag loss): cross-entropy for scenes, binary cross-entropy for tags; None for a
        task left out of this step."""
        scene = tag = None
        if scene_audio is not None:
            scene = F.cross_entropy(self.model.classify(scene_audio)[0].float(), scene_labels)
        if tag_audio is not None:
            tag = F.binary_cross_entropy_with_logits(self.model.classify(tag_audio)[1].float(), tag_targets)
        return scene, tag

    def loss(self, batch: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scene, tag = self.compiled(*batch)
        losses = {name: value for name, value in (("scene_loss", scene), ("tag_loss", tag)) if value is not None}
        return sum(losses.values()), losses

    def after_step(
        self, total: torch.Tensor, terms: dict[str, torch.Tensor], grad_norm: torch.Tensor, seconds: float
    ) -> tuple[dict, dict]:
        return {k: v.item() for k, v in terms.items()}, {k: f"{v.item():.3f}" for k, v in terms.items()}

    def validate(self, step: int) -> None:
        """Evaluate on the held-out sets; append to ``evaluation.jsonl``, redraw ``confusion.png``."""
        self.scores = evaluate(self.model, self.tasks, self.config, self.device)
        output = self.run.output
        with open(output / "evaluation.jsonl", "a") as handle:
            handle.write(
                json.dumps({"step": step, **{k: v for k, v in self.scores.items() if k != "confusion"}}) + "\n"
            )
        plot_confusion(self.scores["confusion"], self.tasks.scene_names, output / "confusion.png")
        scores = self.scores
        tqdm.write(
            f"step {step}: scene accuracy {scores['scene_accuracy']} (chance {scores['scene_chance']}), "
            f"tag mAP {scores['tag_map']} (chance {scores['tag_map_chance']}), EER {scores['tag_eer']}"
        )

    def finish(self, step: int) -> None:
        """The frozen result: OUTPUT/lossnet, a model directory with its card."""
        kept = {k: v for k, v in self.scores.items() if k != "confusion"}
        training = {"training": {"step": step, "config": self.config.to_dict(), "scores": kept}}
        card_text = card(self.config, step, self.scores, self.tasks)
        save_model(self.model.eval(), self.run.output / "lossnet", card_text, training)


def train_lossnet(
    config: LossNetTrainConfig,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> Path:
    """Run or resume a loss-network job; the frozen result goes to OUTPUT/lossnet (a model directory)."""
    return run_training(LossNetTrainer(config), resume, progress, on_step)
