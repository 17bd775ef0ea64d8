"""Chunks, segments, crossfades, engines and the ONNX export (tiny models, short audio)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hushnet.denoiser import Denoiser
from hushnet.inference.engines import OnnxEngine, TorchEngine
from hushnet.inference.networks import FoldedCAN, PerInputCAN, export_onnx
from hushnet.inference.plan import Enhancer, Scheme, crossfade_ramp, junction

from helpers import speechlike, tiny_can


def whole(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def run_all(enhancer: Enhancer, x: np.ndarray, block: int) -> np.ndarray:
    pieces = [enhancer.feed(x[:, i : i + block]) for i in range(0, x.shape[1], block)]
    return np.concatenate(pieces + [enhancer.flush()], axis=1)


def per_input(segment_seconds: float | None = 0.25, **options):
    model = tiny_can("per-input", **options)
    model.config.segment_seconds = segment_seconds
    return model


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: one thread is fastest, and on a machine whose other core is busy, two threads
    spin against each other (measured: 25x slower per call for these sizes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    return folder


def onnx_engine(model, folder, name):
    return OnnxEngine(export_onnx(model, folder / f"{name}.onnx"), model.config)


def test_folded_network_equals_the_model():
    model = tiny_can("batch")
    x = speechlike(0.5, channels=2)
    assert np.abs(whole(FoldedCAN(model), x) - whole(model, x)).max() < 1e-6


@pytest.mark.parametrize("length", [1, 31, 64, 1000, 5003])
def test_per_input_export_form_equals_the_model_including_the_zero_tail(length):
    model = tiny_can("per-input", dilated_layers=6)  # dilations up to 64: tails of every size
    x = speechlike(0.5, channels=2)[:, :length]
    assert np.abs(whole(PerInputCAN(model), x) - whole(model, x)).max() < 1e-5


@pytest.mark.parametrize("chunk", [7, 37, 500, 20000])
@pytest.mark.parametrize("length", [1, 50, 3001])
def test_chunks_with_receptive_radius_context_equal_whole_signal_processing(chunk, length):
    model = tiny_can("batch")
    x = speechlike(0.2, channels=2)[:, :length]
    scheme = Scheme("chunks", chunk, context=model.config.receptive_radius)
    got = run_all(Enhancer(TorchEngine(model), scheme, 2), x, block=777)
    assert got.shape == x.shape and np.abs(got - whole(model, x)).max() < 1e-5


def test_chunks_with_too_little_context_differ():
    """The check above can fail: one sample less context than the radius changes the output."""
    model = tiny_can("batch")
    x = speechlike(0.2)
    scheme = Scheme("chunks", 100, context=model.config.receptive_radius - 1)
    assert (
        np.abs(run_all(Enhancer(TorchEngine(model), scheme, 1), x, 1000) - whole(model, x)).max() > 1e-5
    )  # the tolerance above


@pytest.mark.parametrize("seconds", [0.1, 0.25])
def test_input_up_to_one_segment_is_exactly_the_per_file_result(seconds):
    model = per_input(0.25)
    x = speechlike(seconds, channels=2)
    got = Denoiser(model).denoise(x, 16000)
    assert np.array_equal(got, whole(model, x))


def test_long_input_is_crossfaded_segments_each_with_its_own_statistics():
    model = per_input(0.25)
    denoiser = Denoiser(model)
    scheme = denoiser.scheme
    assert (scheme.kind, scheme.length, scheme.overlap) == ("segments", 4000, 1333)
    x = speechlike(1.3)
    x[:, 8000:] *= 4.0  # a level change: segments' statistics differ
    got = denoiser.denoise(x, 16000)[0]
    total = x.shape[1]
    starts = [k * scheme.hop for k in range(100) if k * scheme.hop + scheme.length <= total]
    if starts[-1] + scheme.length < total:
        starts.append(total - scheme.length)
    outputs = [whole(model, x[:, a : a + scheme.length])[0] for a in starts]
    ramp = crossfade_ramp(scheme.overlap)
    expected = np.empty(total, np.float32)
    position = 0
    for j, a in enumerate(starts):
        if j + 1 < len(starts):
            left, right = junction(starts[j + 1], a + scheme.length, scheme.overlap)
            expected[position:left] = outputs[j][position - a : left - a]
            expected[left:right] = (
                outputs[j][left - a : right - a] * ramp[::-1]
                + outputs[j + 1][left - starts[j + 1] : right - starts[j + 1]] * ramp
            )
            position = right
        else:
            expected[position:] = outputs[j][position - a :]
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(got - whole(model, x)[0]).max() > 1e-3  # not whole-file statistics


def weight_steps(model, x: np.ndarray, scheme: Scheme) -> float:
    """Largest sample-to-sample change of the weight the output gives the incoming segment at a join.

    Across the overlap of segments j and j+1, ``w = (out - y_j) / (y_{j+1} - y_j)`` (where the two
    differ clearly); a step in the output is a jump of w (a hard cut jumps from 0 to 1 in one sample).
    """
    out = run_all(Enhancer(TorchEngine(model), scheme, 1), x, 999)[0]
    total, largest = x.shape[1], 0.0
    starts = [k * scheme.hop for k in range(100) if k * scheme.hop + scheme.length <= total]
    starts += [total - scheme.length] if starts[-1] + scheme.length < total else []
    for a, b in zip(starts, starts[1:]):
        ya, yb = (whole(model, x[:, s : s + scheme.length])[0] for s in (a, b))
        region = np.arange(b, a + scheme.length)
        gap = yb[region - b] - ya[region - a]
        clear = np.abs(gap) > 0.2 * np.abs(gap).max()
        w = (out[region] - ya[region - a])[clear] / gap[clear]
        assert -1e-3 <= w.min() and w.max() <= 1 + 1e-3
        largest = max(largest, float(np.max(np.abs(np.diff(w)) / np.diff(region[clear]))))
    return largest


def test_crossfade_leaves_no_step_at_the_joins():
    """The incoming segment's weight rises by 1/overlap per sample at most; a hard cut jumps (fails the check)."""
    model = per_input(0.25)
    x = speechlike(1.0)
    x[:, 3000:] *= 6.0
    assert weight_steps(model, x, Scheme("segments", 4000, overlap=1333)) <= 1.01 / 1333 + 1e-4
    assert weight_steps(model, x, Scheme("segments", 4000, overlap=1333, fade=0)) > 0.1


