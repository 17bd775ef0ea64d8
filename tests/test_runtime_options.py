"""Runtime options (threads, device, chunk length, memory budget): one check, the same refusal in the
CLI, the Python API and the server, before any work."""

from __future__ import annotations

import warnings

import pytest
import soundfile as sf

from hushnet.cli import main
from hushnet.denoiser import Denoiser
from hushnet.runtime_options import RuntimeOptionError, available_cores, usable_threads, validate_runtime_options

from helpers import speechlike, tiny_can


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--threads", "0"], "--threads must be a whole number of at least 1, got 0"),
        (["--threads", "-3"], "--threads must be a whole number of at least 1, got -3"),
        (["--memory-budget-mb", "-1"], "--memory-budget-mb must be between 16 and"),
        (["--memory-budget-mb", "nan"], "--memory-budget-mb must be between 16 and"),
    ],
)
@pytest.mark.parametrize("command", ["denoise", "serve"])
def test_out_of_range_flags_are_refused_in_one_line(
    command, flags, message, tmp_path, write_wav, tiny_model_dir, capsys
):
    source = write_wav("in.wav", speechlike(0.3))
    arguments = (
        ["denoise", str(source), "-o", str(tmp_path / "out.wav"), "-q"] if command == "denoise" else ["serve"]
    ) + ["--model", str(tiny_model_dir)]
    status = main(arguments + flags)
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: " + message) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize(
    "options",
    [
        {"chunk_seconds": 0},
        {"chunk_seconds": -1},
        {"chunk_seconds": float("nan")},
        {"threads": 0},
        {"threads": True},
        {"threads": 2.5},
        {"memory_budget_mb": -1},
        {"device": "foo"},
    ],
)
def test_out_of_range_api_options_are_refused(options):
    with pytest.raises(RuntimeOptionError, match=next(iter(options))):
        Denoiser(tiny_can(), **options)


def test_from_pretrained_refuses_bad_threads_before_loading(tiny_model_dir):
    with pytest.raises(RuntimeOptionError, match="threads must be a whole number of at least 1"):
        Denoiser.from_pretrained(tiny_model_dir, threads=0)


def test_the_smallest_allowed_chunk_still_gives_the_whole_file_result():
    x = speechlike(3.0)
    whole = Denoiser(tiny_can(), chunk_seconds=60.0).denoise(x, 16000)
    small = Denoiser(tiny_can(), chunk_seconds=1.0).denoise(x, 16000)
    assert abs(whole - small).max() < 1e-5


def test_valid_options_pass():
    validate_runtime_options(threads=1, device="cuda:0", chunk_seconds=16.0, memory_budget_mb=512.0)
    validate_runtime_options()


TOO_MANY = 4 * available_cores()  # more than the machine has, small enough to be harmless if it were used


def test_denoise_caps_threads_beyond_the_cores_with_one_note(tmp_path, capsys):
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(0.3)[0], 16000)
    status = main(["denoise", str(source), "--threads", str(TOO_MANY), "--engine", "onnx", "-q"])
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert status == 0 and (tmp_path / "in_denoised.wav").is_file()
    assert notes == [
        f"note: --threads {TOO_MANY} is more than the {available_cores()} core{'s' if available_cores() != 1 else ''} here; "
        f"using {available_cores()}"
    ]


def test_python_api_caps_threads_with_a_warning_and_refuses_zero():
    with pytest.warns(UserWarning, match=f"--threads {TOO_MANY} is more than the {available_cores()} core"):
        denoiser = Denoiser.from_pretrained(engine="onnx", threads=TOO_MANY)
    assert denoiser.engine.threads == available_cores()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            Denoiser.from_pretrained(engine="onnx", threads=bad)


def test_usable_threads_passes_what_fits_and_none():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (
            usable_threads(None) is None
            and usable_threads(1) == 1
            and usable_threads(available_cores()) == available_cores()
        )
    notes = []
    assert usable_threads(TOO_MANY, note=notes.append) == available_cores() and len(notes) == 1
