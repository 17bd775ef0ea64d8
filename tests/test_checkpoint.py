import json

import numpy as np
import pytest
import soundfile as sf
import torch

from hushnet.model_dir import DEFAULT_MODEL, ModelError, available_models, load_model, resolve_model_dir, save_model
from hushnet.reference.authors import import_reference
from hushnet.reference.tf_checkpoint import CheckpointError

from helpers import DEV, REFERENCE, needs_shared, require_shared, tiny_can

EXPECTED = REFERENCE / "expected"
DEV_NAMES = sorted(p.stem for p in EXPECTED.glob("*.npy"))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    require_shared()
    target = tmp_path_factory.mktemp("import") / "authors"
    written = import_reference(REFERENCE / "checkpoint", target)
    return load_model(written["can"]), load_model(written["lossnet"])


@needs_shared
def test_every_enhancement_layer_matches_the_authors(imported):
    can, _ = imported
    layers = np.load(EXPECTED / "se_layers_p226_001_first4000.npz")
    names = [f"se_conv_{i}" for i in range(13)] + ["se_conv_last"]
    h = torch.from_numpy(layers["input"])[None, None]
    with torch.no_grad():
        for layer, name in zip(can.layers, names):
            h = layer(h)
            assert np.abs(h[0].numpy() - layers[name]).max() < 1e-5, name
        out = can.output(h)[0].numpy()
    assert np.abs(out - layers["se_fc_last"]).max() < 1e-5


@needs_shared
@pytest.mark.parametrize("name", DEV_NAMES)
def test_outputs_match_the_authors_on_every_dev_file(imported, name):
    can, _ = imported
    noisy, rate = sf.read(DEV / "noisy" / f"{name}.flac", dtype="float32")
    assert rate == 16000
    with torch.no_grad():
        out = can(torch.from_numpy(noisy)[None])[0].numpy()
    assert np.abs(out - np.load(EXPECTED / f"{name}.npy")).max() < 1e-4


@needs_shared
@pytest.mark.parametrize(
    "archive", ["lossnet_layers_clean_p287_001.npz", "lossnet_layers_clean_p287_001_first1001.npz"]
)
def test_loss_network_matches_the_authors(imported, archive):
    _, lossnet = imported
    layers = np.load(EXPECTED / archive)
    with torch.no_grad():
        features = lossnet(torch.from_numpy(layers["input"])[None])
    assert len(features) == 14
    for i, feature in enumerate(features):
        expected = layers[f"loss_conv_{i}"]
        assert feature.shape[1:] == expected.shape
        assert np.abs(feature[0].numpy() - expected).max() <= 1e-4 * np.abs(expected).max(), i


@needs_shared
def test_npz_and_tf_imports_are_identical(tmp_path):
    from_tf = import_reference(REFERENCE / "checkpoint" / "se_model.ckpt.index", tmp_path / "tf")
    from_npz = import_reference(REFERENCE / "se_model.npz", tmp_path / "npz")
    a, b = load_model(from_tf["can"]).state_dict(), load_model(from_npz["can"]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lossnet = import_reference(REFERENCE / "loss_model.npz", tmp_path / "loss")
    assert load_model(lossnet["lossnet"]).config.layers == 14


def test_import_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        import_reference(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="found neither"):
        import_reference(tmp_path / "empty", tmp_path / "out")


def test_model_directory_round_trip_without_pickle(tmp_path):
    model = tiny_can(input_rms_db=-25.0)
    directory = save_model(model, tmp_path / "m", "# card\n", {"steps": 3})
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert json.loads((directory / "config.json").read_text())["steps"] == 3
    assert not list(tmp_path.rglob("*.tmp"))
    loaded = load_model(directory)
    assert loaded.config == model.config and not loaded.training
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in loaded.state_dict().items())
    with pytest.raises(ModelError, match="holds a can model"):
        load_model(directory, kind="lossnet")


def test_shipped_default_model_loads_by_name():
    assert DEFAULT_MODEL in available_models()
    card = (resolve_model_dir(None) / "README.md").read_text()
    assert "MIT License" in card and "Germain" in card
    with pytest.raises(ModelError, match="no model directory"):
        resolve_model_dir("no-such-model")
