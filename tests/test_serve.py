"""`hushnet serve` through FastAPI's test client: every endpoint, the CLI's bad inputs, limits, token, cleanup."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[dev]')")

with warnings.catch_warnings():  # starlette's notice that its test client will move to httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from hushnet.cli import main  # noqa: E402
from hushnet.denoiser import Denoiser  # noqa: E402
from hushnet.serve.app import create_app  # noqa: E402
from hushnet.serve.config import ServeConfig  # noqa: E402
from test_cli import ERROR_CASES  # noqa: E402  (the CLI's table of bad inputs)

from helpers import DEV, multipart, needs_shared, speechlike, tiny_can, wav_header  # noqa: E402

BASE = "http://127.0.0.1:8000"


def make_client(**settings) -> TestClient:
    return TestClient(create_app(Denoiser(tiny_can()), ServeConfig(**settings)), base_url=BASE)


@pytest.fixture(scope="module")
def client():
    with make_client() as test_client:
        yield test_client


def encoded(samples: np.ndarray, rate: int = 16000, format: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples.T, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def finished(client: TestClient, job_id: str) -> dict:
    """Wait for the workers (their futures, not a clock) and return the job's state."""
    wait(client.app.state.store.jobs[job_id].futures)
    status = client.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "finished"
    return status


def job_folder_files(client: TestClient) -> list:
    return sorted(p.relative_to(client.app.state.store.root) for p in client.app.state.store.root.rglob("*"))


