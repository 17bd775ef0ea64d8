"""The engines: OpenVINO at fixed shapes (padding made exact by the activation mask), the choice of
engine and precision, the fallback when OpenVINO cannot load (tiny models, short audio)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hushnet.denoiser import Denoiser
from hushnet.inference import choice, engines
from hushnet.inference.choice import AUTO, FALLBACK, choose_precision, engine_order
from hushnet.inference.engines import (
    OnnxEngine,
    OpenVinoEngine,
    TorchEngine,
    cpu_bf16_flag,
    installed,
    load_engine,
    resolve_engine,
)
from hushnet.inference.networks import export_onnx
from hushnet.inference.plan import FIXED_QUANTUM, fitted_chunk, fixed_length
from hushnet.model_dir import ONNX_FILE, ModelError, fingerprint, fingerprint_metadata, save_model
from hushnet.precision import CPU_CLASSES, Cpu, cpu_class, cpu_numbers, detect_cpu

from helpers import DEV, needs_shared, speechlike, tiny_can

# Only the tests that run OpenVINO need it; the onnxruntime, torch and precision tests run without it.
needs_openvino = pytest.mark.skipif(not installed("openvino"), reason="needs OpenVINO (extra hushnet[openvino])")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def exported(model, folder, name: str):
    return export_onnx(model, folder / f"{name}.onnx")


@pytest.fixture(scope="module")
def batch_onnx(tmp_path_factory):
    model = tiny_can("batch", dilated_layers=6)
    return model, exported(model, tmp_path_factory.mktemp("ov"), "batch")


def test_fixed_lengths_have_three_significant_bits_and_waste_at_most_a_quarter():
    for samples in list(range(1, 20 * FIXED_QUANTUM, 997)) + [262144, 262145, 10**6]:
        length = fixed_length(samples)
        quanta = length // FIXED_QUANTUM
        assert length % FIXED_QUANTUM == 0 and length >= samples and fixed_length(length) == length
        assert bin(quanta).rstrip("0").count("1") <= 3 or quanta <= 8
        assert length <= max(8 * FIXED_QUANTUM, 1.25 * samples + FIXED_QUANTUM)
    for target, radius in [(256000, 8192), (15808, 8192), (49152, 8192), (9000, 31)]:
        chunk = fitted_chunk(target, radius)
        assert chunk <= target and fixed_length(chunk + 2 * radius) == chunk + 2 * radius
    assert fitted_chunk(256000, 8192) == 245760  # inputs of 2^18 samples for the 64-channel CAN
    assert fitted_chunk(100, 8192) == 100 and fitted_chunk(800, 31) == 800  # nothing fits: the chunk asked for


@needs_openvino
@pytest.mark.parametrize("length", [1, 31, 1000, 4096, 5001, 20000])
def test_padded_fixed_shape_input_gives_the_unpadded_output(batch_onnx, length, tmp_path):
    model, path = batch_onnx
    reference = OnnxEngine(path, model.config)
    engine = OpenVinoEngine(path, model.config, threads=1, precision="float32", cache_dir=tmp_path)
    x = speechlike(1.3, channels=2)[:, :length]
    got = engine(x)
    assert got.shape == x.shape and np.abs(got - reference(x)).max() < 1e-5
    assert set(engine.compile_seconds) == {fixed_length(length)}
    if (
        length > 100 and fixed_length(length) > length
    ):  # zero padding alone is not the network's own zero padding at the end
        padded = np.pad(x, ((0, 0), (0, fixed_length(length) - length)))
        assert np.abs(reference(padded)[:, :length] - reference(x)).max() > 1e-3


@needs_openvino
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_files_of_any_length_run_at_few_compiled_shapes(batch_onnx, tmp_path, precision):
    """float32 pads each input to its own fixed length; bf16, whose compiles are dear, pads every
    file to the one chunk shape compiled when the Denoiser was made."""
    if precision == "bf16" and cpu_bf16_flag() is None:
        pytest.skip("this CPU has no native bf16 units")
    model, path = batch_onnx
    engine = OpenVinoEngine(path, model.config, threads=1, precision=precision, cache_dir=tmp_path)
    reference = Denoiser(OnnxEngine(path, model.config))
    denoiser = Denoiser(engine, chunk_seconds=0.5)
    scheme = denoiser.scheme
    assert list(engine.compile_seconds) == [scheme.length + 2 * scheme.context]  # compiled at construction
    for seconds in (0.1, 0.77, 1.9, 3.3):
        x = speechlike(seconds, rate=22050, channels=2)
        expected = reference.denoise(x, 22050)
        error = np.abs(denoiser.denoise(x, 22050) - expected).max()
        assert error < (1e-5 if precision == "float32" else 0.02 * np.abs(expected).max())
    if precision == "bf16":
        assert list(engine.compile_seconds) == [scheme.length + 2 * scheme.context]
    else:
        assert all(fixed_length(length) == length for length in engine.compile_seconds)
    assert any(path.is_file() for path in tmp_path.iterdir())  # the compiled model is cached for the next run


@needs_openvino
def test_per_input_model_runs_its_segments_and_other_lengths_exactly(tmp_path):
    model = tiny_can("per-input", dilated_layers=6)
    model.config.segment_seconds = 0.25
    path = exported(model, tmp_path, "per_input")
    reference = OnnxEngine(path, model.config)
    engine = OpenVinoEngine(path, model.config, threads=1, precision="float32", cache_dir=tmp_path)
    segment = speechlike(0.25, channels=2)
    assert np.abs(engine(segment) - reference(segment)).max() < 1e-5
    short = segment[:, :2345]  # statistics over the whole input: not padded, run exactly
    assert np.array_equal(engine(short), reference(short))
    assert list(engine.compile_seconds) == [4000]
    x = speechlike(1.1, channels=2)
    assert np.abs(Denoiser(engine).denoise(x, 16000) - Denoiser(reference).denoise(x, 16000)).max() < 1e-5


@needs_openvino
def test_stream_of_the_openvino_engine_equals_denoise(batch_onnx, tmp_path):
    model, path = batch_onnx
    denoiser = Denoiser(OpenVinoEngine(path, model.config, threads=1, precision="float32", cache_dir=tmp_path))
    x = speechlike(2.5)[0]
    stream = denoiser.stream()
    got = np.concatenate([stream.feed(x[i : i + 777]) for i in range(0, x.size, 777)] + [stream.flush()])
    assert np.abs(got - denoiser.denoise(x, 16000)).max() < 1e-5
    assert stream.latency <= 1.5


@needs_openvino
def test_calls_from_several_threads_get_their_own_requests(batch_onnx, tmp_path):
    model, path = batch_onnx
    engine = OpenVinoEngine(path, model.config, threads=1, precision="float32", cache_dir=tmp_path, streams=2)
    inputs = [speechlike(0.5, seed=seed) for seed in range(4)]
    expected = [engine(x) for x in inputs]
    results: dict[int, np.ndarray] = {}
    workers = [threading.Thread(target=lambda k=k: results.__setitem__(k, engine(inputs[k]))) for k in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(np.array_equal(results[k], expected[k]) for k in range(4))


def test_bf16_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_bf16_flag(info) == "avx512_bf16"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert cpu_bf16_flag(info) is None
    assert cpu_bf16_flag(tmp_path / "missing") is None


def cpu(name: str) -> Cpu:
    """A CPU of one class, as /proc/cpuinfo would describe it."""
    flags = {
        "amx": "avx2 fma avx512f avx512_bf16 amx_tile amx_bf16",
        "avx512_bf16": "avx2 fma avx512f avx512_bf16",
        "avx512": "avx2 fma avx512f",
        "avx2": "avx2 fma",
        "unknown": "sse2",
    }[name]
    return Cpu(name, "test CPU", frozenset(flags.split()))


def test_cpu_classes_are_read_from_the_flags(tmp_path, monkeypatch):
    for name in ("amx", "avx512_bf16", "avx512", "avx2", "unknown"):
        assert cpu_class(cpu(name).flags, machine="x86_64") == name
    assert cpu_class(frozenset({"fp", "asimd", "bf16"}), machine="aarch64") == "arm64"
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n")
    assert detect_cpu(info) == Cpu("avx2", "AMD EPYC 7B13", frozenset({"fpu", "sse2", "avx2", "fma"}))
    monkeypatch.setenv("HUSHNET_CPU_FLAGS", "avx2 fma")  # to test or measure one class on another
    assert detect_cpu().name == "avx2" and detect_cpu().bf16_flag is None
    assert detect_cpu(info).name == "avx2"  # a file given is read as it is


def test_cpu_family_and_model_numbers_are_the_first_processors(tmp_path):
    info = tmp_path / "cpuinfo"
    first = "processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
    info.write_text(first + "\nprocessor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\n")
    assert cpu_numbers(info) == {"cpu family": "26", "model": "2"}  # "model name" is not "model"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd\nCPU part\t: 0xd0c\n")  # Arm: none
    assert cpu_numbers(info) == {}
    assert cpu_numbers(tmp_path / "missing") == {}


def test_precision_is_decided_once_for_every_engine_and_cpu_class():
    amx, avx2 = cpu("amx"), cpu("avx2")
    assert choose_precision("auto", "openvino", amx)[0] == "bf16"
    assert choose_precision("auto", "openvino", avx2) == ("float32", "auto: CPU class avx2 has no native bf16 units")
    assert choose_precision("auto", "torch", amx)[0] == ("bf16" if choice.TORCH_AUTO_BF16 else "float32")
    assert choose_precision("bf16", "torch", avx2) == ("bf16", "asked for")  # torch emulates it where asked
    assert choose_precision("auto", "onnx", amx) == ("float32", "onnxruntime runs float32 only")
    assert choose_precision("float32", "openvino", amx) == ("float32", "asked for")
    assert choose_precision("auto", "train", cpu("avx512_bf16"))[0] == "bf16"
    assert choose_precision("auto", "train", avx2)[0] == "float32"
    assert choose_precision("auto", "openvino", amx, device="cuda") == ("float32", "auto: float32 off the CPU")
    with pytest.raises(ModelError, match="float32 only"):
        choose_precision("bf16", "onnx", amx)
    with pytest.raises(ModelError, match="no native bf16 units, so OpenVINO cannot run bf16"):
        choose_precision("bf16", "openvino", avx2)
    with pytest.raises(ModelError, match="precision must be one of auto, float32, bf16, got 'fp16'"):
        choose_precision("fp16", "torch", avx2)


def test_per_input_models_stay_float32_under_auto():
    """bf16 missed the quality rule for the authors' per-input model, so auto keeps it float32."""
    for name in ("amx", "avx512_bf16"):
        value, why = choose_precision("auto", "openvino", cpu(name), kind="per-input")
        assert value == "float32" and "quality rule" in why


