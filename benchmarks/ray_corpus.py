"""A corpus on Ray against the local command: ``hushnet denoise SRC -o DST`` vs ``--ray`` with 1 and 2 actors.

200 real recordings from the shared data (every noisy file of real_noisy_dev, valentini_dev and
valentini_test_dev, the rest spread evenly over the speech manifest's sets), copied into a temporary
folder, each run as the user runs it (a fresh process; ``--ray`` starts its own local Ray). Measured:
wall time, files/s, audio hours per hour, the overhead per file against the local command with the
same threads, the start of a local Ray on its own, peak RSS of the local process and of each actor
(VmHWM, polled from /proc), and from the 2-actor figure the cluster a 10,000-hour corpus needs in 24 h.

    python benchmarks/ray_corpus.py             # writes benchmarks/results/corpus.{json,md}
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import RESULTS, ROOT, SHARED

DATA = SHARED / "data"
SRC = ROOT / "src"
TARGET_HOURS, TARGET_DAYS_HOURS = 10_000, 24
RUNS = {
    "local (threads: all cores)": [],
    "local --threads 1": ["--threads", "1"],
    "--ray, 1 actor": ["--ray", "--actors", "1"],
    "--ray, 2 actors": ["--ray", "--actors", "2"],
    "--ray on a running cluster, 1 actor": ["--ray", "auto", "--actors", "1"],
}
# The runs that join a cluster started beforehand with `ray start --head` (a one-off, not a per-corpus cost).
ON_RUNNING_CLUSTER = {"--ray on a running cluster, 1 actor"}


def pick_recordings(count: int) -> list[Path]:
    """Every noisy dev recording, then the speech manifest's files spread evenly, ``count`` in all."""
    chosen = [
        p
        for name in ("real_noisy_dev", "valentini_dev/noisy", "valentini_test_dev/noisy")
        for p in sorted((DATA / name).rglob("*.flac"))
    ]
    with open(DATA / "speech" / "manifest.csv", newline="") as handle:
        speech = [DATA / "speech" / row["path"] for row in csv.DictReader(handle)]
    rest = count - len(chosen)
    chosen += [speech[round(i * len(speech) / rest)] for i in range(rest)]
    return chosen[:count]


def copy_corpus(files: list[Path], folder: Path) -> None:
    for path in files:
        target = folder / path.relative_to(DATA)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


TICKS = os.sysconf("SC_CLK_TCK")


def _watch_actors(stop: threading.Event, peaks: dict[int, int], cpu: dict[int, float]) -> None:
    """Peak RSS (kB) and CPU seconds (as last seen, every 0.2 s) of every Ray denoising actor while the run lasts."""
    while not stop.is_set():
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                if b"DenoiseActor" not in (status.parent / "cmdline").read_bytes():
                    continue
                line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
                fields = (status.parent / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, StopIteration):
                continue
            pid = int(status.parent.name)
            peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]))
            cpu[pid] = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
        stop.wait(0.2)


def ray_daemon_cpu_seconds() -> float:
    """CPU seconds so far of a running cluster's own processes (GCS, raylet, dashboard, log monitor...)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            command = (stat.parent / "cmdline").read_bytes()
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if b"ray" in command and b"DenoiseActor" not in command and b"hushnet.cli" not in command:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def start_cluster() -> None:
    """`ray start --head` with this machine's cores, as a user would once before many corpora."""
    subprocess.run(["ray", "stop", "--force"], capture_output=True)
    environment = dict(os.environ, RAY_worker_niceness="0")
    subprocess.run(
        ["ray", "start", "--head", f"--num-cpus={os.cpu_count()}", "--disable-usage-stats"],
        check=True,
        capture_output=True,
        env=environment,
    )


def timed(arguments: list[str]) -> dict:
    """Run one command in a fresh process: wall seconds, its own peak RSS and the actors' peaks."""
    # Ray starts its workers at nice 15 (so that its own daemons come first); on a shared machine that
    # would compare a starved actor with a local command at nice 0, so here they get the same priority.
    environment = dict(os.environ, PYTHONPATH=str(SRC), RAY_worker_niceness="0")
    peaks: dict[int, int] = {}
    cpu: dict[int, float] = {}
    stop = threading.Event()
    poller = threading.Thread(target=_watch_actors, args=(stop, peaks, cpu))
    poller.start()
    started = time.perf_counter()
    process = subprocess.Popen(arguments, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stop.set()
    poller.join()
    summary = process.stderr.read().strip().splitlines()[-1]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(arguments)} failed: {summary}")
    # CPU seconds: the process and the descendants it waited for; Ray's actors are counted from /proc.
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "actor_cpu_s": round(sum(cpu.values()), 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "summary": summary,
        "actor_peak_rss_mb": sorted(round(kb / 1024, 1) for kb in peaks.values()),
    }


