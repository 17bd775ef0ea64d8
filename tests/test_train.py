"""The training loop: loss goes down, checkpoints, bit-exact resume (also after kill -9), DDP with gloo."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hushnet.data.mixing import MixingConfig
from hushnet.loss import LossConfig
from hushnet.models.can import CANConfig
from hushnet.options import with_overrides as config_with
from hushnet.training.denoiser import TrainConfig, learning_rate_at, train
from hushnet.training.state import latest_checkpoint

from helpers import run_from_config_file


def tiny_config(output: Path, corpus: Path, lossnet: Path, **overrides) -> TrainConfig:
    config = TrainConfig(
        output=str(output),
        data=str(corpus),
        mixing=MixingConfig(
            segment_seconds=0.25, reverb_probability=0.3, babble_probability=0.2, babble_talkers=(2, 3)
        ),
        model=CANConfig(channels=8, dilated_layers=3, input_rms_db=-23.0),
        loss=LossConfig(feature=1.0, l1=0.0, lossnet=str(lossnet), feature_layers=4, calibration_steps=3),
        batch_size=2,
        learning_rate=3e-3,
        min_learning_rate=3e-4,
        warmup_steps=2,
        max_steps=8,
        validate_every=1000,
        validation_items=2,
        validation_seconds=0.5,
        checkpoint_every=2,
        threads=1,
        # Eager float32 unless a test asks otherwise: compiling takes tens of seconds per run.
        precision="float32",
        compile=False,
    )
    return config_with(config, overrides)


def final_weights(output: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(output) / "model.safetensors"))


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_config_round_trips_and_rejects_unknown_keys(tmp_path):
    config = tiny_config(tmp_path, tmp_path, tmp_path, **{"model.norm": "batch", "mixing.snr_db": [0.0, 5.0]})
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.mixing.snr_db == (0.0, 5.0)
    with pytest.raises(ValueError, match="unknown"):
        config_with(config, {"model.colour": 1})


def test_legacy_keys_are_read_by_both_configs_and_a_new_name_given_too_wins(tmp_path):
    from hushnet.training.lossnet import LossNetTrainConfig

    saved = tiny_config(tmp_path, tmp_path, tmp_path).to_dict()
    del saved["precision"]
    assert TrainConfig.from_dict({**saved, "autocast": True}).precision == "bf16"
    assert TrainConfig.from_dict({**saved, "autocast": False}).precision == "float32"
    assert TrainConfig.from_dict({**saved, "autocast": True, "precision": "float32"}).precision == "float32"
    lossnet = LossNetTrainConfig(crop_seconds=(0.5, 1.0)).to_dict()
    del lossnet["validate_every"]
    again = LossNetTrainConfig.from_dict(json.loads(json.dumps({**lossnet, "evaluate_every": 7})))
    assert again.validate_every == 7 and again.crop_seconds == (0.5, 1.0)
    assert LossNetTrainConfig.from_dict({**lossnet, "evaluate_every": 7, "validate_every": 9}).validate_every == 9
    with pytest.raises(ValueError, match=r"unknown loss-network training keys: \['colour'\]"):
        LossNetTrainConfig.from_dict({**lossnet, "colour": 1})
    with pytest.raises(ValueError, match=r"unknown training config keys: \['colour'\]"):
        TrainConfig.from_dict({**saved, "colour": 1})


def test_learning_rate_warms_up_then_decays(tmp_path):
    config = tiny_config(tmp_path, tmp_path, tmp_path, max_steps=100, warmup_steps=10)
    rates = [learning_rate_at(step, config) for step in range(100)]
    assert rates[0] == pytest.approx(3e-4) and rates[9] == pytest.approx(3e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[-1] == pytest.approx(3e-4, rel=0.01)


def test_twenty_steps_lower_the_validation_loss(tmp_path, tiny_corpus, tiny_lossnet_dir):
    config = tiny_config(
        tmp_path / "run",
        tiny_corpus,
        tiny_lossnet_dir,
        max_steps=20,
        validate_every=20,
        **{"loss.calibration_steps": 0, "loss.l1": 10.0},
    )
    run = train(config, progress=False)
    with open(run / "validation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [0, 20]
    assert float(rows[1]["loss"]) < 0.9 * float(rows[0]["loss"])
    with open(run / "log.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 20
    assert (run / "best" / "model.safetensors").is_file() and (run / "best" / "README.md").is_file()
    saved = json.loads((latest_checkpoint(run) / "config.json").read_text())
    assert saved["kind"] == "can" and saved["training"]["config"]["max_steps"] == 20
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_0000018", "step_0000020"]
    with pytest.raises(FileExistsError, match="--resume"):
        train(config, progress=False)


class Crash(Exception):
    pass


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, tiny_corpus, tiny_lossnet_dir, precision):
    whole = train(tiny_config(tmp_path / "whole", tiny_corpus, tiny_lossnet_dir, precision=precision), progress=False)

    def crash_at_5(step: int) -> None:
        if step == 5:
            raise Crash

    config = tiny_config(tmp_path / "halves", tiny_corpus, tiny_lossnet_dir, precision=precision)
    with pytest.raises(Crash):
        train(config, progress=False, on_step=crash_at_5)
    assert latest_checkpoint(config.output).name == "step_0000004"  # step 5 was never saved
    train(config, resume=True, progress=False)
    assert_identical(final_weights(whole), final_weights(Path(config.output)))
    # The calibrated loss weights travel in the checkpoint too.
    a = load_file(str(latest_checkpoint(whole) / "training_state.safetensors"))
    b = load_file(str(latest_checkpoint(config.output) / "training_state.safetensors"))
    assert torch.equal(a["loss.feature.weights"], b["loss.feature.weights"]) and not torch.equal(
        a["loss.feature.weights"], torch.ones(4)
    )
    with open(Path(config.output) / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert {r["precision"] for r in rows} == {precision}
    assert f"{precision} (requested `{precision}`)" in (Path(config.output) / "summary.md").read_text()


def test_spent_time_budget_checkpoints_and_resume_finishes_identically(tmp_path, tiny_corpus, tiny_lossnet_dir):
    whole = train(tiny_config(tmp_path / "whole", tiny_corpus, tiny_lossnet_dir), progress=False)
    # A zero budget is spent after the first step, off the checkpoint_every grid: the checkpoint is written anyway.
    config = tiny_config(tmp_path / "budget", tiny_corpus, tiny_lossnet_dir, time_budget_minutes=0.0)
    train(config, progress=False)
    assert latest_checkpoint(config.output).name == "step_0000001"
    train(config_with(config, {"time_budget_minutes": None}), resume=True, progress=False)
    assert_identical(final_weights(whole), final_weights(Path(config.output)))


def _cli(*arguments: str, env: dict | None = None) -> list[str]:
    return [sys.executable, "-m", "hushnet.cli", *arguments]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_kill_9_then_resume_gives_the_same_weights(tmp_path, tiny_corpus, tiny_lossnet_dir, precision):
    steps = 300
    config = tiny_config(
        tmp_path / "killed",
        tiny_corpus,
        tiny_lossnet_dir,
        max_steps=steps,
        checkpoint_every=1,
        precision=precision,
        **{"mixing.segment_seconds": 0.1, "model.dilated_layers": 2},
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    process = subprocess.Popen(
        _cli("train", "--config", str(config_file), "-o", config.output, "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        latest = latest_checkpoint(config.output)
        if latest is not None and int(latest.name.split("_")[1]) >= 5:
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    killed_at = int(latest_checkpoint(config.output).name.split("_")[1])
    assert 5 <= killed_at < steps
    resumed = subprocess.run(_cli("train", "-o", config.output, "--resume", "-q"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    reference = train(config_with(config, {"output": str(tmp_path / "reference")}), progress=False)
    assert_identical(final_weights(reference), final_weights(Path(config.output)))


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process_with_the_whole_batch(tmp_path, tiny_corpus, tiny_lossnet_dir):
    config = tiny_config(tmp_path / "ddp", tiny_corpus, tiny_lossnet_dir, batch_size=1, max_steps=4)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    env = {**os.environ, "HUSHNET_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
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
            "train",
            "--config",
            str(config_file),
            "-o",
            config.output,
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("run folder:") == 1, done.stdout  # printed by rank 0 only
    single = train(config_with(config, {"output": str(tmp_path / "single"), "batch_size": 2}), progress=False)
    # The logged loss is the mean over both processes' halves of the batch, i.e. the whole batch's loss.
    with open(Path(config.output) / "log.csv") as a, open(single / "log.csv") as b:
        ddp_rows, one_rows = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert len(ddp_rows) == 4
    assert float(ddp_rows[0]["loss"]) == pytest.approx(float(one_rows[0]["loss"]), rel=1e-4)
    ddp, one = final_weights(Path(config.output)), final_weights(single)
    # Same samples, same averaged gradients: equal up to float summation order (which Adam's
    # normalisation of near-zero gradients amplifies); a wrong data split differs by ~1e-3.
    largest = max(float((ddp[name] - one[name]).abs().max()) for name in one)
    print(f"largest difference DDP vs one process: {largest:.2e}")
    assert largest < 1e-4
    # Training moved the weights by far more than the two runs differ: the comparison above is not of two idle copies.
    start = load_file(str(Path(config.output) / "initial" / "model.safetensors"))
    moved = max(float((ddp[name] - start[name]).abs().max()) for name in start)
    assert moved > 100 * max(largest, 1e-7), (moved, largest)


def test_every_run_folder_config_in_the_repository_still_loads():
    """`hushnet train --config runs/X/train_config.json` keeps working for the runs committed so far."""
    from hushnet.options import JobOptions
    from hushnet.training.lossnet import LossNetTrainConfig
    from hushnet.training.skeleton import job_config

    root = Path(__file__).resolve().parents[1] / "runs"
    files = sorted(root.glob("**/train_config.json"))
    assert files, "no run folders committed"
    for path in files:
        saved = {**json.loads(path.read_text()), "output": "elsewhere"}
        kind = LossNetTrainConfig if "tasks" in saved else TrainConfig
        if "evaluate_every" in saved:  # the loss-network trainer's old name for validate_every
            saved["validate_every"] = saved.pop("evaluate_every")
        legacy_autocast = saved.pop("autocast", None)  # before ``precision``: false = float32, true = bf16
        if legacy_autocast is not None:
            saved["precision"] = "bf16" if legacy_autocast else "float32"
        loaded = json.loads(
            json.dumps(job_config(kind, JobOptions(config=str(path)), {"output": "elsewhere"}).to_dict())
        )
        # Every saved value is kept; fields added since (new mixing/loss/model options) take their defaults.
        for key, value in saved.items():
            assert (loaded[key] if not isinstance(value, dict) else {k: loaded[key][k] for k in value}) == value, (
                path,
                key,
            )


def test_precision_auto_is_float32_where_the_cpu_has_no_bf16_units(
    tmp_path, tiny_corpus, tiny_lossnet_dir, monkeypatch
):
    monkeypatch.setenv("HUSHNET_CPU_FLAGS", "avx2 fma")  # the flags hushnet reads: an AVX2-only CPU
    run = train(
        tiny_config(tmp_path / "plain", tiny_corpus, tiny_lossnet_dir, precision="auto", max_steps=2), progress=False
    )
    with open(run / "log.csv") as handle:
        assert {r["precision"] for r in csv.DictReader(handle)} == {"float32"}
    assert "float32 (requested `auto`)" in (run / "summary.md").read_text()
    monkeypatch.setenv("HUSHNET_CPU_FLAGS", "avx2 fma avx512f avx512_bf16")  # one with bf16 units
    run = train(
        tiny_config(tmp_path / "fast", tiny_corpus, tiny_lossnet_dir, precision="auto", max_steps=2), progress=False
    )
    with open(run / "log.csv") as handle:
        assert {r["precision"] for r in csv.DictReader(handle)} == {"bf16"}


def test_compiled_step_trains_like_the_eager_one(tmp_path, tiny_corpus, tiny_lossnet_dir, caplog, capfd):
    # The arithmetic line is a log record: caught here whether or not a CLI test set up its stderr handler.
    caplog.set_level(logging.INFO, logger="hushnet")
    eager = train(tiny_config(tmp_path / "eager", tiny_corpus, tiny_lossnet_dir, max_steps=3), progress=False)
    compiled = train(
        tiny_config(tmp_path / "compiled", tiny_corpus, tiny_lossnet_dir, max_steps=3, compile=True), progress=False
    )
    assert "torch.compile on" in caplog.text
    assert "torch.compile's compilation included" in capfd.readouterr().out
    with open(eager / "log.csv") as a, open(compiled / "log.csv") as b:
        eager_loss = [float(r["loss"]) for r in csv.DictReader(a)]
        compiled_loss = [float(r["loss"]) for r in csv.DictReader(b)]
    # The same arithmetic, fused: equal up to float32 reassociation, and a real difference after the
    # first step would show a mistrained step (the loss moves by far more than 1e-3 per step here).
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-3)
    assert abs(eager_loss[0] - eager_loss[-1]) > 10 * 1e-3 * abs(eager_loss[0])
    assert "torch.compile on" in (compiled / "summary.md").read_text()


def test_layer_weights_can_be_calibrated_on_the_starting_model_before_step_one(tmp_path, tiny_corpus, tiny_lossnet_dir):
    config = tiny_config(
        tmp_path / "first",
        tiny_corpus,
        tiny_lossnet_dir,
        max_steps=1,
        checkpoint_every=1,
        **{"loss.calibrate_before_training": True},
    )
    run = train(config, progress=False)
    state = load_file(str(latest_checkpoint(run) / "training_state.safetensors"))
    assert int(state["loss.feature.calibrated_steps"]) == 3  # all calibration batches, though only one step ran
    assert not torch.equal(state["loss.feature.weights"], torch.ones(4))
    # Without it, one step into a 3-step calibration the weights are still equal.
    plain = train(
        config_with(config, {"output": str(tmp_path / "plain"), "loss.calibrate_before_training": False}),
        progress=False,
    )
    assert torch.equal(
        load_file(str(latest_checkpoint(plain) / "training_state.safetensors"))["loss.feature.weights"], torch.ones(4)
    )


def test_train_config_file_output_is_where_the_run_goes(tmp_path, tiny_corpus, tiny_lossnet_dir, monkeypatch):
    config = tiny_config(tmp_path / "from_config", tiny_corpus, tiny_lossnet_dir, max_steps=2)
    status, work = run_from_config_file("train", config, tmp_path, monkeypatch)
    assert status == 0
    assert latest_checkpoint(config.output).name == "step_0000002"
    assert list(work.iterdir()) == []  # nothing written to the default runs/hushnet
    assert not (Path(config.output) / ".lock").exists()  # the lock goes with the trainer


def _wait_for_a_checkpoint(output: Path, process: subprocess.Popen) -> None:
    for _ in range(1200):  # until the trainer is in its loop (a ceiling, not a speed check)
        if latest_checkpoint(output) is not None:
            return
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.1)
    raise AssertionError("the first trainer never wrote a checkpoint")


def test_a_second_trainer_on_a_busy_run_folder_fails_at_once_and_a_dead_ones_lock_is_taken_over(
    tmp_path, tiny_corpus, tiny_lossnet_dir, capsys
):
    from hushnet.cli import main

    config = tiny_config(tmp_path / "busy", tiny_corpus, tiny_lossnet_dir, max_steps=100_000, checkpoint_every=1)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    first = subprocess.Popen(
        _cli("train", "--config", str(config_file), "-o", config.output, "-q"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        _wait_for_a_checkpoint(Path(config.output), first)
        before = (Path(config.output) / "log.csv").read_text()
        assert main(["train", "-o", config.output, "--resume", "--max-steps", "3", "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(
            f"error: {config.output} is in use by another trainer (process {first.pid})"
        ), err
        assert (Path(config.output) / "log.csv").read_text().startswith(before)  # the refused trainer wrote nothing
    finally:
        first.kill()
        first.wait(timeout=60)
    done = latest_checkpoint(config.output)
    step = int(done.name.split("_")[1])
    assert (
        main(["train", "-o", config.output, "--resume", "--max-steps", str(step + 1), "-q"]) == 0
    )  # the dead trainer's lock is taken over
    assert latest_checkpoint(config.output).name == f"step_{step + 1:07d}"


def _train_arguments(output: Path, corpus: Path, lossnet: Path, *extra: str) -> list[str]:
    return [
        "train", "-o", str(output), "--data", str(corpus), "--lossnet", str(lossnet), "--channels", "8",
        "--max-steps", "4", "--checkpoint-every", "2", "--batch-size", "1", "--segment-seconds", "0.25",
        "--validation-items", "1", "--calibration-steps", "1", "--threads", "1", "--no-compile",
        "--precision", "float32", "-q", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_corpus, tiny_lossnet_dir):
    """A 4-step run with checkpoints at steps 2 and 4, made by the command."""
    from hushnet.cli import main

    output = tmp_path_factory.mktemp("finished") / "run"
    assert main(_train_arguments(output, tiny_corpus, tiny_lossnet_dir)) == 0
    return output


def _resume(run: Path, tiny_corpus, tiny_lossnet_dir, capsys, *extra: str) -> tuple[int, str]:
    from hushnet.cli import main

    capsys.readouterr()
    status = main(_train_arguments(run, tiny_corpus, tiny_lossnet_dir, "--resume", "--max-steps", "6", *extra))
    return status, capsys.readouterr().err


@pytest.fixture
def copied_run(finished_run, tmp_path):
    import shutil

    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def test_a_folder_named_lock_in_the_run_folder_is_one_line(tmp_path, tiny_corpus, tiny_lossnet_dir, capsys):
    from hushnet.cli import main

    (tmp_path / "run" / ".lock").mkdir(parents=True)
    status = main(_train_arguments(tmp_path / "run", tiny_corpus, tiny_lossnet_dir))
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: cannot lock the run folder") and err.count("\n") == 1, err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # nothing else written


@pytest.mark.parametrize("file", ["training_state.safetensors", "model.safetensors", "training_state.json"])
def test_a_damaged_last_checkpoint_resumes_from_the_one_before(file, copied_run, tiny_corpus, tiny_lossnet_dir, capsys):
    path = copied_run / "checkpoints" / "step_0000004" / file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    status, err = _resume(copied_run, tiny_corpus, tiny_lossnet_dir, capsys)
    lines = [line for line in err.splitlines() if "damaged" in line]
    assert status == 0 and len(lines) == 1, err
    assert lines[0].startswith("checkpoint step 4 is damaged (") and lines[0].endswith("resuming from step 2")
    assert str(path) in lines[0]  # the file is named
    assert "Traceback" not in err and (copied_run / "checkpoints" / "step_0000006").is_dir()
    assert not (copied_run / ".lock").exists()


def test_no_undamaged_checkpoint_left_stops_in_one_line(copied_run, tiny_corpus, tiny_lossnet_dir, capsys):
    for step in ("step_0000002", "step_0000004"):
        path = copied_run / "checkpoints" / step / "training_state.safetensors"
        path.write_bytes(path.read_bytes()[:100])
    status, err = _resume(copied_run, tiny_corpus, tiny_lossnet_dir, capsys)
    first, last = err.splitlines()  # one line a damaged checkpoint, the last one the error
    assert status == 2 and first.startswith("checkpoint step 4 is damaged") and first.endswith("resuming from step 2")
    assert last.startswith("error: checkpoint step 2 is damaged") and "no earlier checkpoint" in last
    assert "training_state.safetensors" in last and not (copied_run / ".lock").exists()


@pytest.mark.parametrize("flag, value, had", [("--channels", "32", "8"), ("--norm", "batch", "per-input")])
def test_resume_with_another_network_names_the_flag(
    flag, value, had, copied_run, tiny_corpus, tiny_lossnet_dir, capsys
):
    before = (copied_run / "train_config.json").read_text()
    status, err = _resume(copied_run, tiny_corpus, tiny_lossnet_dir, capsys, flag, value)
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {flag} cannot change on --resume (the run has {had}")
    assert (copied_run / "train_config.json").read_text() == before and not (copied_run / ".lock").exists()


@pytest.mark.parametrize("flag", ["--batch-size", "--checkpoint-every", "--validate-every"])
def test_a_zero_count_is_refused_before_any_work(flag, tmp_path, tiny_corpus, tiny_lossnet_dir, capsys):
    from hushnet.cli import main

    status = main(_train_arguments(tmp_path / "run", tiny_corpus, tiny_lossnet_dir, flag, "0"))
    err = capsys.readouterr().err
    assert status == 2 and err == f"error: {flag} must be a whole number of at least 1, got 0\n"
    assert not (tmp_path / "run").exists()


def test_max_steps_0_claims_no_best_model(tmp_path, tiny_corpus, tiny_lossnet_dir, capsys):
    from hushnet.cli import main

    status = main(_train_arguments(tmp_path / "run", tiny_corpus, tiny_lossnet_dir, "--max-steps", "0"))
    out = capsys.readouterr().out
    assert status == 0 and not (tmp_path / "run" / "best").exists()
    assert "(best model:" not in out and "no best model" in out


def test_training_leaves_no_torch_compile_folder_in_the_temp_folder(tmp_path, tiny_corpus, tiny_lossnet_dir):
    temp, cache = tmp_path / "temp", tmp_path / "cache"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(TMPDIR=str(temp), XDG_CACHE_HOME=str(cache), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    arguments = _train_arguments(tmp_path / "run", tiny_corpus, tiny_lossnet_dir, "--max-steps", "1")
    result = subprocess.run(
        [sys.executable, "-m", "hushnet.cli", *arguments], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert not list(temp.glob("torchinductor_*"))


def test_garbage_and_fifo_files_in_speech_are_skipped_with_one_line(tmp_path, tiny_corpus, tiny_lossnet_dir, capsys):
    import shutil

    from hushnet.cli import main

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    (corpus / "speech" / "spk0" / "garbage.flac").write_bytes(b"not audio at all" * 64)
    os.mkfifo(corpus / "speech" / "spk1" / "pipe.flac")  # reading it would block the trainer for ever
    status = main(_train_arguments(tmp_path / "run", corpus, tiny_lossnet_dir, "--max-steps", "1"))
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: skipping")]
    assert status == 0 and len(notes) == 1, err
    assert "garbage.flac (not readable audio)" in notes[0] and "pipe.flac (not a regular file)" in notes[0]


def test_an_empty_speech_folder_says_so(tmp_path, tiny_corpus, tiny_lossnet_dir, capsys):
    import shutil

    from hushnet.cli import main

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    shutil.rmtree(corpus / "speech")
    (corpus / "speech").mkdir()
    status = main(_train_arguments(tmp_path / "run", corpus, tiny_lossnet_dir))
    err = capsys.readouterr().err
    assert status == 2 and err == f"error: no audio in {corpus / 'speech'}: nothing to train on\n"
    assert not (tmp_path / "run").exists()