def test_health(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["sample_rate"] == 16000 and health["engine"] == "torch"
    assert health["precision"] in ("float32", "bf16")
    assert health["version"] and health["model"]


def test_page_and_static_files_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/denoise", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/zip", "/api/health"} <= set(paths)
    assert "multipart/form-data" in paths["/api/denoise"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize(
    "rate,channels,format,subtype", [(22050, 2, "FLAC", None), (48000, 1, "WAV", "FLOAT"), (8000, 1, "OGG", None)]
)
def test_denoise_keeps_format_rate_channels_length_and_equals_the_denoiser(
    client, tmp_path, rate, channels, format, subtype
):
    x = speechlike(0.7, rate, channels)
    suffix = {"FLAC": ".flac", "WAV": ".wav", "OGG": ".ogg"}[format]
    data = encoded(x, rate, format, subtype)
    response = client.post("/api/denoise", files={"file": (f"talk{suffix}", data)})
    assert response.status_code == 200, response.text
    assert f'filename="talk_denoised{suffix}"' in response.headers["content-disposition"]
    served = sf.info(io.BytesIO(response.content))
    source = sf.info(io.BytesIO(data))
    assert (served.samplerate, served.channels, served.frames, served.format, served.subtype) == (
        source.samplerate,
        source.channels,
        source.frames,
        source.format,
        source.subtype,
    )
    (tmp_path / f"in{suffix}").write_bytes(data)
    Denoiser(tiny_can()).denoise_file(tmp_path / f"in{suffix}", tmp_path / f"out{suffix}")
    expected, _ = sf.read(tmp_path / f"out{suffix}", dtype="float32")
    got, _ = sf.read(io.BytesIO(response.content), dtype="float32")
    assert np.array_equal(got, expected)
    assert job_folder_files(client) == []  # the answer is sent, the job's files are gone


def test_dry_mixes_the_input_back_linearly(client):
    x = speechlike(0.5, 16000, 2)
    data = encoded(x, subtype="FLOAT")
    wet = sf.read(
        io.BytesIO(client.post("/api/denoise", files={"file": ("a.wav", data)}).content),
        dtype="float32",
        always_2d=True,
    )[0]
    mixed = sf.read(
        io.BytesIO(client.post("/api/denoise", files={"file": ("a.wav", data)}, data={"dry": "0.25"}).content),
        dtype="float32",
        always_2d=True,
    )[0]
    assert np.abs(mixed - (wet + 0.25 * (x.T - wet))).max() < 1e-6
    assert not np.allclose(mixed, wet, atol=1e-4)


def test_a_job_of_several_files_with_every_endpoint(client):
    x, y = speechlike(0.6, 44100, 2, seed=1), speechlike(0.4, 16000, 1, seed=2)
    uploads = [
        ("file", ("first.flac", encoded(x, 44100, "FLAC"))),
        ("file", ("second.wav", encoded(y))),
        ("file", ("second.wav", encoded(y))),
    ]
    created = client.post("/api/jobs", files=uploads, data={"dry": "0.1"})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert len(job_id) >= 22 and created.json()["dry"] == 0.1
    status = finished(client, job_id)
    assert [f["state"] for f in status["files"]] == ["done"] * 3 and all(f["progress"] == 1.0 for f in status["files"])
    assert (
        status["files"][0]["sample_rate"] == 44100
        and status["files"][0]["channels"] == 2
        and status["files"][0]["frames"] == x.shape[1]
    )

    assert client.get(f"/api/jobs/{job_id}/files/0/input").content == uploads[0][1][1]
    default = client.get(f"/api/jobs/{job_id}/files/1/output")  # the job's dry (0.1)
    plain = client.get(f"/api/jobs/{job_id}/files/1/output", params={"dry": 0})
    assert default.status_code == plain.status_code == 200 and default.headers["content-type"] == "audio/wav"
    a, b = (sf.read(io.BytesIO(r.content), dtype="float32")[0] for r in (default, plain))
    assert (
        np.abs(a - (b + 0.1 * (sf.read(io.BytesIO(uploads[1][1][1]), dtype="float32")[0] - b))).max() < 2 / 32768
    )  # 16-bit both
    download = client.get(f"/api/jobs/{job_id}/files/1/output", params={"download": 1})
    assert (
        download.headers["content-disposition"].startswith("attachment")
        and "second_denoised.wav" in download.headers["content-disposition"]
    )
    ranged = client.get(
        f"/api/jobs/{job_id}/files/1/output", headers={"Range": "bytes=0-99"}
    )  # what a player's seek asks
    assert ranged.status_code == 206 and len(ranged.content) == 100

    spectra = {
        which: client.get(f"/api/jobs/{job_id}/files/0/spectrogram", params={"which": which}).json()
        for which in ("input", "output")
    }
    for spec in spectra.values():
        values = np.frombuffer(base64.b64decode(spec["data"]), np.uint8).reshape(spec["rows"], spec["columns"])
        assert spec["rows"] == 128 and 0 < spec["columns"] <= 800 and values.std() > 5
    assert spectra["input"]["top_db"] == spectra["output"]["top_db"]  # one scale: what was removed shows darker
    assert spectra["input"]["data"] != spectra["output"]["data"]
    assert client.get(f"/api/jobs/{job_id}/files/0/spectrogram", params={"which": "secret"}).status_code == 422

    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{job_id}/zip", params={"dry": "0,0.5,1"}).content))
    names = archive.namelist()
    assert names == ["first_denoised.flac", "second_denoised.wav", "3_second_denoised.wav"]
    fully_dry = sf.read(io.BytesIO(archive.read(names[2])), dtype="float32")[0]
    assert np.array_equal(fully_dry, sf.read(io.BytesIO(uploads[2][1][1]), dtype="float32")[0])  # dry 1 is the input
    assert client.get(f"/api/jobs/{job_id}/zip", params={"dry": "0,0.5"}).status_code == 422
    assert client.get(f"/api/jobs/{job_id}/zip", params={"dry": "2"}).status_code == 422

    with client.stream("GET", f"/api/jobs/{job_id}/events") as events:  # finished: one event, then the stream ends
        lines = [line for line in events.iter_lines() if line.startswith("data: ")]
    assert events.headers["content-type"].startswith("text/event-stream") and len(lines) == 1
    assert json.loads(lines[0][6:])["state"] == "finished"

    assert client.get(f"/api/jobs/{job_id}/files/3/output").status_code == 404
    assert client.get(f"/api/jobs/{job_id}/files/0/output", params={"dry": 1.5}).status_code == 422
    assert client.delete(f"/api/jobs/{job_id}").json() == {"deleted": job_id}
    assert (
        client.get(f"/api/jobs/{job_id}").status_code == 404 and client.delete(f"/api/jobs/{job_id}").status_code == 404
    )
    assert job_folder_files(client) == []


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_the_cli_bad_inputs_get_its_one_line_message(case, client, tmp_path, write_wav):
    if case == "garbage .mp4" and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    make, message = ERROR_CASES[case]
    path = make(tmp_path, write_wav)
    data = path.read_bytes()
    direct = client.post("/api/denoise", files={"file": (path.name, data)})
    assert direct.status_code == 422 and message in direct.json()["detail"], direct.text
    assert "Traceback" not in direct.text and "\n" not in direct.json()["detail"]
    # In a job, the bad file fails alone and the good one is denoised.
    job = client.post(
        "/api/jobs", files=[("file", (path.name, data)), ("file", ("good.wav", encoded(speechlike(0.3))))]
    ).json()
    files = finished(client, job["id"])["files"]
    assert files[0]["state"] == "failed" and message in files[0]["error"] and files[1]["state"] == "done"
    assert client.get(f"/api/jobs/{job['id']}/files/0/output").status_code == 422
    client.delete(f"/api/jobs/{job['id']}")
    assert client.get("/api/health").status_code == 200  # still serving


def test_huge_channel_counts(client):
    refused = client.post("/api/denoise", files={"file": ("many.wav", wav_header(4096))})
    assert refused.status_code == 422 and "not a readable audio file" in refused.json()["detail"]
    many = client.post(
        "/api/denoise", files={"file": ("many.wav", wav_header(1024, 160))}
    )  # libsndfile's most: still works
    assert many.status_code == 200 and sf.info(io.BytesIO(many.content)).channels == 1024


def test_client_names_never_become_paths(client):
    job = client.post(
        "/api/jobs",
        files=[
            ("file", ("../../../etc/passwd.wav", encoded(speechlike(0.2)))),
            ("file", ("C:\\Windows\\evil.flac", encoded(speechlike(0.2), format="FLAC"))),
        ],
    ).json()
    assert [f["name"] for f in job["files"]] == ["passwd.wav", "evil.flac"]
    finished(client, job["id"])
    assert [p.name for p in sorted((client.app.state.store.root / job["id"]).iterdir())] == [
        "0.in.wav",
        "0.out.wav",
        "1.in.flac",
        "1.out.flac",
    ]
    client.delete(f"/api/jobs/{job['id']}")
    for bad in ("..", "../etc", "a" * 22, "%2e%2e%2f"):
        assert client.get(f"/api/jobs/{bad}").status_code == 404


def test_malformed_requests_are_4xx(client):
    assert client.post("/api/denoise", content=b"raw bytes", headers={"content-type": "audio/wav"}).status_code == 400
    assert client.post("/api/jobs", data={"dry": "0.5"}, files={"other": ("x", b"1")}).status_code == 400
    assert (
        client.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.2)))}, data={"dry": "loud"}).status_code
        == 400
    )
    assert (
        client.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.2)))}, data={"dry": "1.5"}).status_code
        == 400
    )
    assert client.post("/api/denoise", files=[("file", ("a.wav", b"1")), ("file", ("b.wav", b"2"))]).status_code == 400
    assert job_folder_files(client) == []