def ray_start_seconds() -> float:
    """A local Ray's start and stop alone, in a fresh process (what every ``--ray`` run pays once)."""
    code = "import time, ray; t = time.perf_counter(); ray.init(log_to_driver=False); ray.shutdown(); print(time.perf_counter() - t)"
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1]
    )


def audio_seconds(folder: Path) -> float:
    import soundfile as sf

    return sum(sf.info(str(p)).duration for p in folder.rglob("*.flac"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--output", default=str(RESULTS / "corpus"))
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=list(RUNS),
        default=list(RUNS),
        help="measure only these runs and keep the others from the existing JSON (each run is saved as it ends)",
    )
    args = parser.parse_args()
    saved = Path(args.output + ".json")
    record = json.loads(saved.read_text()) if saved.is_file() and set(args.runs) != set(RUNS) else {"runs": {}}
    record.update(files=args.files, cpus=os.cpu_count())
    with tempfile.TemporaryDirectory(prefix="hushnet-corpus-") as scratch:
        source = Path(scratch) / "corpus"
        copy_corpus(pick_recordings(args.files), source)
        record["audio_hours"] = round(audio_seconds(source) / 3600, 4)
        if any(name.startswith("--ray") for name in args.runs):
            record["ray_start_s"] = round(ray_start_seconds(), 2)
        for name in args.runs:
            out = Path(scratch) / name.replace(" ", "_").replace(",", "").replace(":", "").replace("(", "").replace(
                ")", ""
            )
            started_at = time.strftime("%H:%M UTC", time.gmtime())
            load = [round(x, 2) for x in os.getloadavg()]
            command = [sys.executable, "-m", "hushnet.cli", "denoise", str(source), "-o", str(out), "-q", *RUNS[name]]
            if name in ON_RUNNING_CLUSTER:
                start_cluster()
                time.sleep(5)  # let the fresh cluster's start-up work settle before counting its daemons
                daemons_before = ray_daemon_cpu_seconds()
                try:
                    run = timed(command)
                    run["cluster_daemon_cpu_s"] = round(ray_daemon_cpu_seconds() - daemons_before, 1)
                finally:
                    subprocess.run(["ray", "stop", "--force"], capture_output=True)
            else:
                run = timed(command)
            run.update(
                started=started_at,
                load_average_at_start=load,
                files_per_s=round(args.files / run["wall_s"], 2),
                audio_h_per_h=round(record["audio_hours"] * 3600 / run["wall_s"], 1),
            )
            record["runs"][name] = run
            saved.write_text(json.dumps(record, indent=2) + "\n")
            print(name, run, file=sys.stderr)
    record["runs"] = {name: record["runs"][name] for name in RUNS if name in record["runs"]}
    derive(record)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output + ".json").write_text(json.dumps(record, indent=2) + "\n")
    Path(args.output + ".md").write_text(report(record))
    print(report(record))


def derive(record: dict) -> None:
    """Overheads against the local command (wall and CPU) and the cluster size on paper."""
    runs, files = record["runs"], record["files"]
    audio_seconds = record["audio_hours"] * 3600
    local1, one, two = runs["local --threads 1"], runs["--ray, 1 actor"], runs["--ray, 2 actors"]
    for run in runs.values():
        run["total_cpu_s"] = round(run["cpu_s"] + run["actor_cpu_s"], 1)
    record["overhead_wall_percent"] = round(100 * (one["wall_s"] / local1["wall_s"] - 1), 1)
    record["overhead_wall_per_file_ms"] = round(1000 * (one["wall_s"] - local1["wall_s"]) / files, 1)
    record["overhead_cpu_percent"] = round(100 * (one["total_cpu_s"] / local1["total_cpu_s"] - 1), 1)
    record["overhead_cpu_per_file_ms"] = round(1000 * (one["total_cpu_s"] - local1["total_cpu_s"]) / files, 1)
    record["two_vs_one_actor"] = round(one["wall_s"] / two["wall_s"], 2)
    running = runs.get("--ray on a running cluster, 1 actor")
    if running:
        with_daemons = running["total_cpu_s"] + running.get("cluster_daemon_cpu_s", 0.0)
        record["overhead_running_cpu_percent"] = round(100 * (running["total_cpu_s"] / local1["total_cpu_s"] - 1), 1)
        record["overhead_running_cpu_with_daemons_percent"] = round(100 * (with_daemons / local1["total_cpu_s"] - 1), 1)
        record["overhead_running_wall_percent"] = round(100 * (running["wall_s"] / local1["wall_s"] - 1), 1)
    # On paper: an actor that has a core to itself does audio / (its CPU seconds) real time.
    per_actor = audio_seconds / one["actor_cpu_s"]
    record["per_actor_realtime_on_a_core"] = round(per_actor, 1)
    record["cpus_for_10000_h_in_24_h"] = round(TARGET_HOURS / TARGET_DAYS_HOURS / per_actor, 1)


