"""Load check of ``hushnet serve`` on loopback: many short uploads from concurrent clients, plus one long file.

A real ``hushnet serve`` process (the shipped model) gets ``--uploads`` short real recordings
(valentini_dev, cycled) through ``POST /api/denoise`` from ``--clients`` concurrent clients while one
``--long-minutes`` file (the dev recordings joined end to end) goes through the job API. Every output
is checked against the CLI's own output for the same file (``hushnet denoise``, same model and
threads): length, rate and samples. Reported: latency percentiles, throughput, the long file's times,
the server's peak RSS (VmHWM), and that no temporary file is left once the jobs are deleted and once
the server has stopped (the server gets its own TMPDIR, so its uploads, staging memmaps and renders
are all counted).

    python benchmarks/serve.py                       # 50 uploads, 16 clients, a 30-minute file
    python benchmarks/serve.py --uploads 8 --clients 4 --long-minutes 1   # a quick try

Results: benchmarks/results/serve.json and serve.md.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from common import RESULTS, ROOT, SHARED, cpu_facts

DEV = SHARED / "data" / "valentini_dev" / "noisy"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def make_long_file(path: Path, minutes: float) -> float:
    """The dev recordings joined end to end (cycled) into one 16 kHz FLAC of ``minutes``."""
    pieces = [sf.read(str(p), dtype="float32")[0] for p in sorted(DEV.glob("*.flac"))]
    total = int(minutes * 60 * 16000)
    with sf.SoundFile(str(path), "w", 16000, 1, "PCM_16", format="FLAC") as out:
        written, k = 0, 0
        while written < total:
            piece = pieces[k % len(pieces)][: total - written]
            out.write(piece)
            written += piece.size
            k += 1
    return total / 16000


def cli_reference(inputs: list[Path], folder: Path, threads: int, model: str | None) -> float:
    """``hushnet denoise`` on the inputs (the outputs the server must equal); returns its wall time."""
    command = [
        sys.executable,
        "-m",
        "hushnet.cli",
        "denoise",
        *map(str, inputs),
        "-o",
        str(folder),
        "--threads",
        str(threads),
        "-q",
    ]
    if model:
        command += ["--model", model]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return time.perf_counter() - started


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    """Resident memory now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_burst(base: str, pid: int, inputs: list[Path], uploads: int) -> dict:
    """RSS before and after ``uploads`` small files sent at once through ``POST /api/denoise``:
    memory a burst took must be handed back, not kept for the life of the server."""
    with httpx.Client(base_url=base, timeout=600) as client:  # a first request: the engine and the page warm
        client.post("/api/denoise", files={"file": (inputs[0].name, inputs[0].read_bytes())}).raise_for_status()
    time.sleep(1.0)
    before = rss_mb(pid)
    statuses: list[int] = []

    def send(path: Path) -> None:
        with httpx.Client(base_url=base, timeout=600) as client:
            statuses.append(client.post("/api/denoise", files={"file": (path.name, path.read_bytes())}).status_code)

    threads = [threading.Thread(target=send, args=(inputs[k % len(inputs)],)) for k in range(uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(2.0)  # the answers are sent and their jobs deleted (background tasks)
    return {
        "uploads": uploads,
        "ok": statuses.count(200),
        "rss_before_mb": before,
        "rss_after_mb": rss_mb(pid),
        "peak_mb": peak_rss_mb(pid),
    }


def files_under(folder: Path) -> list[str]:
    """Files under ``folder``, but onnxruntime's own ``.ses`` (a fixed-name telemetry file it writes into
    the temp folder when imported, and reuses)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir() and p.name != ".ses")


def same_as_cli(content: bytes | Path, reference: Path) -> tuple[bool, str]:
    """Same rate, channels, length and samples as the CLI's output."""
    got, rate = sf.read(
        content if isinstance(content, Path) else __import__("io").BytesIO(content), dtype="int16", always_2d=True
    )
    expected, expected_rate = sf.read(str(reference), dtype="int16", always_2d=True)
    if rate != expected_rate or got.shape != expected.shape:
        return False, f"shape/rate {got.shape}@{rate} vs {expected.shape}@{expected_rate}"
    if not np.array_equal(got, expected):
        return False, f"samples differ (max {int(np.abs(got.astype(np.int32) - expected).max())} LSB)"
    return True, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--long-minutes", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="server workers (one is busy with the long file)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker, and for the CLI reference")
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--time-limit", type=float, default=3600.0, help="give up (and fail) after this many seconds of load"
    )
    parser.add_argument("--output", default=str(RESULTS / "serve"))
    parser.add_argument(
        "--burst", type=int, default=30, help="small uploads sent at once first, to measure memory kept after a burst"
    )
    parser.add_argument(
        "--burst-only", action="store_true", help="only the memory burst (results in serve_memory.json/.md)"
    )
    args = parser.parse_args()
    if args.burst_only:
        return burst_only(args)

    work = Path(tempfile.mkdtemp(prefix="hushnet-serve-bench-"))
    server_tmp = work / "server_tmp"
    server_tmp.mkdir()
    short_inputs = sorted(DEV.glob("*.flac"))
    long_input = work / "long.flac"
    long_seconds = make_long_file(long_input, args.long_minutes)
    print(
        f"reference: hushnet denoise on {len(short_inputs)} dev files and the {args.long_minutes:g}-minute file",
        file=sys.stderr,
    )
    reference = work / "reference"
    cli_seconds = cli_reference([*short_inputs, long_input], reference, args.threads, args.model)
    load_before = os.getloadavg()[0]

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "hushnet.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
    ]
    if args.model:
        command += ["--model", args.model]
    server = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "TMPDIR": str(server_tmp)})
    base = f"http://127.0.0.1:{port}"
    failures: list[str] = []
    try:
        deadline = time.time() + 120
        while True:
            try:
                health = httpx.get(base + "/api/health", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.3)
        burst = memory_burst(base, server.pid, short_inputs, args.burst) if args.burst else {}
        started = time.perf_counter()
        end_by = time.time() + args.time_limit
        long_result: dict = {}

        def long_client() -> None:
            with httpx.Client(base_url=base, timeout=600) as client:
                t0 = time.perf_counter()
                with open(long_input, "rb") as handle:
                    created = client.post("/api/jobs", files={"file": ("long.flac", handle)})
                created.raise_for_status()
                job_id = created.json()["id"]
                uploaded = time.perf_counter()
                while True:
                    status = client.get(f"/api/jobs/{job_id}").json()
                    if status["state"] == "finished" or time.time() > end_by:
                        break
                    time.sleep(1.0)
                processed = time.perf_counter()
                entry = status["files"][0]
                if entry["state"] != "done":
                    failures.append(f"long file: {entry['state']} {entry['error']}")
                    return
                target = work / "long_served.flac"
                with client.stream("GET", f"/api/jobs/{job_id}/files/0/output") as response, open(target, "wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
                downloaded = time.perf_counter()
                spectrogram = client.get(f"/api/jobs/{job_id}/files/0/spectrogram", params={"which": "output"}).json()
                spectrogram_done = time.perf_counter()
                ok, why = same_as_cli(target, reference / "long.flac")
                if not ok:
                    failures.append(f"long file: {why}")
                info = sf.info(str(target))
                long_result.update(
                    upload_s=uploaded - t0,
                    processing_s=processed - uploaded,
                    download_s=downloaded - processed,
                    spectrogram_s=spectrogram_done - downloaded,
                    spectrogram_columns=spectrogram["columns"],
                    rtf=(processed - uploaded) / long_seconds,
                    frames=info.frames,
                    rate=info.samplerate,
                    equal_to_cli=ok,
                    upload_mb=long_input.stat().st_size / 2**20,
                )
                client.delete(f"/api/jobs/{job_id}").raise_for_status()

        work_queue: queue.Queue = queue.Queue()
        for k in range(args.uploads):
            work_queue.put(short_inputs[k % len(short_inputs)])
        latencies: list[float] = []
        audio_seconds: list[float] = []
        refused: list[int] = []
        lock = threading.Lock()

        def short_client() -> None:
            with httpx.Client(base_url=base, timeout=600) as client:
                while time.time() < end_by:
                    try:
                        path = work_queue.get_nowait()
                    except queue.Empty:
                        return
                    t0 = time.perf_counter()
                    response = client.post("/api/denoise", files={"file": (path.name, path.read_bytes())})
                    elapsed = time.perf_counter() - t0
                    if response.status_code != 200:
                        with lock:
                            refused.append(response.status_code)
                            failures.append(f"{path.name}: HTTP {response.status_code} {response.text[:100]}")
                        continue
                    ok, why = same_as_cli(response.content, reference / path.name)
                    with lock:
                        latencies.append(elapsed)
                        audio_seconds.append(sf.info(str(path)).duration)
                        if not ok:
                            failures.append(f"{path.name}: {why}")

        long_thread = threading.Thread(target=long_client)
        long_thread.start()
        time.sleep(2.0)  # the long file's upload is under way: the short ones meet a busy worker
        short_started = time.perf_counter()
        threads = [threading.Thread(target=short_client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        short_elapsed = time.perf_counter() - short_started
        long_thread.join()
        total_elapsed = time.perf_counter() - started
        left_while_running = files_under(server_tmp)
        peak = peak_rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    left_after_stop = files_under(server_tmp) + [str(p.relative_to(server_tmp)) for p in server_tmp.iterdir()]

    lost = args.uploads - len(latencies) - len(refused)
    result = {
        "uploads": args.uploads,
        "clients": args.clients,
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "model": health["model"],
        "short_ok": len(latencies),
        "short_refused": refused,
        "lost": lost,
        "latency_s": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=float("nan")),
        },
        "short_throughput_files_per_s": len(latencies) / short_elapsed,
        "short_audio_seconds_per_s": sum(audio_seconds) / short_elapsed,
        "short_wall_s": short_elapsed,
        "long_minutes": args.long_minutes,
        "long": long_result,
        "total_wall_s": total_elapsed,
        "peak_server_rss_mb": peak,
        "memory_burst": burst,
        "files_left_after_deleting_jobs": left_while_running,
        "files_left_after_stop": left_after_stop,
        "cli_reference_wall_s": cli_seconds,
        "failures": failures,
        "load_average_before": load_before,
        "cpu": cpu_facts(),
    }
    shutil.rmtree(work, ignore_errors=True)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lat = result["latency_s"]
    lines = [
        "# `hushnet serve` load check (`python benchmarks/serve.py`)",
        "",
        f"{args.uploads} short real recordings (valentini_dev, 2-7 s) through `POST /api/denoise` from {args.clients} concurrent clients, "
        f"while one {args.long_minutes:g}-minute file goes through `POST /api/jobs`; server `--workers {args.workers} --threads {args.threads}`, "
        f"model `{health['model']}`, loopback, {os.cpu_count()} cores, load average {load_before:.2f} before the run (a training run and other jobs shared the 2 cores).",
        "",
        "| what | value |",
        "|---|---|",
        f"| short uploads answered | {len(latencies)} of {args.uploads} ({len(refused)} refused, {lost} lost) |",
        f"| latency p50 / p90 / p99 / max | {lat['p50']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f} / {lat['max']:.2f} s |",
        f"| throughput (short) | {result['short_throughput_files_per_s']:.2f} files/s, {result['short_audio_seconds_per_s']:.1f} s of audio per s |",
    ]
    if long_result:
        lines += [
            f"| long file: upload / denoise / download | {long_result['upload_s']:.1f} / {long_result['processing_s']:.0f} / {long_result['download_s']:.1f} s "
            f"(RTF {long_result['rtf']:.3f}, {long_result['upload_mb']:.0f} MB FLAC) |",
            f"| long file: spectrogram of the output | {long_result['spectrogram_s']:.1f} s, {long_result['spectrogram_columns']} columns |",
        ]
    lines += [
        f"| every output equal to `hushnet denoise`'s (rate, length, samples) | {'yes' if not failures else 'NO'} |",
        f"| peak server RSS (VmHWM) | {peak:.0f} MB |",
        *(
            [
                f"| RSS before / after {burst['uploads']} small uploads at once (first) | {burst['rss_before_mb']:.0f} / {burst['rss_after_mb']:.0f} MB |"
            ]
            if burst
            else []
        ),
        f"| temporary files left after the jobs were deleted / after stop | {len(left_while_running)} / {len(left_after_stop)} |",
        f"| `hushnet denoise` on the same files, for reference | {cli_seconds:.0f} s |",
    ]
    if failures:
        lines += ["", "Failures:", *[f"- {line}" for line in failures]]
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failures or lost or left_while_running or left_after_stop else 0


def start_server(work: Path, workers: int, threads: int, model: str | None) -> tuple[subprocess.Popen, str]:
    """``hushnet serve`` on a free loopback port with its own TMPDIR; returns (process, base URL) once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "hushnet.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    if model:
        command += ["--model", model]
    (work / "server_tmp").mkdir(exist_ok=True)
    server = subprocess.Popen(
        command, env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "TMPDIR": str(work / "server_tmp")}
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            httpx.get(base + "/api/health", timeout=2).raise_for_status()
            return server, base
        except httpx.HTTPError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("the server did not start")
            time.sleep(0.3)


def burst_only(args: argparse.Namespace) -> int:
    """The memory burst alone: RSS before and after ``--burst`` small uploads at once."""
    work = Path(tempfile.mkdtemp(prefix="hushnet-serve-bench-"))
    load = os.getloadavg()[0]
    server, base = start_server(work, args.workers, args.threads, args.model)
    try:
        burst = memory_burst(base, server.pid, sorted(DEV.glob("*.flac")), args.burst)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    left = files_under(work / "server_tmp")
    shutil.rmtree(work, ignore_errors=True)
    result = {
        **burst,
        "workers": args.workers,
        "threads": args.threads,
        "model": args.model or "hushnet-dfl (default)",
        "load_average_before": load,
        "files_left_after_stop": left,
    }
    output = Path(args.output).with_name(Path(args.output).name + "_memory")
    output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    text = (
        f"# `hushnet serve` memory after a burst (`python benchmarks/serve.py --burst-only --burst {args.burst}`)\n\n"
        f"{args.burst} small real recordings (valentini_dev, 2-7 s) sent at once through `POST /api/denoise` after one warm-up request; "
        f"server `--workers {args.workers} --threads {args.threads}`, {result['model']}, load average {load:.2f} before.\n\n"
        f"| what | value |\n|---|---|\n| answered 200 | {burst['ok']} of {burst['uploads']} |\n"
        f"| RSS before the burst | {burst['rss_before_mb']:.0f} MB |\n| RSS 2 s after the last answer | {burst['rss_after_mb']:.0f} MB |\n"
        f"| peak RSS (VmHWM) | {burst['peak_mb']:.0f} MB |\n| temporary files left after stop | {len(left)} |\n"
    )
    output.with_suffix(".md").write_text(text)
    print(text)
    return 0 if burst["ok"] == burst["uploads"] and not left else 1


if __name__ == "__main__":
    sys.exit(main())