def test_not_ready_is_409(client):
    store = client.app.state.store
    job = store.create()
    job.add_file("pending.wav")
    assert client.get(f"/api/jobs/{job.id}").json()["state"] == "uploading"
    assert client.get(f"/api/jobs/{job.id}/files/0/output").status_code == 409
    assert client.get(f"/api/jobs/{job.id}/zip").status_code == 409
    store.delete(job.id)


def test_size_limit_is_413_declared_or_streamed():
    with make_client(max_upload_mb=0.05) as small:  # 52 kB
        big = encoded(speechlike(2.0))  # 64 kB
        declared = small.post("/api/denoise", files={"file": ("big.wav", big)})
        assert declared.status_code == 413 and "--max-upload-mb" in declared.json()["detail"]

        def chunks():  # no Content-Length: the limit must hold while the body streams in
            boundary = b"xyz"
            yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
            for start in range(0, len(big), 4096):
                yield big[start : start + 4096]
            yield b"\r\n--" + boundary + b"--\r\n"

        streamed = small.post(
            "/api/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"}
        )
        assert streamed.status_code == 413
        assert small.post("/api/denoise", files={"file": ("ok.wav", encoded(speechlike(0.5)))}).status_code == 200
        assert job_folder_files(small) == []


def test_job_limit_is_429_and_frees_up_on_delete():
    with make_client(max_jobs=2) as limited:
        ids = [
            limited.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.2)))}).json()["id"]
            for _ in range(2)
        ]
        refused = limited.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.2)))})
        assert refused.status_code == 429 and "Retry-After" in refused.headers and "2 jobs" in refused.json()["detail"]
        assert limited.post("/api/denoise", files={"file": ("a.wav", encoded(speechlike(0.2)))}).status_code == 429
        limited.delete(f"/api/jobs/{ids[0]}")
        assert limited.post("/api/denoise", files={"file": ("a.wav", encoded(speechlike(0.2)))}).status_code == 200


