"""Runtime options: one check of --threads for the CLI, the Python API and the server."""

from __future__ import annotations

import warnings

import pytest
import soundfile as sf

from helpers import speechlike
from hushnet.cli import main
from hushnet.denoiser import Denoiser
from hushnet.options import available_cores, usable_threads

TOO_MANY = 4 * available_cores()  # more than the machine has, small enough to be harmless if it were used


def test_denoise_caps_threads_beyond_the_cores_with_one_note(tmp_path, capsys):
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(0.3)[0], 16000)
    status = main(["denoise", str(source), "--threads", str(TOO_MANY), "--engine", "onnx", "-q"])
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert status == 0 and (tmp_path / "in_denoised.wav").is_file()
    assert notes == [f"note: --threads {TOO_MANY} is more than the {available_cores()} core{'s' if available_cores() != 1 else ''} here; "
                     f"using {available_cores()}"]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_denoise_refuses_fewer_than_one_thread_in_one_line(tmp_path, capsys, value):
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(0.3)[0], 16000)
    assert main(["denoise", str(source), "--threads", value, "-q"]) == 2
    assert capsys.readouterr().err.strip() == "error: --threads must be at least 1"
    assert not (tmp_path / "in_denoised.wav").exists()


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
        assert usable_threads(None) is None and usable_threads(1) == 1 and usable_threads(available_cores()) == available_cores()
    notes = []
    assert usable_threads(TOO_MANY, note=notes.append) == available_cores() and len(notes) == 1
