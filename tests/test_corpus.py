"""corpus.py: `hushnet denoise --ray` and `hushnet evaluate --ray` on real local Ray clusters (one node with
2 CPUs, and two simulated nodes), against the local command; faults are real kills of worker processes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hushnet.cli import build_parser, main
from hushnet.inference.engines import installed
from hushnet.model_dir import DEFAULT_MODEL

from helpers import DEV, needs_shared, require_shared, speechlike

needs_ray = pytest.mark.skipif(not installed("ray"), reason='the Ray tests need the ray extra: pip install -e ".[ray]"')
SRC = Path(__file__).resolve().parents[1] / "src"
RESULTS = "_hushnet_results.parquet"
RAY_LIMITS = {"object_store_memory": 200 * 2**20, "include_dashboard": False, "log_to_driver": False}


def run(arguments, capsys):
    status = main(arguments)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module (started again after a test that needed its own cluster)."""
    import ray

    def connect():
        if not ray.is_initialized():
            ray.init(num_cpus=2, **RAY_LIMITS)
        return ray

    yield connect
    ray.shutdown()


@pytest.fixture
def ray2(local_ray):
    return local_ray()


@pytest.fixture
def two_nodes():
    """A head and a worker node of one CPU each, on this machine; the module's local Ray is closed first."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20, "include_dashboard": False},
    )
    worker = cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def results(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(folder / RESULTS).to_pylist()


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Real recordings and synthetic ones in the formats the local command keeps: FLAC 16-bit, float WAV
    (stereo, 22.05 kHz), 16-bit WAV at 44.1 kHz, in a nested folder."""
    require_shared()
    folder = tmp_path / "corpus"
    (folder / "real").mkdir(parents=True)
    for name in ("p226_001", "p287_001"):
        (folder / "real" / f"{name}.flac").write_bytes((DEV / "noisy" / f"{name}.flac").read_bytes())
    sf.write(folder / "stereo.wav", speechlike(0.7, rate=22050, channels=2).T, 22050, subtype="FLOAT")
    sf.write(folder / "cd.wav", speechlike(0.5, rate=44100, seed=3)[0], 44100, subtype="PCM_16")
    return folder


def test_ray_flag_takes_an_optional_address():
    parse = lambda *words: build_parser(["denoise", *words]).parse_args(["denoise", *words])  # noqa: E731
    assert parse("a.wav").ray is None
    assert parse("a.wav", "--ray").ray == ""
    assert parse("a.wav", "--ray", "auto", "--actors", "3").ray == "auto"
    assert parse("--ray", "ray://head:10001", "a.wav").ray == "ray://head:10001"


def test_ray_refuses_bad_options_in_one_line_before_it_starts(corpus, capsys):
    for extra, message in (
        ([], "--ray writes a folder"),
        (["-o", str(corpus / "one.wav")], "--ray writes a folder"),
        (["-o", str(corpus / "out"), "--actors", "0"], "--actors must be at least 1"),
    ):
        status, _, err = run(["denoise", str(corpus), "--ray", *extra], capsys)
        assert status == 2 and err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1
    for arguments in (["--ray", str(corpus), str(corpus / "cd.wav")], ["--ray", str(corpus / "cd.wav"), str(corpus)]):
        status, _, err = run(["denoise", *arguments, "-o", str(corpus / "out")], capsys)
        message = "that is a file or folder, not a Ray address; put --ray after the inputs"
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(corpus.rglob(f"*{RESULTS}")) and not (corpus / "out").exists()


@needs_ray
def test_actors_leave_cpu_for_the_pipelines_tasks(ray2):
    from hushnet.corpus import actor_pool

    size, cpus = actor_pool(ray2, None, threads=1)
    assert size == 2 and size * cpus < 2  # one actor per CPU, and logical CPU left for Ray Data's tasks
    assert actor_pool(ray2, 3, threads=2) == (3, 1.0)
    with pytest.raises(ValueError, match="at least 1"):
        actor_pool(ray2, 0, threads=1)