def test_token_by_header_or_query():
    with make_client(token="s3cret") as guarded:
        assert guarded.get("/api/health").status_code == 401
        assert guarded.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert guarded.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert guarded.get("/api/health", params={"token": "s3cret"}).status_code == 200
        assert guarded.post("/api/jobs", files={"file": ("a.wav", b"x")}).status_code == 401
        assert guarded.get("/").status_code == 200  # the page holds no data; it passes ?token= on


def test_other_hosts_and_origins_are_refused_on_loopback(client):
    assert client.get("/api/health", headers={"host": "evil.example:8000"}).status_code == 400  # DNS rebinding
    assert client.get("/api/health", headers={"host": "localhost:8000"}).status_code == 200
    cross = client.post("/api/jobs", files={"file": ("a.wav", b"x")}, headers={"origin": "http://evil.example"})
    assert cross.status_code == 403
    assert "access-control-allow-origin" not in {
        k.lower() for k in client.get("/api/health", headers={"origin": "http://evil.example"}).headers
    }
    with TestClient(
        create_app(Denoiser(tiny_can()), ServeConfig(host="0.0.0.0")), base_url="http://192.0.2.7:8000"
    ) as public:
        assert public.get("/api/health").status_code == 200


def test_expiry_deleting_a_running_job_and_shutdown_remove_every_file():
    test_client = make_client(keep_minutes=1)
    with test_client:
        store = test_client.app.state.store
        old = test_client.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.3)))}).json()["id"]
        finished(test_client, old)
        assert store.expire(now=time.time() + 30) == []
        assert store.expire(now=time.time() + 61) == [old] and test_client.get(f"/api/jobs/{old}").status_code == 404
        running = test_client.post("/api/jobs", files={"file": ("long.wav", encoded(speechlike(20.0)))}).json()["id"]
        futures = store.jobs[running].futures
        assert test_client.delete(f"/api/jobs/{running}").status_code == 200
        wait(futures)
        assert job_folder_files(test_client) == []
        kept = test_client.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.3)))}).json()["id"]
        finished(test_client, kept)
        assert (store.root / kept).is_dir()
    assert not store.root.exists()  # shutdown deleted everything


