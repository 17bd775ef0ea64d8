"""hushnet.audio and hushnet.errors: formats kept on the way out, one-line errors, atomic writes, block reading."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from hushnet.audio import AtomicAudioWriter, AudioError, open_audio, output_format, read_audio
from hushnet.audio.formats import FORMATS, WRITABLE_EXTENSIONS, media_type
from hushnet.errors import one_line

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


@pytest.mark.parametrize(
    "message,expected",
    [
        ("'../shared/data' needs speech/ and noise/ folders", "'../shared/data' needs speech/ and noise/ folders"),
        ("Error opening 'a.wav': Format not recognised.", "Format not recognised"),
        (".hidden file is odd", ".hidden file is odd"),
        ("  padded  \n", "padded"),
    ],
)
def test_one_line_keeps_the_message_whole(message, expected):
    assert one_line(ValueError(message)) == expected


def test_one_line_takes_the_last_line_or_with_first_the_first():
    error = RuntimeError(
        "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model failed.\n  at graph.cc:12\n  at session.cc:3"
    )
    assert one_line(error) == "at session.cc:3"
    assert one_line(error, first=True) == "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model failed"
    assert one_line(OSError(28, "No space left on device"), first=True) == "No space left on device"
    assert one_line(KeyError(), first=True) == "KeyError"


def test_the_format_table_is_what_is_written_and_served(tmp_path):
    """Every extension in the one table is written in its own major format and served with its media type."""
    assert WRITABLE_EXTENSIONS == set(FORMATS)
    path = tmp_path / "x.wav"
    sf.write(path, speechlike(0.1)[0], 16000, subtype="PCM_16")
    with open_audio(path) as (_, info):
        for extension, known in FORMATS.items():
            major, subtype = output_format(info, extension)
            assert major == known.major and sf.check_format(major, subtype)
            assert media_type(extension.upper()) == known.media_type
    with pytest.raises(AudioError, match="cannot write .m4a"):
        output_format(info, ".m4a")
    assert media_type(".m4a") == "application/octet-stream"


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


def denoise_command(tmp_path, tiny_model_dir, source, output, limit_bytes=None, scratch=None):
    """``hushnet denoise`` in a child process, optionally under a file-size limit (a full disk's EFBIG)."""
    import os
    import subprocess
    import sys

    script = "import sys; from hushnet.cli import main; sys.exit(main(sys.argv[1:]))"
    if limit_bytes is not None:
        script = (
            f"import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes})); " + script
        )
    env = {**os.environ, **({"TMPDIR": str(scratch)} if scratch else {})}
    return subprocess.run(
        [sys.executable, "-c", script, "denoise", str(source), "-o", str(output), "--model", str(tiny_model_dir), "-q"],
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("extension", [".wav", ".flac"])
def test_a_full_disk_while_writing_is_one_line_naming_the_output(extension, tmp_path, tiny_model_dir):
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(5.0).T, 16000)
    target = tmp_path / f"out{extension}"
    result = denoise_command(tmp_path, tiny_model_dir, source, target, limit_bytes=60_000)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {source}: cannot write {target}: File too large" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def mp4(tmp_path, name, arguments):
    import subprocess

    path = tmp_path / name
    subprocess.run(["ffmpeg", "-v", "error", *arguments, str(path)], check=True)
    return path


@pytest.mark.skipif(__import__("shutil").which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_full_temporary_folder_while_decoding_says_so(tmp_path, tiny_model_dir):
    source = mp4(tmp_path, "talk.m4a", ["-f", "lavfi", "-i", "sine=frequency=300:duration=20", "-c:a", "aac"])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = denoise_command(
        tmp_path, tiny_model_dir, source, tmp_path / "out.wav", limit_bytes=100_000, scratch=scratch
    )
    assert result.returncode == 1 and "cannot decode: no space left in the temporary folder" in result.stderr, (
        result.stderr
    )
    assert [p.name for p in scratch.iterdir() if p.name.startswith("hushnet")] == []


@pytest.mark.skipif(__import__("shutil").which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_video_only_file_says_it_has_no_audio_stream(tmp_path):
    source = mp4(tmp_path, "clip.mp4", ["-f", "lavfi", "-i", "color=c=blue:s=32x32:d=1", "-c:v", "mpeg4"])
    with pytest.raises(AudioError, match="^no audio stream"):
        read_audio(source)


def test_a_device_is_not_an_empty_file():
    with pytest.raises(AudioError, match="not a regular file"):
        read_audio("/dev/zero")


def test_a_header_with_an_absurd_sample_rate_is_named(tmp_path):
    path = tmp_path / "odd.wav"
    sf.write(path, speechlike(0.2)[0], 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = (2**31 - 1).to_bytes(4, "little")  # the fmt chunk's sample rate
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="unsupported sample rate 2147483647 Hz"):
        read_audio(path)


@pytest.mark.parametrize("subtype, expected", [("PCM_24", "PCM_24"), ("PCM_16", "PCM_16"), ("FLOAT", "PCM_24")])
def test_wav_to_flac_keeps_its_resolution(subtype, expected, tmp_path, tiny_model_dir):
    from hushnet.cli import main

    path = tmp_path / "x.wav"
    sf.write(path, speechlike(0.3).T, 16000, subtype=subtype)
    assert main(["denoise", str(path), "-o", str(tmp_path / "x.flac"), "--model", str(tiny_model_dir), "-q"]) == 0
    assert sf.info(str(tmp_path / "x.flac")).subtype == expected