@needs_ray
def test_ray_matches_the_local_command_sample_for_sample(ray2, corpus, tmp_path, capsys):
    before = {p: digest(p) for p in corpus.rglob("*") if p.is_file()}
    # One engine on both sides (auto would be OpenVINO where it is installed).
    status, _, err = run(["denoise", str(corpus), "-o", str(tmp_path / "local"), "--engine", "onnx", "-q"], capsys)
    assert status == 0, err
    status, _, err = run(
        ["denoise", str(corpus), "-o", str(tmp_path / "ray"), "--ray", "--engine", "onnx", "-q"], capsys
    )
    assert status == 0, err
    assert err.strip().splitlines()[-1].startswith("4 files denoised, 0 failed (")
    assert {p: digest(p) for p in corpus.rglob("*") if p.is_file()} == before  # inputs untouched
    local = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*") if p.is_file())
    assert sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*") if p.is_file()) == sorted(
        local + [Path(RESULTS)]
    )
    for relative in local:
        a, b = sf.SoundFile(tmp_path / "local" / relative), sf.SoundFile(tmp_path / "ray" / relative)
        assert (a.samplerate, a.channels, a.frames, a.format, a.subtype) == (
            b.samplerate,
            b.channels,
            b.frames,
            b.format,
            b.subtype,
        )
        assert np.array_equal(a.read(dtype="float32"), b.read(dtype="float32")), relative
    rows = results(tmp_path / "ray")
    assert sorted(row["path"] for row in rows) == sorted(str(p.resolve()) for p in corpus.rglob("*") if p.is_file())
    assert {row["status"] for row in rows} == {"ok"} and {row["engine"] for row in rows} == {"onnx"}
    assert {row["model"] for row in rows} == {DEFAULT_MODEL}
    stereo = next(row for row in rows if row["path"].endswith("stereo.wav"))
    assert stereo["audio_seconds"] == pytest.approx(int(0.7 * 22050) / 22050) and stereo["compute_seconds"] > 0
    assert stereo["output"] == str((tmp_path / "ray" / "stereo.wav").resolve())


@needs_ray
def test_a_bad_file_is_one_error_row_and_exit_1(ray2, corpus, tmp_path, capsys):
    (corpus / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    status, _, err = run(["denoise", str(corpus), "-o", str(tmp_path / "out"), "--ray", "-q"], capsys)
    assert status == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {corpus / 'broken.wav'}: not a readable audio file")
    rows = {Path(row["path"]).name: row for row in results(tmp_path / "out")}
    assert (
        len(rows) == 5 and rows["broken.wav"]["status"] == "error" and "not a readable" in rows["broken.wav"]["error"]
    )
    assert [name for name, row in rows.items() if row["status"] == "ok"] and not (
        tmp_path / "out" / "broken.wav"
    ).exists()
    assert "4 files denoised, 1 failed" in err


@needs_ray
def test_a_rerun_skips_complete_outputs_and_redoes_the_rest(ray2, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["denoise", str(corpus), "-o", str(out), "--ray", "--engine", "onnx", "-q"], capsys)[0] == 0
    first = {row["path"]: row for row in results(out)}
    (out / "cd.wav").unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    abandoned = out / ".cd.k3j4x.wav.tmp"  # what a writer killed mid-file leaves
    abandoned.write_bytes(b"half a file")
    status, _, err = run(["denoise", str(corpus), "-o", str(out), "--ray", "--engine", "onnx", "-q"], capsys)
    assert status == 0, err
    assert "1 file denoised, 0 failed, 3 skipped (already denoised)" in err
    assert (
        {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == kept
        and (out / "cd.wav").is_file()
        and not abandoned.exists()
    )
    second = {row["path"]: row for row in results(out)}
    assert second.keys() == first.keys()
    redone = str((corpus / "cd.wav").resolve())
    assert second[redone]["status"] == "ok"
    for path, row in second.items():
        if path != redone:  # the earlier run's figures are kept for what was skipped
            assert (
                row["status"] == "skipped"
                and row["audio_seconds"] == first[path]["audio_seconds"]
                and row["engine"] == "onnx"
            )


@needs_ray
def test_a_manifest_lists_the_corpus_and_unlisted_files_are_left(ray2, corpus, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["real/p226_001.flac", "cd.wav", "gone.wav"]}), corpus / "list.parquet")
    status, _, err = run(["denoise", str(corpus / "list.parquet"), "-o", str(tmp_path / "out"), "--ray", "-q"], capsys)
    assert status == 1 and "error: gone.wav (listed in" in err
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*")) == [
        RESULTS,
        "cd.wav",
        "real/p226_001.flac",
    ]