@needs_shared
def test_shipped_model_on_a_real_recording_equals_the_cli(tmp_path, capsys):
    source = DEV / "noisy" / "p287_002.flac"
    assert main(["denoise", str(source), "-o", str(tmp_path / "cli.flac"), "-q"]) == 0
    with TestClient(create_app(Denoiser.from_pretrained(), ServeConfig()), base_url=BASE) as shipped:
        response = shipped.post("/api/denoise", files={"file": (source.name, source.read_bytes())})
    assert response.status_code == 200
    served, rate = sf.read(io.BytesIO(response.content), dtype="int16")
    cli, cli_rate = sf.read(tmp_path / "cli.flac", dtype="int16")
    assert rate == cli_rate == 16000 and np.array_equal(served, cli)


def test_serve_command_flags_come_from_the_config(tmp_path, capsys):
    from hushnet.cli import build_parser

    args = build_parser().parse_args(
        ["serve", "--port", "9001", "--max-upload-mb", "10", "--token", "t", "--keep-minutes", "5"]
    )
    assert (args.port, args.max_upload_mb, args.token, args.keep_minutes, args.host, args.workers) == (
        9001,
        10.0,
        "t",
        5.0,
        "127.0.0.1",
        1,
    )
    assert main(["serve", "--workers", "0"]) == 2 and "--workers must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "nope"), "--port", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: no model directory")


def start_server(arguments: list[str], tmp_path: Path, script: str | None = None, sigint_ignored: bool = False):
    """``hushnet serve --port 0 ...`` (or ``script`` with the same arguments) as users start it, TMPDIR in
    ``tmp_path``; returns (process, the port it printed). ``sigint_ignored``: started as a shell script
    starts a background job, with SIGINT ignored."""
    import os
    import re
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    start = [sys.executable, "-c", script] if script else [sys.executable, "-m", "hushnet.cli"]
    server = subprocess.Popen(
        [*start, "serve", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root / "src"), "TMPDIR": str(tmp_path)},
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
    )
    server.printed = []  # what it said before the address (a warning may come first), for stop()
    for line in server.stderr:
        server.printed.append(line)
        if match := re.search(r"http://[^/]+:(\d+)/", line):
            assert int(match.group(1)) > 0, line
            return server, int(match.group(1))
    raise AssertionError(f"the server printed no address: {server.printed} {server.communicate()}")


def first_health(http, server):
    """The first answer of /api/health once the server listens (a ceiling of 60 s, not a speed check)."""
    import httpx

    for _ in range(600):
        try:
            return http.get("/api/health")
        except httpx.TransportError:
            assert server.poll() is None, server.stderr.read()
            time.sleep(0.1)
    raise AssertionError("the server never listened")


def stop(server) -> tuple[str, str]:
    """Ctrl-C, as a user stops it; (stdout, stderr)."""
    import signal

    server.send_signal(signal.SIGINT)
    out, err = server.communicate(timeout=60)
    return out, "".join(server.printed) + err