def test_auto_takes_the_measured_engine_of_each_cpu_class_and_says_why():
    for name in CPU_CLASSES:
        for kind in ("fixed", "per-input"):
            entry = AUTO.get((name, kind), FALLBACK)
            order, why = engine_order(
                "auto", "auto", cpu(name) if name != "arm64" else Cpu("arm64", "", frozenset()), kind
            )
            assert order[0] == entry.engine and sorted(order) == ["onnx", "openvino", "torch"]
            assert why == f"auto for CPU class {name}, {kind} model: {entry.evidence}"
            if kind == "per-input":  # the quality rule: nothing per-input runs bf16 under auto
                assert entry.precision == "float32"
    assert AUTO["avx2", "fixed"].engine == "onnx" and (AUTO["amx", "fixed"].engine, AUTO["amx", "fixed"].precision) == (
        "openvino",
        "bf16",
    )
    assert engine_order("onnx", "auto", cpu("amx"), "fixed") == (["onnx"], "asked for")
    assert engine_order("auto", "bf16", cpu("avx2"), "fixed")[0] == ["torch"]  # bf16 asked for: only torch has it
    assert engine_order("auto", "auto", cpu("amx"), "fixed", on_cpu=False)[0] == ["torch"]
    with pytest.raises(ModelError, match="engine must be one of"):
        engine_order("tensorrt", "auto", cpu("amx"), "fixed")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models") / "tiny"
    model = tiny_can("batch", dilated_layers=6)
    save_model(model, directory, "# tiny\n")
    export_onnx(model, directory / ONNX_FILE, fingerprint_metadata(directory))
    return directory


