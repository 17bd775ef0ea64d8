"""Model directories that cannot be loaded: one line naming the directory, exit status 2, in every command."""

from __future__ import annotations

import json
import shutil

import pytest

from hushnet.cli import main
from hushnet.denoiser import Denoiser
from hushnet.model_dir import ModelError

from helpers import speechlike


def corrupt_weights(directory):
    (directory / "model.safetensors").write_bytes(b"\x00\x01garbage" * 10)


def truncated_weights(directory):
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def config_is_a_list(directory):
    (directory / "config.json").write_text("[1, 2, 3]\n")


def config_without_config(directory):
    (directory / "config.json").write_text(json.dumps({"kind": "can"}))


def config_not_utf8(directory):
    (directory / "config.json").write_bytes(b'{"kind": "can", "config": {"norm": "\xff\xfe"}}')


def config_with_a_word_for_a_number(directory):
    config = json.loads((directory / "config.json").read_text())
    config["config"]["channels"] = "sixty"
    (directory / "config.json").write_text(json.dumps(config))


def edit_config(directory, **values):
    config = json.loads((directory / "config.json").read_text())
    config["config"].update(values)
    (directory / "config.json").write_text(json.dumps(config))


# Values the flags refuse (--level-db, --dry) or that cannot run, written into config.json by hand.
OUT_OF_RANGE = [
    {"input_rms_db": -1000.0},
    {"input_rms_db": 1000.0},
    {"segment_seconds": -4.0},
    {"segment_seconds": 0.0},
    {"sample_rate": 8000},
    {"dilated_layers": 100},
    {"channels": 0},
    {"dry": 1.5},
    {"eps": 0.0},
]


def config_out_of_range(values):
    def edit(directory):
        edit_config(directory, **values)

    edit.__name__ = "config_" + "_".join(f"{k}_{v}" for k, v in values.items())
    return edit


BAD_MODELS = [
    corrupt_weights,
    truncated_weights,
    config_is_a_list,
    config_without_config,
    config_not_utf8,
    config_with_a_word_for_a_number,
    *(config_out_of_range(values) for values in OUT_OF_RANGE),
]


@pytest.fixture
def bad_model(request, tmp_path, tiny_model_dir):
    directory = tmp_path / "model"
    shutil.copytree(tiny_model_dir, directory)
    request.param(directory)
    return directory


def command_line(command, model, tmp_path, write_wav):
    source = write_wav("in.wav", speechlike(0.3))
    return {
        "denoise": [
            "denoise",
            str(source),
            "-o",
            str(tmp_path / "out.wav"),
            "--model",
            str(model),
            "--engine",
            "torch",
            "-q",
        ],
        "export-onnx": ["export-onnx", str(model), "-o", str(tmp_path / "out.onnx")],
        "serve": ["serve", "--model", str(model)],
    }[command]


@pytest.mark.parametrize("bad_model", BAD_MODELS, indirect=True, ids=[f.__name__ for f in BAD_MODELS])
@pytest.mark.parametrize("command", ["denoise", "export-onnx", "serve"])
def test_a_bad_model_directory_is_one_line_in_every_command(command, bad_model, tmp_path, write_wav, capsys):
    status = main(command_line(command, bad_model, tmp_path, write_wav))
    err = capsys.readouterr().err
    assert (
        status == 2
        and err.startswith(f"error: cannot load model from {bad_model}: ")
        and len(err.strip().splitlines()) == 1
    ), err
    assert not (tmp_path / "out.wav").exists() and not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("bad_model", BAD_MODELS, indirect=True, ids=[f.__name__ for f in BAD_MODELS])
def test_a_bad_model_directory_is_a_model_error_in_the_api(bad_model):
    with pytest.raises(ModelError, match="cannot load model from"):
        Denoiser.from_pretrained(bad_model, engine="torch")


