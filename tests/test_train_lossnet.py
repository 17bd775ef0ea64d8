"""Loss-network training: a few steps lower the task losses; resume is exact (its metrics: test_metrics.py)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hushnet.model_dir import load_model
from hushnet.training.lossnet import LossNetTrainConfig, train_lossnet
from hushnet.training.state import latest_checkpoint
from test_scenes import make_chime_home, make_dcase2016

from helpers import run_from_config_file


@pytest.fixture
def config_for(tmp_path):
    dcase, chime = make_dcase2016(tmp_path / "dcase"), make_chime_home(tmp_path / "chime")

    def make(name: str, **overrides) -> LossNetTrainConfig:
        values = dict(
            output=str(tmp_path / name),
            data=None,
            dcase_scenes=str(dcase),
            chime_home=str(chime),
            layers=6,
            base_channels=4,
            crop_seconds=(0.25, 0.5),
            evaluation_seconds=0.5,
            evaluation_tag_items=6,
            batch_size=6,
            learning_rate=3e-3,
            warmup_steps=2,
            max_steps=30,
            validate_every=30,
            checkpoint_every=3,
            threads=1,
            precision="float32",
            compile=False,
        )
        return LossNetTrainConfig(**{**values, **overrides})

    return make


def test_a_few_steps_lower_both_task_losses(config_for):
    run = train_lossnet(config_for("run", max_steps=60, learning_rate=1e-2), progress=False)
    with open(run / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    scene = [float(r["scene_loss"]) for r in rows]
    tags = [float(r["tag_loss"]) for r in rows]
    print(np.mean(scene[:5]), np.mean(scene[-5:]), np.mean(tags[:5]), np.mean(tags[-5:]))
    assert np.mean(scene[-5:]) < 0.7 * np.mean(scene[:5])
    assert np.mean(tags[-5:]) < 0.9 * np.mean(tags[:5])
    network = load_model(run / "lossnet", kind="lossnet")
    assert network.config.scene_names == ["beach", "bus", "office"] and network.config.tags == 7
    assert "Held-out scene accuracy" in (run / "lossnet" / "README.md").read_text()
    assert (run / "confusion.png").stat().st_size > 1000


class Crash(Exception):
    pass


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_resume_continues_exactly(config_for, precision):
    whole = train_lossnet(config_for("whole", max_steps=8, tasks="alternate", precision=precision), progress=False)

    def crash(step: int) -> None:
        if step == 7:
            raise Crash

    config = config_for("halves", max_steps=8, tasks="alternate", precision=precision)
    with pytest.raises(Crash):
        train_lossnet(config, progress=False, on_step=crash)
    assert latest_checkpoint(config.output).name == "step_0000006"
    with open(f"{config.output}/log.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == list(range(1, 8))  # step 7 was logged, never saved
    train_lossnet(config, resume=True, progress=False)
    a = load_file(str(whole / "lossnet" / "model.safetensors"))
    b = load_file(str(config.output + "/lossnet/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The log reads as if the run had never stopped: each step once, with the uninterrupted run's values.
    with open(whole / "log.csv") as first, open(f"{config.output}/log.csv") as second:
        rows = list(csv.DictReader(second))
        assert rows == list(csv.DictReader(first))
    assert {r["precision"] for r in rows} == {precision}


def test_spent_time_budget_checkpoints_and_resume_finishes_identically(config_for):
    whole = train_lossnet(config_for("whole", max_steps=4), progress=False)
    config = config_for("budget", max_steps=4, time_budget_minutes=0.0)
    train_lossnet(config, progress=False)
    assert latest_checkpoint(config.output).name == "step_0000001"
    train_lossnet(config_for("budget", max_steps=4), resume=True, progress=False)
    a = load_file(str(whole / "lossnet" / "model.safetensors"))
    b = load_file(str(config.output + "/lossnet/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_lossnet_config_file_output_is_where_the_run_goes(config_for, tmp_path, monkeypatch):
    config = config_for("from_config", max_steps=2, validate_every=2)
    status, work = run_from_config_file("train-lossnet", config, tmp_path, monkeypatch)
    assert status == 0
    assert (tmp_path / "from_config" / "lossnet" / "model.safetensors").is_file()
    assert list(work.iterdir()) == []  # nothing written to the default runs/lossnet


def test_two_process_torchrun_logs_once_and_writes_the_loss_network(config_for, tmp_path):
    """Under torchrun every rank runs the loop; only rank 0 writes the log, evaluations and the result."""
    import json
    import os
    import subprocess
    import sys

    config = config_for("ddp", max_steps=3, validate_every=3)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "hushnet.cli",
            "train-lossnet",
            "--config",
            str(config_file),
            "-q",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HUSHNET_BACKEND": "gloo", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("loss network:") == 1, done.stdout
    with open(f"{config.output}/log.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3]
    assert load_model(f"{config.output}/lossnet", kind="lossnet") is not None