def _holders(paths: set[str]) -> dict[int, str]:
    """Processes (pid: path) that have one of ``paths`` open: a worker is inside that file."""
    found = {}
    for descriptor in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target in paths:
            found[int(descriptor.parts[2])] = target
    return found


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _long_corpus(folder: Path, files: int = 3, seconds: float = 8.0) -> set[str]:
    folder.mkdir()
    for index in range(files):
        sf.write(folder / f"long{index}.wav", speechlike(seconds, seed=index)[0], 16000, subtype="PCM_16")
    return {str(p.resolve()) for p in folder.iterdir()}


def _denoise_while(source: Path, out: Path, strike) -> tuple[int, str]:
    """Run ``denoise --ray`` with 2 actors in a thread; ``strike(holders)`` is called with the processes inside
    an input until it returns True. Returns (exit status, what was struck)."""
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.setdefault(
            "status", main(["denoise", str(source), "-o", str(out), "--ray", "--actors", "2", "--engine", "onnx", "-q"])
        )
    )
    thread.start()
    inputs = {str(p.resolve()) for p in source.iterdir()}
    struck = ""
    while thread.is_alive() and not struck:
        struck = strike(_holders(inputs))
        time.sleep(0.005)
    thread.join(timeout=90)
    assert not thread.is_alive(), "the pipeline did not finish after the fault"
    return outcome["status"], struck


def _check_whole(source: Path, out: Path) -> None:
    """Every output equals the local path's, and the table has each input exactly once, done; no temporaries."""
    from hushnet.denoiser import Denoiser

    denoiser = Denoiser.from_pretrained(engine="onnx", threads=1)
    for path in sorted(source.iterdir()):
        expected = denoiser.denoise_file(path, out.parent / f"expected_{path.name}")
        assert np.array_equal(sf.read(out / path.name)[0], sf.read(expected.output)[0]), path.name
    rows = results(out)
    assert sorted(row["path"] for row in rows) == sorted(str(p.resolve()) for p in source.iterdir())
    assert {row["status"] for row in rows} == {"ok"}
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
@needs_ray
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the worker inside a file through /proc")
def test_killing_an_actor_mid_file_loses_nothing(ray2, tmp_path):
    source = tmp_path / "long"
    _long_corpus(source)

    def kill(holders: dict[int, str]) -> str:
        for pid, path in holders.items():
            os.kill(pid, signal.SIGKILL)
            return path
        return ""

    status, struck = _denoise_while(source, tmp_path / "out", kill)
    assert struck and status == 0
    _check_whole(source, tmp_path / "out")


# What one PCM16 step of difference in the scored outputs may move a score by; a wrong result moves
# it by more. Segmental SNR (dB) moves most: a quiet frame's SNR is sensitive to one step.
WIGGLE, WIGGLE_DB = 1e-3, 0.02
NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?$")


def wiggle(column: str) -> float:
    return WIGGLE_DB if column.endswith("_db") else WIGGLE


def table_differences(one: list[str], other: list[str]) -> list[tuple[str, str]]:
    """The words of two printed tables that differ: words exactly, numbers (``mean±ci`` too) by more
    than their column's wiggle or one unit of the last digit shown (a rounding boundary flips it)."""
    if len(one) != len(other):
        return [("lines", f"{len(one)} vs {len(other)}")]
    differences = []
    header: list[str] = []
    for line, twin in zip(one, other):
        words, twins = line.split(), twin.split()
        if words and words[0] == "file":
            header = words
        if len(words) != len(twins):
            differences.append((line, twin))
            continue
        for index, (word, match) in enumerate(zip(words, twins)):
            column = header[index] if index < len(header) else ""
            parts, twin_parts = word.split("±"), match.split("±")
            if len(parts) == len(twin_parts) and all(
                NUMBER.match(p) and NUMBER.match(q) for p, q in zip(parts, twin_parts)
            ):
                for part, twin_part in zip(parts, twin_parts):
                    shown = 10.0 ** -len(part.partition(".")[2])
                    if abs(float(part) - float(twin_part)) > max(wiggle(column), shown) * 1.0001:
                        differences.append((word, match))
            elif word != match:
                differences.append((word, match))
    return differences