def test_a_wrong_type_in_the_model_config_names_the_field(tmp_path, tiny_model_dir):
    directory = tmp_path / "model"
    shutil.copytree(tiny_model_dir, directory)
    config_with_a_word_for_a_number(directory)
    with pytest.raises(ModelError, match="channels must be int, got 'sixty'"):
        Denoiser.from_pretrained(directory, engine="torch")


@pytest.mark.parametrize("command", ["denoise", "serve"])  # export-onnx runs on the CPU and has no --device
def test_an_unknown_device_is_one_line(command, tmp_path, write_wav, tiny_model_dir, capsys):
    arguments = command_line(command, tiny_model_dir, tmp_path, write_wav)
    status = main(arguments + ["--device", "foo"])
    err = capsys.readouterr().err
    assert status == 2 and err.strip() == "error: --device must be cpu, cuda or cuda:N, got 'foo'"


@pytest.mark.parametrize("engine", ["auto", "onnx", "openvino"])
@pytest.mark.parametrize("values", OUT_OF_RANGE, ids=lambda v: "_".join(f"{k}_{x}" for k, x in v.items()))
def test_config_values_out_of_range_are_one_line_on_the_onnx_engines(values, engine, tmp_path, write_wav, capsys):
    """The engines that run model.onnx read config.json too: the same check, before any engine loads
    (dilated_layers 100 was a traceback from OpenVINO's reshape)."""
    from hushnet.model_dir import PRETRAINED_DIR

    directory = tmp_path / "model"
    shutil.copytree(PRETRAINED_DIR / "hushnet-dfl", directory)
    edit_config(directory, **values)
    arguments = command_line("denoise", directory, tmp_path, write_wav)
    arguments[arguments.index("torch")] = engine
    status = main(arguments)
    err = capsys.readouterr().err
    name = next(iter(values))
    assert status == 2 and err.startswith(f"error: cannot load model from {directory}: config.json: {name} must be ")
    assert err.count("\n") == 1 and not (tmp_path / "out.wav").exists()


def test_every_config_field_out_of_range_is_one_line(tmp_path_factory):
    """Property: any CAN config field set outside its range (or to NaN/inf) is one ModelError line naming it."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from hushnet.model_dir import PRETRAINED_DIR

    directory = tmp_path_factory.mktemp("property") / "model"
    shutil.copytree(PRETRAINED_DIR / "hushnet-dfl", directory)
    original = (directory / "config.json").read_text()
    floats = st.floats(allow_nan=True, allow_infinity=True)
    bad = st.one_of(
        st.tuples(st.just("channels"), st.one_of(st.integers(max_value=0), st.integers(min_value=1025))),
        st.tuples(st.just("dilated_layers"), st.one_of(st.integers(max_value=-1), st.integers(min_value=17))),
        st.tuples(st.just("sample_rate"), st.integers().filter(lambda r: r != 16000)),
        st.tuples(st.just("input_rms_db"), floats.filter(lambda v: not -100 <= v <= 0)),
        st.tuples(st.just("segment_seconds"), floats.filter(lambda v: not 0.01 <= v <= 3600)),
        st.tuples(st.just("dry"), floats.filter(lambda v: not 0 <= v <= 1)),
        st.tuples(st.just("eps"), floats.filter(lambda v: not 1e-12 <= v <= 1)),
        st.tuples(st.just("negative_slope"), floats.filter(lambda v: not 0 <= v <= 1)),
        st.tuples(st.just("norm"), st.text(max_size=8).filter(lambda v: v not in ("batch", "per-input"))),
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(bad)
    def check(field_and_value):
        name, value = field_and_value
        (directory / "config.json").write_text(original)
        edit_config(directory, **{name: value})
        with pytest.raises(ModelError) as error:
            Denoiser.from_pretrained(directory, engine="onnx")
        message = str(error.value)
        assert message.startswith(f"cannot load model from {directory}: config.json: {name} must be ")
        assert "\n" not in message

    check()
