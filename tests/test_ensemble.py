"""Ensembles of CANs: the weighted sum, its one-graph ONNX file, the directory round trip, the plan and bad weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from hushnet.cli import main
from hushnet.denoiser import Denoiser
from hushnet.ensemble import build_ensemble, check_weights, load_ensemble, plan_config, save_ensemble
from hushnet.inference.engines import TorchEngine
from hushnet.model_dir import ModelError, load_model, save_model

from helpers import speechlike, tiny_can


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """A per-input member at its natural level (like the authors') and a fixed-statistics one at -23 dBFS."""
    root = tmp_path_factory.mktemp("members")
    per_input = tiny_can("per-input", seed=1)
    per_input.config.segment_seconds = 0.25
    save_model(per_input, root / "per-input", "# per-input member\n")
    save_model(tiny_can("batch", seed=2, input_rms_db=-23.0), root / "batch", "# batch member\n")
    return [str(root / "per-input"), str(root / "batch")]


@pytest.fixture(scope="module")
def ensemble_dir(members, tmp_path_factory):
    directory = tmp_path_factory.mktemp("ensemble") / "blend"
    assert main(["ensemble", *members, "--weights", "0.75", "0.25", "-o", str(directory)]) == 0
    return directory


def outputs(network, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network(torch.from_numpy(x)).numpy()


def test_output_is_the_weighted_sum_of_the_members_torch_and_onnx(members, ensemble_dir):
    import onnxruntime as ort

    x = speechlike(0.4, channels=2, seed=3)
    first, second = (load_model(m) for m in members)
    expected = 0.75 * outputs(first, x) + 0.25 * outputs(second, x)
    ensemble = load_model(ensemble_dir)
    assert np.abs(outputs(ensemble, x) - expected).max() < 1e-5
    assert np.abs(TorchEngine(ensemble)(x) - expected).max() < 1e-5
    session = ort.InferenceSession(str(ensemble_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    for length in (1, 999, x.shape[1]):  # the per-input branch's tail logic at several lengths
        part = np.ascontiguousarray(x[:, :length])
        reference = 0.75 * outputs(first, part) + 0.25 * outputs(second, part)
        assert np.abs(session.run(None, {"audio": part})[0] - reference).max() < 1e-5, length


def test_onnx_file_is_one_graph_with_both_branches_and_one_weighted_sum(ensemble_dir):
    import onnx

    graph = onnx.load(str(ensemble_dir / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["audio"] and [o.name for o in graph.output] == ["enhanced"]
    assert not any(node.op_type in ("Loop", "If", "Scan") for node in graph.node)  # no subgraphs
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convs) == 2 * (4 + 2 + 1)  # two tiny CANs: 6 normalised layers and the output conv each
    assert (
        sum(node.op_type == "ReduceSum" or node.op_type == "ReduceMean" for node in graph.node) > 0
    )  # the per-input branch's statistics
    final = next(node for node in graph.node if graph.output[0].name in node.output)
    assert final.op_type == "Add"


def test_directory_round_trip_keeps_members_weights_and_card(members, ensemble_dir):
    config = json.loads((ensemble_dir / "config.json").read_text())
    assert config["kind"] == "can-ensemble"
    assert [m["model"] for m in config["members"]] == members and [m["weight"] for m in config["members"]] == [
        0.75,
        0.25,
    ]
    card = (ensemble_dir / "README.md").read_text()
    assert "0.75" in card and "0.25" in card and members[0] in card
    ensemble = load_ensemble(ensemble_dir)
    copy = save_ensemble(ensemble, ensemble_dir.parent / "copy", onnx=False)
    again = load_ensemble(copy)
    assert again.weights == [0.75, 0.25] and again.sources == members
    for (name, a), (_, b) in zip(ensemble.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert json.loads((copy / "config.json").read_text()) == config


def test_plan_is_per_input_with_one_level_when_any_member_is_per_input(members):
    first, second = (load_model(m).config for m in members)
    config = plan_config([first, second], [0.75, 0.25])
    assert config.norm == "per-input" and config.segment_seconds == 0.25
    assert config.input_rms_db == -23.0  # members disagree (as is / -23): the heaviest member that has a level
    assert plan_config([first, second], [0.75, 0.25], level_db=None).input_rms_db is None
    batch_only = plan_config([second, second], [0.5, 0.5])
    assert batch_only.norm == "batch" and batch_only.segment_seconds is None


def test_denoiser_and_cli_run_an_ensemble_with_both_engines(members, ensemble_dir, tmp_path):
    x = speechlike(0.9, channels=1, seed=4)[0]
    results = {
        engine: Denoiser.from_pretrained(str(ensemble_dir), engine=engine).denoise(x, 16000)
        for engine in ("torch", "onnx")
    }
    assert np.abs(results["torch"] - results["onnx"]).max() < 1e-5
    torch_denoiser = Denoiser.from_pretrained(str(ensemble_dir), engine="torch")
    assert torch_denoiser.scheme.kind == "segments" and torch_denoiser.level_db == -23.0
    # The ensemble on segments equals the weighted sum of its members run on the same plan and level.
    plan = {"level_db": -23.0}
    single = [Denoiser(TorchEngine(load_model(m)), **plan) for m in members]
    for denoiser in single:
        denoiser.config, denoiser.scheme = (
            torch_denoiser.config,
            torch_denoiser.scheme,
        )  # the ensemble's plan: segments of 0.25 s
    expected = 0.75 * single[0].denoise(x, 16000) + 0.25 * single[1].denoise(x, 16000)
    assert np.abs(results["torch"] - expected).max() < 1e-5
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, x, 16000, subtype="FLOAT")
    assert (
        main(
            [
                "denoise",
                str(noisy),
                "--model",
                str(ensemble_dir),
                "--engine",
                "onnx",
                "-o",
                str(tmp_path / "out.wav"),
                "-q",
            ]
        )
        == 0
    )
    written, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert np.abs(written - results["onnx"]).max() < 1e-5


@pytest.mark.parametrize(
    "weights, message",
    [
        ([0.5, -0.5], "positive"),
        ([0.0, 1.0], "positive"),
        ([0.6, 0.6], "sum to 1"),
        ([1.0], "one weight per member"),
        ([0.2, 0.3, 0.5], "one weight per member"),
        ([float("nan"), 0.5], "positive"),
    ],
)
def test_bad_weights_are_refused_in_one_line(weights, message, members, tmp_path, capsys):
    with pytest.raises(ModelError, match=message):
        check_weights(weights, 2)
    status = main(["ensemble", *members, "--weights", *map(str, weights), "-o", str(tmp_path / "blend")])
    error = capsys.readouterr().err
    assert status == 2 and error.startswith("error: ") and message in error and error.count("\n") == 1
    assert not (tmp_path / "blend").exists()


def test_ensemble_refuses_to_overwrite_a_member_or_another_model(members, tmp_path, capsys):
    assert main(["ensemble", *members, "-o", members[1]]) == 2
    assert "one of the members" in capsys.readouterr().err
    other = tmp_path / "other"
    save_model(tiny_can(), other, "# someone's model\n")
    assert main(["ensemble", *members, "-o", str(other)]) == 2
    assert "holds another model" in capsys.readouterr().err
    assert load_model(other).config.norm == "batch"  # untouched
    with pytest.raises(ModelError, match="at least 2"):
        build_ensemble(members[:1])


LIGHT_RUNTIME = """
import sys
for name in ("torch", "safetensors"):
    sys.modules[name] = None  # as if not installed: any import of them fails
from hushnet.cli import main
print("STATUS", main(sys.argv[1:]))
"""


def test_the_light_runtime_runs_an_ensemble_without_torch(ensemble_dir, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    x = speechlike(0.6, seed=5)[0]
    sf.write(tmp_path / "noisy.wav", x, 16000, subtype="FLOAT")
    source = Path(__file__).resolve().parents[1] / "src"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LIGHT_RUNTIME,
            "denoise",
            str(tmp_path / "noisy.wav"),
            "--model",
            str(ensemble_dir),
            "-o",
            str(tmp_path / "out.wav"),
            "--float",
            "-q",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert "STATUS 0" in result.stdout, result.stderr
    expected = Denoiser.from_pretrained(str(ensemble_dir), engine="torch").denoise(x, 16000)
    assert np.abs(sf.read(tmp_path / "out.wav", dtype="float32")[0] - expected).max() < 1e-5


def test_ensemble_into_a_folder_of_user_files_refuses_and_keeps_them(members, tmp_path, capsys):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "README.md").write_text("precious\n")
    (project / "model.onnx").write_bytes(b"the user's own graph")
    for extra in ([], ["--no-onnx"]):
        assert main(["ensemble", *members, "-o", str(project), *extra]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and "not an ensemble" in error and error.count("\n") == 1
    assert (project / "README.md").read_text() == "precious\n"
    assert (project / "model.onnx").read_bytes() == b"the user's own graph"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no temporary left beside it


def test_ensemble_output_that_is_a_file_is_one_line(members, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    assert main(["ensemble", *members, "-o", str(target)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "is a file" in error and error.count("\n") == 1
    assert target.read_text() == "mine\n"


def test_an_earlier_ensemble_or_an_empty_folder_is_replaced_whole(members, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["ensemble", *members, "-o", str(empty), "--no-onnx"]) == 0
    assert not (empty / "model.onnx").exists()
    assert main(["ensemble", *members, "--weights", "0.25", "0.75", "-o", str(empty)]) == 0
    assert json.loads((empty / "config.json").read_text())["members"][1]["weight"] == 0.75
    from hushnet.model_dir import FINGERPRINT_KEY, fingerprint, onnx_metadata

    assert onnx_metadata(empty / "model.onnx")[FINGERPRINT_KEY] == fingerprint(empty)  # checked at load
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


ENSEMBLE_WITH_A_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as a full disk does
resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))  # the weights fit, model.onnx does not
from hushnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_failed_ensemble_leaves_no_half_written_model(members, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    source = Path(__file__).resolve().parents[1] / "src"
    target = tmp_path / "models" / "blend"
    result = subprocess.run(
        [sys.executable, "-c", ENSEMBLE_WITH_A_FILE_SIZE_LIMIT, "ensemble", *members, "-o", str(target)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and str(target) in result.stderr and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # neither the model, nor its folder, nor a temporary
