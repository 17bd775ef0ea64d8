"""A model directory read once for inference (``hushnet.inference.load``): the record of a shipped
model, the refusals before any engine loads, the fingerprint check kept in the record, and engines
built from the record computing what ``load_engine``'s do."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from hushnet.inference.engines import OnnxEngine, OpenVinoEngine, TorchEngine, installed, load_engine
from hushnet.inference.load import ModelRecord, read_model, torch_network
from hushnet.inference.networks import export_onnx
from hushnet.model_dir import (
    DEFAULT_MODEL,
    ONNX_FILE,
    PRETRAINED_DIR,
    WEIGHTS_FILE,
    ModelError,
    fingerprint_metadata,
    save_model,
)
from hushnet.models.config import CANConfig

from helpers import speechlike, tiny_can


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_dir(folder, norm: str = "batch", seed: int = 0, metadata: bool = True):
    """A tiny model directory with its model.onnx (fingerprinted unless ``metadata`` is False); (directory, model)."""
    model = tiny_can(norm, seed=seed, dilated_layers=5)
    directory = save_model(model, folder / f"tiny-{norm}-{seed}", "# tiny\n")
    export_onnx(model, directory / ONNX_FILE, fingerprint_metadata(directory) if metadata else None)
    return directory, model


def test_the_record_of_the_shipped_model():
    record = read_model("hushnet-dfl")
    directory = PRETRAINED_DIR / "hushnet-dfl"
    saved = json.loads((directory / "config.json").read_text())
    assert (record.directory, record.name, record.kind) == (directory, "hushnet-dfl", "can")
    assert record.config == CANConfig.from_dict(saved["config"]) and record.config.channels == 64
    assert record.weights == directory / WEIGHTS_FILE and record.weights.is_file()
    assert record.onnx == directory / ONNX_FILE and record.runnable_onnx() == record.onnx
    assert record.onnx_note is None and record.onnx_error is None  # the shipped graph carries its fingerprint
    assert read_model(None).directory == PRETRAINED_DIR / DEFAULT_MODEL
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.name = "other"


def test_a_model_of_another_kind_is_one_line_before_any_engine():
    for load in (read_model, lambda name: load_engine(name, engine="onnx")):
        with pytest.raises(ModelError) as refused:
            load("hushnet-lossnet")
        message = str(refused.value)
        assert message.endswith("holds a lossnet model, not a denoiser (can)") and "\n" not in message


@pytest.mark.parametrize("engine", ["auto", "onnx", "torch"])
def test_a_config_out_of_range_is_refused_before_any_engine_loads(tmp_path, engine):
    """Weights and graph are garbage too: the config's line comes first, so nothing read them."""
    directory, _ = tiny_dir(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["config"]["channels"] = 0
    (directory / "config.json").write_text(json.dumps(config))
    (directory / WEIGHTS_FILE).write_bytes(b"not weights")
    (directory / ONNX_FILE).write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="channels must be a whole number from 1 to") as refused:
        load_engine(directory, engine=engine)
    assert "\n" not in str(refused.value)
    with pytest.raises(ModelError, match="channels must be"):
        read_model(directory)


def test_a_graph_without_a_fingerprint_runs_with_the_note(tmp_path, caplog):
    directory, _ = tiny_dir(tmp_path, metadata=False)
    record = read_model(directory)
    assert record.onnx_error is None and "has no fingerprint of its weights" in record.onnx_note
    assert record.runnable_onnx() == directory / ONNX_FILE
    with caplog.at_level("WARNING", logger="hushnet"):
        engine = load_engine(directory, engine="onnx", threads=1)
    assert engine.name == "onnx" and caplog.messages == [f"hushnet: note: {record.onnx_note}"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="hushnet"):
        load_engine(directory, engine="torch", threads=1)  # torch does not run the graph: nothing to say
    assert caplog.messages == []


@pytest.mark.parametrize("damage", ["other weights", "damaged graph"])
def test_a_graph_that_must_not_run_is_refused_by_the_onnx_engines_only(tmp_path, damage):
    directory, model = tiny_dir(tmp_path)
    if damage == "other weights":  # the weights of another model, under the same graph
        other, _ = tiny_dir(tmp_path, seed=1)
        shutil.copyfile(other / WEIGHTS_FILE, directory / WEIGHTS_FILE)
        expected = "exported from other weights"
    else:
        (directory / ONNX_FILE).write_bytes((directory / ONNX_FILE).read_bytes()[:500])
        expected = "damaged or not an ONNX model"
    record = read_model(directory)  # kept in the record, not raised: torch may still run the directory
    assert record.onnx_note is None and expected in record.onnx_error
    with pytest.raises(ModelError, match=expected):
        record.runnable_onnx()
    with pytest.raises(ModelError, match=expected):
        load_engine(directory, engine="onnx")
    engine = load_engine(directory, engine="torch", threads=1)
    x = speechlike(0.2)
    assert engine(x).shape == x.shape


@pytest.mark.parametrize("norm", ["batch", "per-input"])
def test_engines_built_from_the_record_compute_what_load_engine_loads(tmp_path, norm):
    directory, model = tiny_dir(tmp_path, norm)
    record = read_model(directory)
    assert isinstance(record, ModelRecord) and record.config == model.config
    x = speechlike(0.4, channels=2)
    before = TorchEngine(model)(x)  # the network as it was saved
    onnx = OnnxEngine(record.runnable_onnx(), record.config, threads=1)(x)
    assert np.array_equal(onnx, load_engine(directory, engine="onnx", threads=1)(x))
    torch_out = TorchEngine(torch_network(record), threads=1)(x)
    assert np.array_equal(torch_out, before)
    assert np.array_equal(torch_out, load_engine(directory, engine="torch", threads=1)(x))
    assert np.abs(onnx - before).max() < 1e-4


@pytest.mark.skipif(not installed("openvino"), reason="needs OpenVINO (extra hushnet[openvino])")
def test_the_openvino_engine_built_from_the_record_computes_what_load_engine_loads(tmp_path):
    directory, model = tiny_dir(tmp_path)
    record = read_model(directory)
    x = speechlike(0.4, channels=2)
    engine = OpenVinoEngine(record.runnable_onnx(), record.config, threads=1, precision="float32", cache_dir=tmp_path)
    loaded = load_engine(directory, engine="openvino", precision="float32", threads=1)
    assert loaded.name == "openvino" and np.array_equal(engine(x), loaded(x))
    assert np.abs(engine(x) - TorchEngine(model)(x)).max() < 1e-4
