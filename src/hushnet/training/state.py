"""The training-state protocol shared by both trainers.

A run folder keeps ``OUTPUT/checkpoints/step_NNNNNNN/`` folders and a ``latest`` file naming the newest
complete one. A folder is written under a temporary name and renamed, then ``latest`` is replaced
atomically: a run killed at any instant leaves the previous checkpoint intact and findable. Each
checkpoint is a model directory plus ``training_state.safetensors`` (optimizer, extra tensors, RNG)
and ``training_state.json`` (step, optimizer layout, the trainer's own information).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from hushnet.temporaries import PendingFolder, clean_stale_partials, write_text

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
TRAINING_STATE_FILE = "training_state.safetensors"
TRAINING_INFO_FILE = "training_state.json"


def latest_checkpoint(output: str | os.PathLike) -> Path | None:
    """The last complete checkpoint of a run folder, if any."""
    pointer = Path(output) / CHECKPOINTS_DIR / LATEST_FILE
    if not pointer.is_file():
        return None
    directory = pointer.parent / pointer.read_text().strip()
    return directory if (directory / TRAINING_INFO_FILE).is_file() else None


def publish_checkpoint(output: str | os.PathLike, step: int, write: Callable[[Path], None], keep: int = 2) -> Path:
    """Have ``write`` fill a staging folder, rename it to step_NNNNNNN, point ``latest`` at it, prune old ones."""
    folder = Path(output) / CHECKPOINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    directory = folder / f"step_{step:07d}"
    clean_stale_partials(folder)  # what a run killed while writing one left
    with PendingFolder(directory) as staging:
        write(staging)
    write_text(folder / LATEST_FILE, directory.name + "\n")
    for old in sorted(folder.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def write_training_state(
    directory: Path, step: int, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict
) -> None:
    """Optimizer state, extra tensors and the torch RNG as safetensors; step and the rest as JSON."""
    state = optimizer.state_dict()
    everything = {
        f"optimizer.{index}.{key}": value for index, values in state["state"].items() for key, value in values.items()
    }
    everything.update(tensors)
    everything["rng.torch"] = torch.get_rng_state()
    save_file({k: v.detach().cpu().contiguous() for k, v in everything.items()}, str(directory / TRAINING_STATE_FILE))
    optimizer_info = {
        "param_groups": state["param_groups"],
        "state_keys": {str(i): sorted(v) for i, v in state["state"].items()},
    }
    (directory / TRAINING_INFO_FILE).write_text(
        json.dumps({"step": step, "optimizer": optimizer_info, **info}, indent=1) + "\n"
    )


def read_training_state(directory: Path, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Restore the optimizer and the torch RNG; returns (all tensors, info)."""
    info = json.loads((directory / TRAINING_INFO_FILE).read_text())
    tensors = load_file(str(directory / TRAINING_STATE_FILE))
    keys = info["optimizer"]["state_keys"]
    state = {int(index): {key: tensors[f"optimizer.{index}.{key}"] for key in names} for index, names in keys.items()}
    optimizer.load_state_dict({"state": state, "param_groups": info["optimizer"]["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return tensors, info