def test_hushnet_serve_process_warns_off_loopback_and_deletes_uploads_on_stop(tmp_path, tiny_model_dir):
    """The real command: started as users start it, stopped with Ctrl-C (SIGINT)."""
    import httpx

    server, port = start_server(
        ["--host", "0.0.0.0", "--model", str(tiny_model_dir), "--token", "t0k", "--threads", "1"], tmp_path
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer t0k"}) as http:
            health = first_health(http, server)
            assert health.status_code == 200 and health.json()["model"] == "tiny"
            assert httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 401
            job = http.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.3)))}).json()["id"]
            assert any(tmp_path.glob(f"hushnet-serve-*/{job}/0.in.wav"))
    finally:
        _, err = stop(server)
    assert "warning: serving on 0.0.0.0" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_serve_loads_the_model_into_its_engine_precision_threads_and_workers(tmp_path):
    """What `hushnet serve --engine --precision --threads --workers` hands the Denoiser, read back
    from the app it would serve."""
    pytest.importorskip("openvino")
    from hushnet.commands.serve import build_app
    from hushnet.inference.networks import export_onnx
    from hushnet.model_dir import ONNX_FILE, fingerprint_metadata, save_model

    directory = tmp_path / "tiny"
    save_model(tiny_can(), directory, "# tiny\n")
    export_onnx(tiny_can(), directory / ONNX_FILE, fingerprint_metadata(directory))
    app = build_app(ServeConfig(model=str(directory), engine="openvino", precision="float32", threads=1, workers=2))
    try:
        engine = app.state.denoiser.engine
        assert (engine.name, engine.precision, engine.threads) == ("openvino", "float32", 1)
        assert engine.properties["NUM_STREAMS"] == 2 and engine.properties["INFERENCE_NUM_THREADS"] == 2
        with TestClient(app, base_url=BASE) as test_client:
            health = test_client.get("/api/health").json()
        assert (health["engine"], health["precision"]) == ("openvino", "float32")
    finally:
        app.state.store.close()


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_serve_builds_its_denoiser_with_the_engine_and_threads_it_is_given(engine):
    """`--workers N` sessions must not each take every core: --threads and --engine reach the Denoiser."""
    from hushnet.cli import build_parser
    from hushnet.options import config_from_args

    args = build_parser(["serve"]).parse_args(["serve", "--engine", engine, "--threads", "1", "--workers", "2"])
    from hushnet.commands.serve import build_app

    app = build_app(config_from_args(ServeConfig, args))
    try:
        assert app.state.denoiser.engine.name == engine and app.state.denoiser.engine.threads == 1
    finally:
        app.state.store.close()


NO_TORCH_SERVE = """
import sys
for name in ("torch", "safetensors", "openvino"):  # the core install: none of the extras
    sys.modules[name] = None  # as if not installed: any import of them fails
from hushnet.cli import main
status = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "safetensors") and sys.modules[m] is not None)
print("STATUS", status, "LOADED", loaded, flush=True)
"""


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "started-with-sigint-ignored"])
def test_serve_runs_on_the_light_runtime_without_torch(tmp_path, sigint_ignored):
    """The torch-free install serves: the shipped model through onnxruntime, a real upload denoised.
    Ctrl-C stops it with status 130 however it was started (a shell script's background job starts
    with SIGINT ignored, which uvicorn overrides to stop, then handed back: status 0)."""
    import httpx

    server, port = start_server(["--threads", "1"], tmp_path, script=NO_TORCH_SERVE, sigint_ignored=sigint_ignored)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            health = first_health(http, server)
            assert health.status_code == 200 and health.json()["engine"] == "onnx"
            answer = http.post("/api/denoise", files={"file": ("a.wav", encoded(speechlike(0.5)))})
            assert answer.status_code == 200 and sf.info(io.BytesIO(answer.content)).frames == 8000
    finally:
        out, err = stop(server)
    assert "LOADED []" in out and "STATUS 130" in out, err  # stopped with Ctrl-C, no torch or safetensors ever loaded
    assert "Traceback" not in err


