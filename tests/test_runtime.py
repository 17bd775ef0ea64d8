"""The light runtime: export-onnx, engines behind the command, no torch where none is needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hushnet.cli import main
from hushnet.denoiser import Denoiser
from hushnet.inference.engines import installed
from hushnet.model_dir import ONNX_FILE, save_model

from helpers import DEV, needs_shared, speechlike, tiny_can

SRC = Path(__file__).resolve().parents[1] / "src"


def run(arguments, capsys):
    status = main(arguments)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def exported_dir(tmp_path_factory):
    """A tiny level-normalised model directory with its model.onnx, written by the command."""
    directory = tmp_path_factory.mktemp("exported") / "tiny"
    save_model(tiny_can(input_rms_db=-23.0), directory, "# tiny\n")
    assert main(["export-onnx", str(directory), "-o", str(directory / ONNX_FILE)]) == 0
    return directory


def test_export_onnx_writes_one_self_contained_file(exported_dir, capsys):
    import onnx

    proto = onnx.load(str(exported_dir / ONNX_FILE))
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert {n.op_type for n in proto.graph.node} <= {
        "Conv",
        "LeakyRelu",
        "Unsqueeze",
        "Squeeze",
        "Constant",
    }  # folded: no normalisation ops
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "samples"]


def test_export_onnx_of_a_missing_model_is_one_line(tmp_path, capsys):
    status, _, err = run(["export-onnx", str(tmp_path / "nope"), "-o", str(tmp_path / "x.onnx")], capsys)
    assert status == 2 and err.startswith("error: no model directory") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra", [[], ["--dry", "0.3"], ["--level-db", "-30", "--level-scope", "segment"]])
def test_denoise_command_gives_the_same_output_with_both_engines(exported_dir, tmp_path, capsys, extra):
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(1.2, rate=22050, channels=2).T, 22050, subtype="FLOAT")
    outputs = {}
    engines = ("onnx", "torch") + (("openvino",) if installed("openvino") else ())
    for engine in engines:
        target = tmp_path / f"{engine}.wav"
        status, _, err = run(
            [
                "denoise",
                str(source),
                "-o",
                str(target),
                "--model",
                str(exported_dir),
                "--engine",
                engine,
                "--precision",
                "float32",
                "--float",
                "-q",
                *extra,
            ],
            capsys,
        )
        assert status == 0, err
        outputs[engine], _ = sf.read(target, dtype="float32")
    for engine in engines[1:]:
        assert np.abs(outputs["onnx"] - outputs[engine]).max() < 1e-5, engine
    denoiser = Denoiser.from_pretrained(
        exported_dir,
        engine="torch",
        precision="float32",
        dry=float(extra[1]) if extra[:1] == ["--dry"] else None,
        level_db=float(extra[1]) if extra[:1] == ["--level-db"] else None,
        level_scope=extra[3] if len(extra) > 3 else "recording",
    )
    assert np.abs(outputs["torch"] - denoiser.denoise(speechlike(1.2, rate=22050, channels=2), 22050).T).max() < 1e-5


def test_onnx_engine_without_model_onnx_is_a_one_line_error(tiny_model_dir, tmp_path, capsys):
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(0.3)[0], 16000)
    status, _, err = run(["denoise", str(source), "--model", str(tiny_model_dir), "--engine", "onnx"], capsys)
    assert status == 2 and "has no model.onnx" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["1.5", "-0.2"])
def test_dry_out_of_range_is_one_line(tiny_model_dir, tmp_path, capsys, value):
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(0.3)[0], 16000)
    status, _, err = run(["denoise", str(source), "--model", str(tiny_model_dir), "--dry", value], capsys)
    assert status == 2 and err.startswith("error: dry must be between 0") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "in_denoised.wav").exists()


def test_dry_help_says_the_direction():
    from hushnet.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["denoise"].format_help()
    assert "0 = fully denoised" in " ".join(text.split())


NO_TORCH = """
import sys
for name in ("torch", "safetensors", "openvino"):  # the core install: none of the extras
    sys.modules[name] = None  # as if not installed: any import of them fails