@needs_openvino
def test_auto_engine_is_the_measured_one_for_the_cpu_class(model_dir):
    engine = load_engine(model_dir, precision="float32", cpu=cpu("amx"))
    assert engine.name == "openvino" and engine.precision == "float32" and engine.choice.startswith("openvino float32")
    engine = load_engine(model_dir, cpu=cpu("amx"))
    assert (engine.name, engine.precision) == ("openvino", "bf16") and "CPU class amx" in engine.choice
    engine = load_engine(model_dir, cpu=cpu("avx2"))
    assert (engine.name, engine.precision) == ("onnx", "float32")
    assert engine.choice == f"onnx float32 (auto for CPU class avx2, fixed model: {AUTO['avx2', 'fixed'].evidence})"
    engine = load_engine(model_dir, engine="openvino", cpu=cpu("avx2"))
    assert engine.choice == "openvino float32 (asked for; auto: CPU class avx2 has no native bf16 units)"


@needs_openvino
def test_auto_engine_falls_back_to_onnxruntime_with_one_line_when_openvino_fails(model_dir, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("libopenvino.so: cannot open shared object file\nmore detail")

    monkeypatch.setattr(engines, "OpenVinoEngine", broken)
    with caplog.at_level("WARNING", logger="hushnet"):  # the library logs; the CLI shows it on stderr
        engine = load_engine(model_dir, cpu=cpu("amx"))
    lines = caplog.messages
    assert isinstance(engine, OnnxEngine) and engine.precision == "float32"
    assert lines == [
        "hushnet: OpenVINO failed to load (libopenvino.so: cannot open shared object file); using onnxruntime"
    ]
    with pytest.raises(ModelError, match="OpenVINO cannot run"):
        load_engine(model_dir, engine="openvino")


def test_torch_bf16_runs_under_autocast_and_stays_close(model_dir):
    model = tiny_can("batch", dilated_layers=6)
    x = speechlike(0.5, channels=2)
    full, half = TorchEngine(model)(x), TorchEngine(model, precision="bf16")(x)
    assert full.dtype == half.dtype == np.float32
    error = np.abs(half - full).max()
    assert 0 < error < 0.05 * np.abs(full).max()  # bf16 really ran (not bit-equal), and stays close


@needs_shared
@pytest.mark.parametrize(
    "engine,precision",
    [
        pytest.param("openvino", "float32", marks=needs_openvino),
        pytest.param("openvino", "bf16", marks=needs_openvino),
        ("torch", "bf16"),
    ],
)
def test_quality_rule_on_a_real_recording(engine, precision):
    """The rule of the engine table on one Valentini file: PESQ-WB within 0.02 and STOI within 0.002
    of onnxruntime float32 (the full sets are in benchmarks/results/engines.md)."""
    from pystoi import stoi

    from hushnet.metrics import pesq_score

    if precision == "bf16" and cpu_bf16_flag() is None:
        pytest.skip("this CPU has no native bf16 units")
    noisy, rate = sf.read(DEV / "noisy" / "p287_003.flac", dtype="float32")
    clean, _ = sf.read(DEV / "clean" / "p287_003.flac", dtype="float32")
    reference = Denoiser.from_pretrained("hushnet-dfl", engine="onnx", threads=1).denoise(noisy, rate)
    denoiser = Denoiser.from_pretrained("hushnet-dfl", engine=engine, precision=precision, threads=1)
    assert (denoiser.engine_name, denoiser.precision) == (engine, precision)
    enhanced = denoiser.denoise(noisy, rate)
    assert 0 < np.abs(enhanced - reference).max() < 0.05
    assert abs(pesq_score(clean, enhanced, rate) - pesq_score(clean, reference, rate)) <= 0.02
    assert abs(stoi(clean, enhanced, rate) - stoi(clean, reference, rate)) <= 0.002


def test_runtime_options_are_checked_once_on_the_way_to_an_engine(model_dir, monkeypatch):
    import hushnet.denoiser

    calls = []
    check = hushnet.denoiser.validate_runtime_options
    monkeypatch.setattr(hushnet.denoiser, "validate_runtime_options", lambda **kw: calls.append(kw) or check(**kw))
    denoiser = Denoiser.from_pretrained(model_dir, engine="onnx", threads=1, chunk_seconds=0.5)
    assert len(calls) == 1 and calls[0]["chunk_seconds"] == 0.5 and denoiser.engine.threads == 1
    with pytest.raises(ValueError, match="chunk_seconds must be between"):
        Denoiser.from_pretrained(model_dir, engine="onnx", chunk_seconds=-1)
    assert len(calls) == 2
    Denoiser(TorchEngine(tiny_can("batch", dilated_layers=6)))  # made by hand: checked by the Denoiser itself
    assert len(calls) == 3


def test_an_unknown_engine_is_refused_by_the_one_check_in_the_same_line():
    expected = "engine must be one of auto, openvino, onnx, torch, got 'tensorrt'"
    for refuse in (
        lambda: choice.check_engine("tensorrt"),
        lambda: resolve_engine("tensorrt", None),
        lambda: engine_order("tensorrt", "auto", cpu("amx"), "fixed"),
        lambda: load_engine("hushnet-dfl", engine="tensorrt"),
    ):
        with pytest.raises(ModelError) as refused:
            refuse()
        assert str(refused.value) == expected


def test_a_denoiser_given_an_engine_checks_no_precision_it_does_not_use(batch_onnx):
    model, path = batch_onnx
    denoiser = Denoiser(OnnxEngine(path, model.config), precision="fp16")  # the engine's own precision runs
    assert denoiser.precision == "float32"
    with pytest.raises(ModelError, match="precision must be one of auto, float32, bf16, got 'fp16'"):
        Denoiser(tiny_can("batch", dilated_layers=6), precision="fp16")  # a torch model runs at it: checked


def _denoise_in_a_fresh_process(tmp_path, env_changes: dict, cwd) -> subprocess.CompletedProcess:
    import os
    import sys

    import soundfile as sf

    source = tmp_path / "in.wav"
    sf.write(source, speechlike(0.5)[0], 16000)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "HOME")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1", **env_changes)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "hushnet.cli",
            "denoise",
            str(source),
            "-o",
            str(tmp_path / "out.wav"),
            "--threads",
            "1",
            "--engine",  # the engine whose cache these tests are about, whatever auto picks on this CPU
            "openvino",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@needs_openvino