@needs_ray
@needs_shared
def test_evaluate_on_ray_writes_the_local_tables_and_plot(ray2, tmp_path, capsys):
    for role in ("clean", "noisy"):
        (tmp_path / role).mkdir()
        for name in ("p226_001", "p287_001"):
            (tmp_path / role / f"{name}.flac").write_bytes((DEV / role / f"{name}.flac").read_bytes())
    reports = {}
    # One thread each, as the Ray actors run by default: auto's engine may be bf16, whose sums depend
    # on the thread count by more than a PCM16 step.
    for mode, extra in (("local", ["--jobs", "1", "--threads", "1"]), ("ray", ["--ray", "--threads", "1"])):
        out = tmp_path / mode
        status, table, err = run(
            [
                "evaluate",
                "--clean",
                str(tmp_path / "clean"),
                "--noisy",
                str(tmp_path / "noisy"),
                "-o",
                str(out),
                "-q",
                *extra,
            ],
            capsys,
        )
        assert status == 0, err
        with open(out / "per_file.csv") as handle:
            rows = list(csv.DictReader(handle))
        table = [
            line for line in table.splitlines() if " -> " not in line
        ]  # the denoising step's lines come in any order
        reports[mode] = (table, rows, json.loads((out / "summary.json").read_text()))
        assert (out / "pesq_vs_snr.png").is_file()
    (local_table, local_rows, local_summary), (ray_table, ray_rows, ray_summary) = reports["local"], reports["ray"]
    # The outputs scored may still differ by one PCM16 step (another process may order its sums
    # otherwise); scores then move by less than their wiggle.
    assert len(ray_rows) == 2
    for local, remote in zip(local_rows, ray_rows):
        assert local.keys() == remote.keys() and local["name"] == remote["name"]
        for key in local.keys() - {"name"}:
            assert float(remote[key]) == pytest.approx(float(local[key]), abs=wiggle(key)), (key, local, remote)
    assert table_differences(ray_table, local_table) == []
    assert (
        ray_summary.keys() == local_summary.keys() and ray_summary["metrics"].keys() == local_summary["metrics"].keys()
    )
    for metric, values in local_summary["metrics"].items():
        assert ray_summary["metrics"][metric] == pytest.approx(values, abs=wiggle(metric), nan_ok=True), metric
    assert float(ray_rows[0]["pesq_wb"]) > float(ray_rows[0]["noisy_pesq_wb"])


@pytest.mark.slow
@needs_ray
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the worker inside a file through /proc")
def test_losing_a_node_mid_file_loses_nothing(two_nodes, tmp_path):
    import ray._private.ray_constants as ray_constants

    cluster, worker = two_nodes
    raylet = worker.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    source = tmp_path / "long"
    _long_corpus(source)

    def remove_node(holders: dict[int, str]) -> str:
        for pid, path in holders.items():
            if _parent(pid) == raylet:  # an actor of the worker node is inside a file
                cluster.remove_node(worker)
                return path
        return ""

    status, struck = _denoise_while(source, tmp_path / "out", remove_node)
    assert struck, "no actor ran on the worker node"
    assert status == 0
    _check_whole(source, tmp_path / "out")


BLOCKED_TORCH = """
import sys
import ray
ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
from hushnet.cli import main
status = main(sys.argv[1:])
print("STATUS", status, "TORCH", "torch" in sys.modules)
"""


@needs_ray
def test_two_actors_on_two_cpus_finish_without_torch_in_any_worker(corpus, tmp_path):
    """Two actors on a 2-CPU Ray (the pool must leave CPU for Ray Data's tasks, or it hangs), in a process
    whose workers cannot import torch at all: the light runtime is all they use."""
    blocker = tmp_path / "blocked"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text('raise ModuleNotFoundError("torch is blocked in this test")\n')
    environment = {
        "PYTHONPATH": f"{blocker}{os.pathsep}{SRC}",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKED_TORCH,
            "denoise",
            str(corpus),
            "-o",
            str(tmp_path / "out"),
            "--ray",
            "--actors",
            "2",
            "--engine",
            "onnx",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert "STATUS 0 TORCH False" in result.stdout, result.stderr[-3000:]
    rows = results(tmp_path / "out")
    assert len(rows) == 4 and {row["status"] for row in rows} == {"ok"} and {row["engine"] for row in rows} == {"onnx"}