import hushnet
from hushnet.cli import main
status = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "safetensors") and sys.modules[m] is not None)
print("STATUS", status, "LOADED", loaded)
"""

NO_TORCH_IMPORT = """
import sys
import hushnet
from hushnet.cli import main
status = main(sys.argv[1:])
print("STATUS", status, "TORCH", "torch" in sys.modules, "SAFETENSORS", "safetensors" in sys.modules)
"""


def run_python(script: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


@needs_shared
def test_denoise_with_the_onnx_engine_imports_no_torch(tmp_path):
    """The shipped default model through the command, with torch installed but never imported."""
    source = DEV / "noisy" / "p226_001.flac"
    result = run_python(
        NO_TORCH_IMPORT, "denoise", str(source), "-o", str(tmp_path / "out.flac"), "--engine", "onnx", "-q"
    )
    assert "STATUS 0 TORCH False SAFETENSORS False" in result.stdout, result.stderr
    assert (tmp_path / "out.flac").is_file()


@needs_shared
@pytest.mark.skipif(not installed("openvino"), reason="OpenVINO is not installed")
def test_denoise_with_the_openvino_engine_imports_no_torch_and_says_what_ran(tmp_path):
    source = DEV / "noisy" / "p226_001.flac"
    result = run_python(
        NO_TORCH_IMPORT, "denoise", str(source), "-o", str(tmp_path / "out.flac"), "--engine", "openvino", "-v", "-q"
    )
    assert "STATUS 0 TORCH False SAFETENSORS False" in result.stdout, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("engine: ")]
    assert len(said) == 1 and said[0].startswith("engine: openvino ") and "compiled [1, " in said[0]


def test_precision_bf16_with_onnxruntime_is_a_one_line_error(exported_dir, tmp_path, capsys):
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(0.3)[0], 16000)
    status, _, err = run(
        ["denoise", str(source), "--model", str(exported_dir), "--engine", "onnx", "--precision", "bf16"], capsys
    )
    assert status == 2 and err.strip().splitlines() == [
        "error: onnxruntime runs this model in float32 only: use --engine openvino or torch for bf16"
    ]


@needs_shared
def test_the_light_runtime_works_with_torch_and_safetensors_missing(tmp_path):
    source = DEV / "noisy" / "p226_001.flac"
    result = run_python(
        NO_TORCH, "denoise", str(source), "-o", str(tmp_path / "out.wav"), "--float", "--model", "authors-dfl", "-q"
    )
    assert "STATUS 0 LOADED []" in result.stdout, result.stderr
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    reference = np.load(
        Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "expected" / "p226_001.npy"
    )
    assert np.abs(y - reference).max() < 1e-4  # the light install matches the authors' output (and torch's) to 1e-4


@pytest.mark.parametrize(
    "command", [["train", "-o", "x"], ["evaluate", "--clean", "a", "--noisy", "b"], ["train-lossnet"]]
)
def test_training_commands_without_torch_name_the_extra(command, tmp_path):
    result = run_python(NO_TORCH, *command)
    assert "STATUS 2" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "hushnet[train]"' in lines[0]


def test_pyproject_core_dependencies_have_no_torch():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert core == {"numpy", "soundfile", "soxr", "onnxruntime", "tqdm"}
    assert any(d.startswith("torch") for d in project["optional-dependencies"]["train"])
    assert "hushnet[train,serve,openvino,ray]" in project["optional-dependencies"]["dev"]
    assert project["optional-dependencies"]["openvino"] == ["openvino>=2026.4"]


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "README.md", "other.onnx", "weights.bin", ""])
def test_export_onnx_never_overwrites_a_model_file(name, tmp_path, capsys):
    directory = tmp_path / "tiny"
    save_model(tiny_can(), directory, "# tiny\n")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    status, _, err = run(
        ["export-onnx", str(directory), "-o", str(directory / name) if name else str(directory)], capsys
    )
    assert status == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before


def test_export_onnx_refuses_a_name_without_onnx_suffix_and_a_missing_folder(tmp_path, tiny_model_dir, capsys):
    for output in (tmp_path / "model.txt", tmp_path / "missing" / "model.onnx"):
        status, _, err = run(["export-onnx", str(tiny_model_dir), "-o", str(output)], capsys)
        assert status == 2 and err.startswith("error: -o ") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_export_onnx_that_cannot_be_written_names_the_output_not_a_temporary(tmp_path, tiny_model_dir):
    # A file-size limit makes the write fail as a full disk does (EFBIG instead of ENOSPC).
    target = tmp_path / "m.onnx"
    script = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000)); from hushnet.cli import main; "
        f"sys.exit(main(['export-onnx', {str(tiny_model_dir)!r}, '-o', {str(target)!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert (
        result.stderr.startswith(f"error: cannot write {target}")
        and ".tmp" not in result.stderr
        and len(result.stderr.strip().splitlines()) == 1
    )
    assert list(tmp_path.iterdir()) == []


def test_the_onnx_engine_leaves_nothing_in_the_temp_folder(tmp_path):
    """onnxruntime's own session file included: a run leaves the temp folder as it found it."""
    import os

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    source = tmp_path / "in.wav"
    sf.write(source, speechlike(0.5)[0], 16000)
    env = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
    done = subprocess.run(
        [sys.executable, "-m", "hushnet.cli", "denoise", str(source), "--engine", "onnx", "-q"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(SRC), "TMPDIR": str(scratch)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "in_denoised.wav").is_file() and list(scratch.iterdir()) == []


@pytest.fixture
def two_exported(tmp_path):
    """Two tiny model directories with their own model.onnx, each written by export-onnx."""
    folders = []
    for seed in (0, 1):
        directory = tmp_path / f"model{seed}"
        save_model(tiny_can(seed=seed, input_rms_db=-23.0), directory, "# tiny\n")
        assert main(["export-onnx", str(directory), "-o", str(directory / ONNX_FILE)]) == 0
        folders.append(directory)
    return folders


def _edit_config(directory: Path, **values) -> None:
    import json

    config = json.loads((directory / "config.json").read_text())
    config["config"].update(values)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("engine", ["onnx", "openvino", "auto"])
@pytest.mark.parametrize("change", ["other weights' graph", "dilated_layers 3", "channels 32"])
def test_a_model_onnx_of_other_weights_or_another_config_is_refused(change, engine, two_exported, tmp_path, capsys):
    if engine == "openvino" and not installed("openvino"):
        pytest.skip("needs OpenVINO")
    first, second = two_exported
    if change == "other weights' graph":
        (second / ONNX_FILE).write_bytes((first / ONNX_FILE).read_bytes())
    else:
        name, value = change.split()
        _edit_config(second, **{name: int(value)})
    capsys.readouterr()
    path = tmp_path / "in.wav"
    sf.write(path, speechlike(0.5)[0], 16000)
    status, _, err = run(
        ["denoise", str(path), "-o", str(tmp_path / "out.wav"), "--model", str(second), "--engine", engine], capsys
    )
    assert status == 2 and err.count("\n") == 1, err
    assert f"model.onnx was exported from other weights: re-export with hushnet export-onnx {second} -o " in err
    assert not (tmp_path / "out.wav").exists()


def test_plan_fields_of_the_config_need_no_re_export(two_exported, tmp_path, capsys):
    """dry, the level and the segment length do not shape the graph: editing them keeps model.onnx valid."""
    directory = two_exported[0]
    _edit_config(directory, dry=0.2, input_rms_db=-30.0)
    path = tmp_path / "in.wav"
    sf.write(path, speechlike(0.5)[0], 16000)
    capsys.readouterr()
    status, _, err = run(
        ["denoise", str(path), "-o", str(tmp_path / "o.wav"), "--model", str(directory), "--engine", "onnx", "-q"],
        capsys,
    )
    assert status == 0 and "note" not in err and "error" not in err, err


def test_a_model_onnx_without_fingerprint_still_runs_with_one_note(tmp_path, capsys):
    """An export made before fingerprints (or by hand) runs, unchecked, and says how to have it checked."""
    from hushnet.inference.networks import export_onnx

    directory = tmp_path / "old"
    save_model(tiny_can(), directory, "# tiny\n")
    export_onnx(tiny_can(), directory / ONNX_FILE)  # no fingerprint
    path = tmp_path / "in.wav"
    sf.write(path, speechlike(0.5)[0], 16000)
    status, _, err = run(
        ["denoise", str(path), "-o", str(tmp_path / "o.wav"), "--model", str(directory), "--engine", "onnx", "-q"],
        capsys,
    )
    notes = [line for line in err.splitlines() if "note:" in line]
    assert status == 0 and len(notes) == 1 and "has no fingerprint" in notes[0] and "hushnet export-onnx" in notes[0]


@pytest.mark.parametrize("name", ["hushnet-dfl", "authors-dfl", "hushnet-vctk"])
def test_the_shipped_model_onnx_files_carry_their_fingerprint(name):
    from hushnet.model_dir import FINGERPRINT_KEY, PRETRAINED_DIR, fingerprint, onnx_metadata

    directory = PRETRAINED_DIR / name
    assert onnx_metadata(directory / ONNX_FILE)[FINGERPRINT_KEY] == fingerprint(directory)