def test_no_cache_folder_is_made_for_a_home_that_does_not_exist(tmp_path):
    result = _denoise_in_a_fresh_process(tmp_path, {"HOME": str(tmp_path / "gone" / "home")}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "gone").exists()


@needs_openvino
def test_a_relative_xdg_cache_home_is_ignored(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    result = _denoise_in_a_fresh_process(
        tmp_path, {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": "relative/cache"}, tmp_path / "work"
    )
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "work").iterdir()) == []
    assert any((tmp_path / "home" / ".cache" / "hushnet" / "openvino").iterdir())


@needs_openvino
def test_a_read_only_home_gives_no_openvino_telemetry_warnings(tmp_path):
    import os

    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    # root writes anywhere in a 0555 folder: /sys refuses every new entry to root too.
    read_only = "/sys" if os.geteuid() == 0 else str(home)
    result = _denoise_in_a_fresh_process(tmp_path, {"HOME": read_only}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr and "telemetry" not in result.stderr, result.stderr


def _model_dir_with_graph(tmp_path, graph_bytes: bytes | None = None) -> Path:
    """A tiny model directory whose model.onnx is an ONNX graph no engine can run (an unknown op),
    with the directory's fingerprint (so that only the engines can find fault with it)."""
    import onnx
    from onnx import TensorProto, helper

    from hushnet.model_dir import FINGERPRINT_KEY

    directory = tmp_path / "model"
    save_model(tiny_can(), directory, "# tiny\n")
    if graph_bytes is not None:
        (directory / ONNX_FILE).write_bytes(graph_bytes)
        return directory
    node = helper.make_node("NoSuchOp", ["audio"], ["enhanced"], domain="example.nowhere")
    dims = ["batch", "samples"]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("enhanced", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.nowhere", 1)]
    )
    model.metadata_props.add(key=FINGERPRINT_KEY, value=fingerprint(directory))
    onnx.save(model, str(directory / ONNX_FILE))
    return directory


@pytest.mark.parametrize("graph", ["an unknown op", "random bytes", "cut short"])
@pytest.mark.parametrize("engine", ["auto", "onnx", "openvino"])
def test_a_model_onnx_no_engine_can_load_is_one_line(graph, engine, tmp_path, capfd):
    """Not "OpenVINO failed to load (...); using onnxruntime" and then the same failure again."""
    import os

    from hushnet.cli import main
    from hushnet.model_dir import PRETRAINED_DIR

    content = {
        "an unknown op": None,
        "random bytes": np.random.default_rng(0).bytes(5000),
        "cut short": (PRETRAINED_DIR / "hushnet-dfl" / ONNX_FILE).read_bytes()[:300000],
    }[graph]
    directory = _model_dir_with_graph(tmp_path, content)
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(0.3)[0], 16000)
    capfd.readouterr()
    status = main(
        ["denoise", str(source), "-o", str(tmp_path / "o.wav"), "--model", str(directory), "--engine", engine]
    )
    err = capfd.readouterr().err  # capfd: what OpenVINO's own C++ parsers print counts too
    assert status == 2 and err.startswith("error: cannot load ") and err.count("\n") == 1, err
    assert not os.path.exists(tmp_path / "o.wav")
