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


BAD_MODELS = [
    corrupt_weights,
    truncated_weights,
    config_is_a_list,
    config_without_config,
    config_not_utf8,
    config_with_a_word_for_a_number,
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
