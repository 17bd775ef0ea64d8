"""audio.py: formats kept on the way out, one-line errors, atomic writes, block reading."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from hushnet.audio import AtomicAudioWriter, AudioError, one_line, open_audio, output_format, read_audio

from helpers import speechlike


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT", "PCM_16"])
def test_wave_format_extensible_keeps_its_subtype(subtype, tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, speechlike(0.1, channels=2).T, 16000, subtype=subtype, format="WAVEX")
    with open_audio(path) as (_, info):
        assert info.format == "WAVEX"
        assert output_format(info, ".wav") == ("WAVEX", subtype)
        assert output_format(info, ".flac")[0] == "FLAC"


def test_wave_format_extensible_round_trips_through_denoise(tmp_path, tiny_model_dir):
    from hushnet.cli import main

    path = tmp_path / "x.wav"
    sf.write(path, speechlike(0.3).T, 16000, subtype="PCM_24", format="WAVEX")
    assert main(["denoise", str(path), "--model", str(tiny_model_dir), "-q"]) == 0
    info = sf.info(str(tmp_path / "x_denoised.wav"))
    assert (info.format, info.subtype) == ("WAVEX", "PCM_24")


@pytest.mark.parametrize("message,expected", [
    ("'../shared/data' needs speech/ and noise/ folders", "'../shared/data' needs speech/ and noise/ folders"),
    ("Error opening 'a.wav': Format not recognised.", "Format not recognised"),
    (".hidden file is odd", ".hidden file is odd"),
    ("  padded  \n", "padded"),
])
def test_one_line_keeps_the_message_whole(message, expected):
    assert one_line(ValueError(message)) == expected


def test_read_audio_resamples_and_reports_bad_files(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, speechlike(0.5, rate=48000)[0], 48000)
    samples, rate = read_audio(path, 16000)
    assert rate == 16000 and samples.shape == (1, 8000) and samples.dtype == np.float32
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(AudioError, match="not a readable audio file"):
        read_audio(tmp_path / "bad.wav")
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "missing.wav")


def test_atomic_writer_leaves_nothing_behind_on_abort_and_replaces_on_commit(tmp_path):
    target = tmp_path / "out.wav"
    writer = AtomicAudioWriter(target, 16000, 1, "WAV", "PCM_16")
    writer.write(np.full((1, 100), 2.0, np.float32))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    writer = AtomicAudioWriter(target, 16000, 1, "WAV", "PCM_16")
    writer.write(np.full((1, 100), 2.0, np.float32))
    writer.commit()
    assert writer.clipped == 100 and list(tmp_path.iterdir()) == [target]
    assert np.abs(sf.read(target)[0]).max() <= 1.0