def report(record: dict) -> str:
    lines = [
        "# A corpus on Ray: `hushnet denoise SRC -o DST` vs `--ray`",
        "",
        f"`python benchmarks/ray_corpus.py`: {record['files']} real recordings ({record['audio_hours'] * 60:.1f} min of audio: every noisy file of "
        "real_noisy_dev, valentini_dev and valentini_test_dev, the rest spread over the speech sets), default model (hushnet-dfl, onnxruntime), "
        f"each command in a fresh process, one after the other, at nice 0 (Ray's workers too: `RAY_worker_niceness=0`, against Ray's default 15); `--ray` starts its own local Ray (start and stop alone: {record['ray_start_s']} s). "
        f"{record['cpus']} CPUs, **shared** (the lead's training and other sessions' tests ran at the same time; the load average, "
        "from `uptime`, is given per run). With the load far above the core count, wall times say more about the neighbours than "
        "about Ray; CPU seconds (the command's process tree, plus the actors read from /proc) much less so.",
        "",
        "| run | started | load average (1, 5, 15 min) | wall s | files/s | audio h/h | CPU s (process tree + actors) | peak RSS MB (process) "
        "| peak RSS MB per actor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in record["runs"].items():
        actors = ", ".join(str(x) for x in run["actor_peak_rss_mb"]) or "-"
        cpu = (
            f"{run['total_cpu_s']} ({run['cpu_s']} + {run['actor_cpu_s']})"
            if run["actor_cpu_s"]
            else f"{run['total_cpu_s']}"
        )
        load = ", ".join(str(x) for x in run["load_average_at_start"])
        lines.append(
            f"| {name} | {run['started']} | {load} | {run['wall_s']} | {run['files_per_s']} | {run['audio_h_per_h']} | {cpu} "
            f"| {run['peak_rss_mb']} | {actors} |"
        )
    lines += [
        "",
        f"- Overhead of `--ray` with 1 actor against the local command with `--threads 1` (Ray's start included): CPU "
        f"{record['overhead_cpu_percent']} % ({record['overhead_cpu_per_file_ms']} ms per file); wall {record['overhead_wall_percent']} % "
        f"({record['overhead_wall_per_file_ms']} ms per file).",
        *(
            [
                f"- Overhead of `--ray auto` with 1 actor on a cluster already running (`ray start --head` beforehand) against the "
                f"local command with `--threads 1`: CPU {record['overhead_running_cpu_percent']} % (command and actor); "
                f"{record['overhead_running_cpu_with_daemons_percent']} % counting the cluster's own daemons during the run "
                f"({record['runs']['--ray on a running cluster, 1 actor'].get('cluster_daemon_cpu_s')} s); wall "
                f"{record['overhead_running_wall_percent']} %."
            ]
            if "overhead_running_cpu_percent" in record
            else []
        ),
        f"- 2 actors against 1: {record['two_vs_one_actor']}x the throughput (wall time, runs minutes apart under a changing load: "
        "not a clean measure of scaling).",
        f"- On paper: an actor with a core of its own runs at {record['per_actor_realtime_on_a_core']}x real time (audio seconds per actor CPU "
        f"second, 1-actor run), so 10,000 h in 24 h ({TARGET_HOURS / TARGET_DAYS_HOURS:.0f} audio h/h) needs about "
        f"{record['cpus_for_10000_h_in_24_h']} such cores (one actor each), before any allowance for slower cores, SMT siblings or stragglers.",
        "",
        "Summary lines:",
        "",
    ]
    lines += [f"- {name}: `{run['summary'].split('; results in')[0]}`" for name, run in record["runs"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