def test_memory_stays_bounded_whatever_the_length():
    """The enhancer holds at most a segment plus a hop (or a chunk plus context) of input."""
    model = per_input(0.25)
    engine = TorchEngine(model)
    for scheme in (Scheme("segments", 4000, overlap=1333), Scheme("chunks", 3000, context=32)):
        enhancer = Enhancer(engine, scheme, 1)
        held = 0
        rng = np.random.default_rng(0)
        for _ in range(60):  # 12 s of audio, 3 x the held amount
            enhancer.feed((0.05 * rng.standard_normal((1, 3200))).astype(np.float32))
            held = max(held, enhancer.buffer.shape[1])
        enhancer.flush()
        assert held <= scheme.length + scheme.hop + 3200 + 2 * scheme.context


def test_onnx_export_matches_torch_for_both_modes(onnx_dir):
    for norm in ("batch", "per-input"):
        model = tiny_can(norm, dilated_layers=6)
        engine = onnx_engine(model, onnx_dir, norm)
        for length in (1, 63, 64, 1000, 4099):
            x = speechlike(0.3, channels=3)[:, :length]
            assert np.abs(engine(x) - whole(model, x)).max() < 1e-5, (norm, length)


@pytest.mark.parametrize(
    "options",
    [
        {"norm": "batch"},
        {"norm": "batch", "input_rms_db": -23.0},
        {"norm": "batch", "input_rms_db": -23.0, "level_scope": "segment"},
        {"norm": "per-input"},
        {"norm": "per-input", "segment_seconds": 0.25},
        {"norm": "per-input", "segment_seconds": 0.25, "level_db": -23.0, "level_scope": "segment"},
        {"norm": "per-input", "segment_seconds": 0.25, "level_db": -30.0, "dry": 0.2},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_onnx_and_torch_engines_agree_for_every_mode(options, onnx_dir):
    options = dict(options)
    model = tiny_can(options.pop("norm"), input_rms_db=options.pop("input_rms_db", None))
    model.config.segment_seconds = options.pop("segment_seconds", None)
    name = f"m{abs(hash(str(sorted(model.config.to_dict().items()))))}"
    torch_denoiser = Denoiser(TorchEngine(model), chunk_seconds=0.1, **options)
    onnx_denoiser = Denoiser(onnx_engine(model, onnx_dir, name), chunk_seconds=0.1, **options)
    x = speechlike(1.1, rate=22050, channels=2)
    a, b = torch_denoiser.denoise(x, 22050), onnx_denoiser.denoise(x, 22050)
    assert np.abs(a - b).max() < 1e-5


@pytest.mark.parametrize("model_name", ["authors-dfl", "hushnet-dfl"])
def test_shipped_model_onnx_matches_its_safetensors_weights(model_name):
    from hushnet.model_dir import ONNX_FILE, load_model, resolve_model_dir

    model = load_model(model_name)
    engine = OnnxEngine(resolve_model_dir(model_name) / ONNX_FILE, model.config)
    x = speechlike(1.3, channels=2)  # 20800 samples: not a multiple of the larger dilations
    assert np.abs(engine(x) - whole(model, x)).max() < 1e-5


def test_bf16_precision_runs_the_torch_engine_under_autocast_close_to_float32():
    from hushnet.denoiser import Denoiser
    from hushnet.inference.engines import Engine, load_engine
    from hushnet.model_dir import ModelError

    x = speechlike(1.0)
    full = Denoiser(tiny_can()).denoise(x, 16000)
    half = Denoiser(tiny_can(), precision="bf16")
    assert isinstance(half.engine, Engine) and half.engine.precision == "bf16"
    y = half.denoise(x, 16000)
    difference = np.abs(y - full).max()
    assert 0 < difference < 0.02 * np.abs(full).max()  # bfloat16 arithmetic: changed, and close
    with pytest.raises(ModelError, match="runs this model in float32 only"):
        load_engine(None, engine="onnx", precision="bf16")
    chosen = load_engine(
        None, precision="bf16"
    )  # auto picks an engine that has bf16 (OpenVINO where it can, else torch)
    assert chosen.name in ("openvino", "torch") and chosen.precision == "bf16"
