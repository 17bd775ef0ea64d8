"""Runtime options (threads, device, chunk length, memory budget): one check, the same refusal in the
CLI, the Python API and the server, before any work."""

from __future__ import annotations

import pytest

from hushnet.cli import main
from hushnet.denoiser import Denoiser
from hushnet.runtime_options import MAX_THREADS, RuntimeOptionError, validate_runtime_options

from conftest import speechlike, tiny_can


@pytest.mark.parametrize("flags, message", [
    (["--threads", "100000"], f"--threads must be between 1 and {MAX_THREADS}, got 100000"),
    (["--threads", "0"], f"--threads must be between 1 and {MAX_THREADS}, got 0"),
    (["--memory-budget-mb", "-1"], "--memory-budget-mb must be between 16 and"),
    (["--memory-budget-mb", "nan"], "--memory-budget-mb must be between 16 and"),
])
@pytest.mark.parametrize("command", ["denoise", "serve"])
def test_out_of_range_flags_are_refused_in_one_line(command, flags, message, tmp_path, write_wav, tiny_model_dir, capsys):
    source = write_wav("in.wav", speechlike(0.3))
    arguments = (["denoise", str(source), "-o", str(tmp_path / "out.wav"), "-q"] if command == "denoise" else ["serve"]) + ["--model", str(tiny_model_dir)]
    status = main(arguments + flags)
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: " + message) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("options", [{"chunk_seconds": 0}, {"chunk_seconds": -1}, {"chunk_seconds": float("nan")}, {"threads": 0},
                                     {"threads": 100000}, {"threads": 2.5}, {"memory_budget_mb": -1}, {"device": "foo"}])
def test_out_of_range_api_options_are_refused(options):
    with pytest.raises(RuntimeOptionError, match=next(iter(options))):
        Denoiser(tiny_can(), **options)


def test_from_pretrained_refuses_bad_threads_before_loading(tiny_model_dir):
    with pytest.raises(RuntimeOptionError, match="threads must be between 1"):
        Denoiser.from_pretrained(tiny_model_dir, threads=0)


def test_the_smallest_allowed_chunk_still_gives_the_whole_file_result():
    x = speechlike(3.0)
    whole = Denoiser(tiny_can(), chunk_seconds=60.0).denoise(x, 16000)
    small = Denoiser(tiny_can(), chunk_seconds=1.0).denoise(x, 16000)
    assert abs(whole - small).max() < 1e-5


def test_valid_options_pass():
    validate_runtime_options(threads=1, device="cuda:0", chunk_seconds=16.0, memory_budget_mb=512.0)
    validate_runtime_options()