@pytest.mark.parametrize("endpoint", ["/api/denoise", "/api/jobs"])
def test_an_upload_without_its_closing_boundary_is_refused_and_leaves_no_job(endpoint, client):
    data = encoded(speechlike(0.5))
    whole, headers = multipart([("file", "a.wav", data)])
    for body in (multipart([("file", "a.wav", data)], close=False)[0], whole[: len(whole) // 2], whole[:-10]):
        response = client.post(endpoint, content=body, headers=headers)
        assert response.status_code == 400 and response.json()["detail"].startswith("incomplete upload"), response.text
    assert client.app.state.store.jobs == {} and job_folder_files(client) == []


def test_a_very_long_upload_name_is_shortened_not_a_parse_error(client):
    body, headers = multipart([("file", "x" * 5000 + ".wav", encoded(speechlike(0.3)))])
    response = client.post("/api/denoise", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert len(response.headers["content-disposition"]) < 300


@pytest.mark.parametrize("render", ["output", "spectrogram", "zip", "input"])
def test_a_render_racing_a_delete_is_410_not_500(render, client):
    """The route has found the job; the DELETE lands before its render starts (the race, made certain)."""
    from hushnet.serve import renders
    from hushnet.serve.jobs import JobDeleted

    store = client.app.state.store
    job_id = client.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.4)))}).json()["id"]
    finished(client, job_id)
    job = store.jobs[job_id]
    entry = job.files[0]
    store.delete(job_id)
    with pytest.raises(JobDeleted):
        {
            "output": lambda: renders.mixed(store, job, entry, 0.5),
            "spectrogram": lambda: renders.spectrogram(store, job, entry, "output", 0.3),
            "zip": lambda: renders.zip_outputs(store, job, [0.5]),
            "input": lambda: store.hold(job),
        }[render]()
    assert job_folder_files(client) == []
    # and through HTTP once the job is gone: never a 500
    path = {
        "output": "files/0/output?dry=0.5",
        "spectrogram": "files/0/spectrogram?dry=0.3",
        "zip": "zip?dry=0.5",
        "input": "files/0/input",
    }[render]
    assert client.get(f"/api/jobs/{job_id}/{path}").status_code == 404


def test_a_file_being_sent_is_kept_until_sent_even_when_the_job_is_deleted(client):
    store = client.app.state.store
    job_id = client.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.4)))}).json()["id"]
    finished(client, job_id)
    job = store.jobs[job_id]
    release = store.hold(job)  # what a response still sending does
    store.delete(job_id)
    assert job.files[0].output.exists()
    release()
    assert not job.folder.exists()


@pytest.mark.parametrize("token", ["", "caf\u00e9", "two words"])
def test_an_empty_or_unsendable_token_is_refused(token, capsys):
    assert main(["serve", "--token", token]) == 2
    assert "--token must be printable ASCII" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--token"):
        make_client(token=token)


