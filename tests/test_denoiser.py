"""The Denoiser API: level normalisation makes the output independent of the recording level."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hushnet.audio import AudioError
from hushnet.denoiser import Denoiser
from hushnet.staging import clean_stale_staging

from helpers import speechlike, tiny_can


@pytest.mark.parametrize("gain_db", [-40.0, -12.0, 6.0])
def test_level_normalised_model_output_follows_the_input_level(gain_db):
    denoiser = Denoiser(tiny_can(input_rms_db=-23.0))
    x = 0.1 * speechlike(1.5)
    gain = 10 ** (gain_db / 20)
    reference = denoiser.denoise(x, 16000)
    scaled = denoiser.denoise(gain * x, 16000) / gain
    assert np.abs(scaled - reference).max() <= 1e-5 * np.abs(reference).max()


def test_without_level_normalisation_the_level_changes_the_result():
    """The check above can fail: a model fed the raw level (the authors') behaves differently at -40 dB."""
    denoiser = Denoiser(tiny_can(input_rms_db=None))
    x = 0.1 * speechlike(1.5)
    reference = denoiser.denoise(x, 16000)
    scaled = denoiser.denoise(0.01 * x, 16000) / 0.01
    assert np.abs(scaled - reference).max() > 1e-2 * np.abs(reference).max()


def test_digital_silence_stays_silent_with_level_normalisation():
    denoiser = Denoiser(tiny_can(input_rms_db=-23.0))
    assert not np.any(denoiser.denoise(np.zeros(16000, np.float32), 16000))


@pytest.mark.parametrize("level_db", [None, "off", -100.0, 0.0])
@pytest.mark.parametrize("amplitude", [1e-45, 1e-42, 1e-38, 1e-12])
def test_near_silent_input_is_silence_and_always_finite(amplitude, level_db):
    denoiser = Denoiser(tiny_can(input_rms_db=-23.0), level_db=level_db)
    x = (np.random.default_rng(1).standard_normal((2, 8000)) * amplitude).astype(np.float32)
    with np.errstate(all="raise"):
        y = denoiser.denoise(x, 16000)
    assert y.shape == x.shape and np.isfinite(y).all() and not y.any()
    x[1] = 0.1 * speechlike(0.5)[0]  # a loud channel beside a near-silent one is denoised as usual
    y = denoiser.denoise(x, 16000)
    assert not y[0].any() and np.abs(y[1]).max() > 1e-3


def test_an_engine_output_that_is_not_finite_is_an_audio_error_not_returned():
    """Input far above full scale, fed raw, overflows the network: an AudioError, never NaN returned."""
    denoiser = Denoiser(tiny_can(input_rms_db=None))
    with pytest.raises(AudioError, match="not finite"):
        denoiser.denoise(np.full(4000, 3e38, np.float32), 16000)


def test_long_file_staging_releases_pages_and_gives_the_same_result(tmp_path, monkeypatch):
    """Files staged on disk (as long ones are) hand their pages back as work proceeds; nothing changes."""
    import soundfile as sf

    from hushnet import staging
    from hushnet.inference import plan

    path = tmp_path / "in.wav"
    sf.write(path, speechlike(3.0)[0].astype(np.float32), 16000, subtype="FLOAT")
    denoiser = Denoiser(tiny_can(input_rms_db=-23.0))
    denoiser.denoise_file(path, tmp_path / "in_memory.wav", subtype="FLOAT")
    releases = []
    monkeypatch.setattr(staging, "IN_MEMORY_LIMIT_BYTES", 0)
    monkeypatch.setattr(staging.Staging, "RELEASE_EVERY", 4000)
    monkeypatch.setattr(plan, "FEED_SAMPLES", 4000)
    original = staging.Staging.release
    monkeypatch.setattr(staging.Staging, "release", lambda self: (releases.append(len(self.maps)), original(self)))
    denoiser.denoise_file(path, tmp_path / "staged.wav", subtype="FLOAT")
    assert len(releases) >= 5 and max(releases) == 2  # input and output memmaps, released many times
    a, _ = sf.read(tmp_path / "in_memory.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "staged.wav", dtype="float32")
    assert np.array_equal(a, b)


# --- bad inputs and options, staging of long files, the streamer --------------------------------------


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread (two spin against each other when a core is busy)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_samples_channels_layout_of_a_2s_stereo_array():
    """soundfile's [samples, channels] layout: once read as 32000 channels (24 GB); now unambiguous."""
    denoiser = Denoiser(tiny_can(input_rms_db=-23.0))
    x = speechlike(2.0, channels=2)  # [2, 32000]
    expected = denoiser.denoise(x, 16000)
    got = denoiser.denoise(x.T, 16000)  # auto: only one reading has at most 64 channels
    assert got.shape == (32000, 2) and np.array_equal(got, expected.T)
    assert np.array_equal(denoiser.denoise(np.ascontiguousarray(x.T), 16000, layout="channels_last"), expected.T)
    mono = denoiser.denoise(x[0][:, None], 16000)  # always_2d=True mono
    assert mono.shape == (32000, 1) and np.array_equal(mono[:, 0], denoiser.denoise(x[0], 16000))


def test_samples_channels_layout_at_44k1_stereo():
    denoiser = Denoiser(tiny_can())
    x = speechlike(1.0, rate=44100, channels=2)
    got = denoiser.denoise(x.T, 44100)
    assert got.shape == (44100, 2) and np.abs(got - denoiser.denoise(x, 44100).T).max() < 1e-6


@pytest.mark.parametrize("shape", [(4, 32), (64, 64)])
def test_ambiguous_shapes_are_a_clear_error(shape):
    with pytest.raises(AudioError, match="ambiguous shape"):
        Denoiser(tiny_can()).denoise(np.zeros(shape, np.float32) + 0.1, 16000)


def test_channels_first_with_too_many_channels_is_an_error_not_a_memory_explosion():
    with pytest.raises(AudioError, match="channels_last"):
        Denoiser(tiny_can()).denoise(np.zeros((32000, 2), np.float32), 16000, layout="channels_first")


def test_integer_arrays_come_back_in_their_own_type_and_scale():
    denoiser = Denoiser(tiny_can(norm="per-input"))  # no level normalisation: the scale matters
    x = speechlike(0.5)[0]
    pcm = np.round(x * 32767).astype(np.int16)
    got = denoiser.denoise(pcm, 16000)
    expected = denoiser.denoise(pcm.astype(np.float32) / 32768, 16000)
    assert got.dtype == np.int16
    assert np.abs(got.astype(np.float64) - np.clip(np.round(expected * 32768), -32768, 32767)).max() <= 1


def test_integral_float_sample_rate_is_accepted_and_fractional_refused():
    denoiser = Denoiser(tiny_can())
    x = speechlike(0.3)
    assert np.array_equal(denoiser.denoise(x, 16000.0), denoiser.denoise(x, 16000))
    with pytest.raises(AudioError, match="whole number"):
        denoiser.denoise(x, 16000.5)


def test_each_channel_has_its_own_level_gain():
    """Stereo with one channel 26 dB quieter: each channel as if denoised alone (one shared gain did not)."""
    denoiser = Denoiser(tiny_can(input_rms_db=-23.0))
    x = speechlike(1.0, channels=2)
    x[1] *= 0.05
    got = denoiser.denoise(x, 16000)
    for c in range(2):
        assert np.abs(got[c] - denoiser.denoise(x[c], 16000)).max() < 1e-6


def test_dry_mixes_the_input_back():
    x = speechlike(0.6)
    wet = Denoiser(tiny_can()).denoise(x, 16000)
    mixed = Denoiser(tiny_can(), dry=0.25).denoise(x, 16000)
    assert np.abs(mixed - (wet + 0.25 * (x - wet))).max() < 1e-6
    assert np.abs(Denoiser(tiny_can(), dry=1.0).denoise(x, 16000) - x).max() < 1e-6


@pytest.mark.parametrize("dry", [-0.1, 1.5, "a"])
def test_dry_outside_0_to_1_is_refused(dry):
    with pytest.raises(AudioError, match="dry must be between 0"):
        Denoiser(tiny_can(), dry=dry)


def test_level_normalisation_can_be_turned_on_for_a_model_without_it():
    """The authors' kind of model (no input_rms_db) with level_db=-23: output follows the input level."""
    model = tiny_can(norm="per-input")
    model.config.segment_seconds = 0.25
    x = 0.1 * speechlike(0.9)
    for scope in ("recording", "segment"):
        denoiser = Denoiser(model, level_db=-23.0, level_scope=scope)
        assert np.abs(denoiser.denoise(0.01 * x, 16000) / 0.01 - denoiser.denoise(x, 16000)).max() < 1e-5
    plain = Denoiser(model)
    assert np.abs(plain.denoise(0.01 * x, 16000) / 0.01 - plain.denoise(x, 16000)).max() > 1e-3


def test_segment_level_scope_differs_from_recording_scope_on_a_level_change():
    x = speechlike(1.0)
    x[:, 8000:] *= 10
    model = tiny_can(input_rms_db=-23.0)
    model.config.segment_seconds = 0.25
    a = Denoiser(model, level_scope="recording").denoise(x, 16000)
    b = Denoiser(model, level_scope="segment").denoise(x, 16000)
    assert np.abs(a - b).max() > 1e-3


STAGE_SCRIPT = """
import sys, time
import numpy as np
import soundfile as sf
from hushnet import staging
from hushnet.denoiser import Denoiser
sys.path.insert(0, sys.argv[2])
from helpers import tiny_can
staging.IN_MEMORY_LIMIT_BYTES = 0
d = Denoiser(tiny_can())
def progress(n):
    print("staged", flush=True)
    time.sleep(60)
d.denoise_file(sys.argv[1], sys.argv[1] + ".out.wav", progress=progress)
"""


@pytest.mark.slow
def test_kill_9_leaves_no_staging_files(tmp_path):
    """Staging files are unlinked once mapped: a SIGKILLed process leaves nothing in the temp folder."""
    path = tmp_path / "in.wav"
    import soundfile as sf

    sf.write(path, speechlike(2.0)[0], 16000)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    process = subprocess.Popen(
        [sys.executable, "-c", STAGE_SCRIPT, str(path), str(Path(__file__).parent)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "staged"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not list(scratch.glob("hushnet-stage-*"))


def test_stale_staging_folders_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"hushnet-stage-{dead.pid}-abc"
    stale.mkdir()
    (stale / "input.f32").write_bytes(b"0" * 100)
    alive = tmp_path / f"hushnet-stage-{os.getpid()}-def"
    alive.mkdir()
    assert clean_stale_staging(tmp_path) == [stale]
    assert not stale.exists() and alive.exists()


def stream_all(stream, x: np.ndarray, rng) -> np.ndarray:
    pieces, position = [], 0
    while position < x.shape[-1]:
        size = int(rng.choice([1, 2, 7, int(rng.integers(1, 3000))]))
        pieces.append(stream.feed(x[..., position : position + size]))
        position += size
    pieces.append(stream.flush())
    return np.concatenate(pieces, axis=-1)


@pytest.mark.parametrize("case", ["chunks", "per-input segments", "level per segment", "stereo dry"])
def test_stream_output_equals_denoise_of_the_whole_signal(case):
    rng = np.random.default_rng(1)
    if case == "chunks":
        denoiser, x = Denoiser(tiny_can(), chunk_seconds=0.05), speechlike(0.7)[0]
    elif case == "per-input segments":
        model = tiny_can(norm="per-input")
        model.config.segment_seconds = 0.25
        denoiser, x = Denoiser(model), speechlike(1.1)[0]
    elif case == "level per segment":
        model = tiny_can(input_rms_db=-23.0)
        model.config.segment_seconds = 0.25
        denoiser, x = Denoiser(model, level_scope="segment"), speechlike(0.9)[0]
    else:
        model = tiny_can(norm="per-input")
        model.config.segment_seconds = 0.25
        denoiser, x = Denoiser(model, dry=0.3), speechlike(0.8, channels=2)
    stream = denoiser.stream(16000, channels=1 if x.ndim == 1 else x.shape[0])
    got = stream_all(stream, x, rng)
    assert got.shape == x.shape
    assert np.abs(got - denoiser.denoise(x, 16000)).max() < 1e-6
    assert stream.latency == stream.scheme.lookahead / 16000 and 0 < stream.latency < 1.0


def test_stream_at_another_rate_matches_denoise():
    denoiser = Denoiser(tiny_can(), chunk_seconds=0.05)
    x = speechlike(0.6, rate=22050)[0]
    got = stream_all(denoiser.stream(22050), x, np.random.default_rng(2))
    assert got.shape == x.shape and np.abs(got - denoiser.denoise(x, 22050)).max() < 1e-3


def test_stream_latency_of_the_shipped_models():
    """What docs/behaviour.md documents: chunks lag by a chunk plus the receptive radius (at most 1.5 s);
    segments by 1.5 segments."""
    assert Denoiser.from_pretrained("authors-dfl", engine="onnx").stream().latency == pytest.approx(
        (64000 + 48000 - 24000) / 16000
    )
    for engine in ("onnx", "torch"):
        dfl = Denoiser.from_pretrained("hushnet-dfl", engine=engine, level_db="off")
        assert dfl.stream().latency == pytest.approx((12288 + 8192) / 16000) and dfl.stream().latency <= 1.5


def test_numpy_scalars_are_accepted_as_options():
    x = speechlike(0.5)[0]
    by_float = Denoiser(tiny_can(), dry=0.5, level_db=-30.0).denoise(x, 16000)
    by_numpy = Denoiser(tiny_can(), dry=np.float32(0.5), level_db=np.float64(-30.0)).denoise(x, 16000)
    assert np.array_equal(by_float, by_numpy)


@pytest.mark.parametrize("rate", [10**9, 2**31 - 1])
def test_an_absurd_sample_rate_is_an_audio_error(rate):
    from hushnet.audio import AudioError

    with pytest.raises(AudioError, match=f"unsupported sample rate {rate} Hz"):
        Denoiser(tiny_can()).denoise(speechlike(0.1)[0], rate)


def test_denoise_file_checks_its_output_folder_before_any_work(tmp_path):
    import soundfile as sf

    from hushnet.audio import AudioError

    source = tmp_path / "in.wav"
    sf.write(source, speechlike(2.0)[0], 16000)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    calls = []
    with pytest.raises(AudioError, match=f"cannot write to {blocker / 'sub'}"):
        Denoiser(tiny_can()).denoise_file(
            source, blocker / "sub" / "out.wav", progress=calls.append, on_start=calls.append
        )
    assert calls == []  # refused before reading or denoising anything
    result = Denoiser(tiny_can()).denoise_file(
        source, tmp_path / "new" / "deeper" / "out.wav"
    )  # a missing folder is made
    assert sf.info(str(result.output)).frames == 32000


def test_a_flushed_stream_refuses_more_input_in_one_line():
    from hushnet.audio import AudioError

    stream = Denoiser(tiny_can()).stream(16000)
    stream.feed(np.zeros(800, np.float32))
    stream.flush()
    for again in (lambda: stream.feed(np.zeros(800, np.float32)), stream.flush):
        with pytest.raises(AudioError, match="flushed"):
            again()


@pytest.mark.parametrize("norm", ["batch", "per-input"])
@pytest.mark.parametrize("level_db", ["off", -23.0])
@pytest.mark.parametrize("rate", [16000, 44100])
@pytest.mark.parametrize("fed", ["nothing", "an empty chunk"])
def test_a_stream_flushed_with_nothing_fed_returns_an_empty_array(fed, rate, level_db, norm):
    stream = Denoiser(tiny_can(norm), level_db=level_db).stream(rate)
    if fed == "an empty chunk":
        assert stream.feed(np.zeros(0, np.float32)).shape == (0,)
    out = stream.flush()
    assert out.shape == (0,) and out.dtype == np.float32
    stereo = Denoiser(tiny_can(norm), level_db=level_db).stream(rate, channels=2)
    assert stereo.flush().shape == (2, 0)


def test_a_sample_rate_below_1_khz_is_refused_before_any_work():
    """denoise(x, 1) took a 1-s array for 4.4 hours of audio, resampled to 16 kHz without a word."""
    with pytest.raises(AudioError, match="unsupported sample rate 1 Hz"):
        Denoiser(tiny_can()).denoise(np.zeros(16000, np.float32), 1)
    with pytest.raises(AudioError, match="unsupported sample rate 999 Hz"):
        Denoiser(tiny_can()).stream(999)
    assert Denoiser(tiny_can()).denoise(speechlike(0.1, rate=1000)[0], 1000).shape == (100,)


def test_property_denoise_gives_a_finite_array_of_the_input_shape_or_an_audio_error():
    """Property (hypothesis): whatever the dtype, shape, layout, contiguity, rate, amplitude (subnormal
    to full scale) and NaN/inf positions, denoise returns a finite array of the input's shape and dtype,
    or raises AudioError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    denoisers = [Denoiser(tiny_can(input_rms_db=-23.0)), Denoiser(tiny_can("per-input"), level_db="off")]
    dtypes = st.sampled_from(["float16", "float32", "float64", "int8", "int16", "int32", "uint8", "bool", "complex64"])
    rates = st.one_of(
        st.sampled_from([1000, 8000, 11025, 16000, 22050, 44100, 48000, 96000, 768000]),
        st.integers(-5, 10**6),
        st.sampled_from([16000.0, 44100.5, float("nan"), 0]),
    )

    @st.composite
    def signals(draw):
        dtype = np.dtype(draw(dtypes))
        channels = draw(st.integers(1, 3))
        samples = draw(st.integers(1, 2000))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max, size=(channels, samples), endpoint=True).astype(dtype)
        else:
            exponent = draw(
                st.one_of(st.sampled_from([-45.0, -43.0, -42.0, -39.0, -20.0, -3.0, 0.0]), st.floats(-45.0, 0.0))
            )
            amplitude = 10.0**exponent
            x = (rng.standard_normal((channels, samples)) * amplitude).clip(-1, 1)
            x = x.astype(dtype) if dtype.kind != "b" else x > 0
        if dtype.kind in "fc" and draw(st.booleans()):
            x[draw(st.integers(0, channels - 1)), draw(st.integers(0, samples - 1))] = draw(
                st.sampled_from([np.nan, np.inf, -np.inf])
            )
        form = draw(st.sampled_from(["1-D", "channels_first", "channels_last", "strided", "fortran"]))
        if form == "1-D" or channels == 1 and draw(st.booleans()):
            return x[0], "auto"
        if form == "channels_last":
            return np.ascontiguousarray(x.T) if draw(st.booleans()) else x.T, draw(st.sampled_from(["auto", form]))
        if form == "strided":
            return x[:, ::2] if x.shape[1] > 1 else x, "channels_first"
        if form == "fortran":
            return np.asfortranarray(x), draw(st.sampled_from(["auto", "channels_first"]))
        return x, draw(st.sampled_from(["auto", "channels_first"]))

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(signals(), rates, st.integers(0, 1))
    def check(signal_and_layout, rate, which):
        audio, layout = signal_and_layout
        before = audio.copy()
        try:
            # no overflow or invalid arithmetic anywhere on the way; underflow to zero is what subnormal input is for
            with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
                y = denoisers[which].denoise(audio, rate, layout=layout)
        except AudioError:
            return
        finally:
            assert np.array_equal(audio, before, equal_nan=audio.dtype.kind in "fc")  # the input is not touched
        assert y.shape == audio.shape and y.dtype == audio.dtype
        assert np.isfinite(y.astype(np.float64)).all()

    check()


def test_an_input_shorter_than_one_sample_at_16_khz_is_an_audio_error():
    with pytest.raises(AudioError, match="too short to denoise: 1 sample"):
        Denoiser(tiny_can()).denoise(np.array([89], dtype=np.int8), 44100)