def test_max_upload_nan_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for flag in ("--max-upload-mb", "--keep-minutes"):
        assert main(["serve", flag, "nan"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {flag} must be a positive number") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_kill_9_of_the_server_leaves_uploads_only_until_the_next_start(tmp_path, tiny_model_dir):
    import signal

    import httpx

    server, port = start_server(["--model", str(tiny_model_dir), "--threads", "1"], tmp_path)
    try:
        job = httpx.post(
            f"http://127.0.0.1:{port}/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.3)))}
        ).json()["id"]
        assert any(tmp_path.glob(f"hushnet-serve-*/{job}/0.in.wav"))
    finally:
        server.kill()
        server.communicate(timeout=60)
    assert any(tmp_path.glob(f"hushnet-serve-*/{job}"))  # kill -9 runs no cleanup
    again, port = start_server(["--model", str(tiny_model_dir), "--threads", "1"], tmp_path)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200
        assert not any(tmp_path.glob(f"hushnet-serve-*/{job}"))  # the restart removed the dead server's uploads
    finally:
        again.send_signal(signal.SIGINT)
        again.communicate(timeout=60)
    assert list(tmp_path.iterdir()) == []


def test_a_ctrl_c_right_after_the_address_line_removes_the_upload_folder(tmp_path, tiny_model_dir):
    # The Ctrl-C is made to land exactly as the address line is printed (before the server runs),
    # which a real signal hits only by chance; the upload folder must go all the same.
    script = (
        "import builtins, sys\n"
        "from hushnet.cli import main\n"
        "real = builtins.print\n"
        "def printing(*args, **kwargs):\n"
        "    real(*args, **kwargs)\n"
        "    if args and str(args[0]).startswith('hushnet serve: open'):\n"
        "        raise KeyboardInterrupt\n"
        "builtins.print = printing\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script, "serve", "--port", "0", "--model", str(tiny_model_dir), "--threads", "1"],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "hushnet serve: open" in finished.stderr and "Traceback" not in finished.stderr, finished.stderr
    assert finished.returncode == 130, finished.stderr
    assert not list(tmp_path.glob("hushnet-serve-*"))


def test_a_body_that_does_not_match_its_content_length_is_refused(client):
    body, headers = multipart([("file", "a.wav", encoded(speechlike(0.3)))])
    response = client.post("/api/jobs", content=body, headers={**headers, "content-length": str(len(body) - 40)})
    assert response.status_code == 400 and response.json()["detail"].startswith("incomplete upload"), response.text
    assert client.app.state.store.jobs == {} and job_folder_files(client) == []


def test_a_client_that_goes_away_stops_its_denoising(tmp_path):
    """/api/denoise through the ASGI protocol: the body, then the client hangs up while it waits."""
    import asyncio

    from hushnet.serve.jobs import JobStore

    created = []

    class RecordingStore(JobStore):
        def create(self, dry: float = 0.0):
            created.append(super().create(dry))
            return created[-1]

    denoiser = Denoiser(tiny_can(), chunk_seconds=0.5)
    store = RecordingStore(denoiser, 1, 4, 60.0, root=tmp_path)
    app = create_app(denoiser, ServeConfig(), store=store)
    body, headers = multipart([("file", "long.wav", encoded(speechlike(300.0, rate=8000), rate=8000))])
    sent = []

    async def call() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            if created and created[0].files[0].done > 0:  # the work has started: the client hangs up
                return {"type": "http.disconnect"}
            await asyncio.sleep(3600)  # nothing from the client yet (the server's check cancels this wait)

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/denoise",
            "raw_path": b"/api/denoise",
            "query_string": b"",
            "root_path": "",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 5000),
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", headers["content-type"].encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        await app(scope, receive, send)

    asyncio.run(call())
    wait(created[0].futures)
    entry = created[0].files[0]
    assert entry.state == "failed" and entry.error == "cancelled" and 0 < entry.done < entry.total  # stopped partway
    assert store.jobs == {} and not created[0].folder.exists()
    assert sent[0]["status"] == 499
    store.close()


def test_a_stalled_upload_holds_no_job_slot_and_is_dropped(tmp_path, tiny_model_dir):
    """--max-jobs 1: a client that declares 1 GB, sends 3 KB and goes silent must not lock everyone out."""
    import socket

    import httpx

    server, port = start_server(
        ["--model", str(tiny_model_dir), "--threads", "1", "--max-jobs", "1", "--upload-idle-seconds", "2"], tmp_path
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            assert first_health(http, server).status_code == 200
            stalled = socket.create_connection(("127.0.0.1", port))
            body = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n' + b"\0" * 3000
            stalled.sendall(
                b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
                b"Content-Length: 1000000000\r\n\r\n" + body
            )
            time.sleep(0.5)  # the server has the stalled job folder now
            assert len(list(tmp_path.glob("hushnet-serve-*/*"))) == 1
            created = http.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.3)))})
            assert created.status_code == 201, created.text
            stalled.settimeout(30)
            answer = b""  # sent once the idle limit is reached
            while b"}" not in answer and (piece := stalled.recv(65536)):
                answer += piece
            answer = answer.decode("latin-1")
            stalled.close()
            assert answer.startswith("HTTP/1.1 408") and "upload stalled" in answer, answer
            assert [p.name for p in tmp_path.glob("hushnet-serve-*/*")] == [created.json()["id"]]
            refused = http.post("/api/jobs", files={"file": ("a.wav", encoded(speechlike(0.3)))})
            assert refused.status_code == 429  # the one slot is the finished job's
    finally:
        _, err = stop(server)
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []
