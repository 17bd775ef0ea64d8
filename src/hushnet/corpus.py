"""A whole corpus on a Ray cluster: ``hushnet denoise SRC -o DST --ray [ADDRESS]`` and ``hushnet evaluate --ray``.

The jobs are planned on the driver exactly as the local command plans them (inputs, names, output
checks); Ray Data then hands them, one file per block, to a pool of actors that each load the model
once (the light runtime: onnxruntime, no torch) and run the local command's per-file path,
``Denoiser.denoise_file``: read and decode in blocks, denoise, write atomically. The file is not decoded
into the object store first: the per-file path streams a long recording through memory-bounded
staging, and decoding costs a fraction of a per cent of the network's time.

Every output is renamed into place only when complete, so an output that exists is finished: a rerun
skips it, and a worker or node lost mid-file leaves only a temporary file (removed at the end) while
Ray retries the file on another actor. The results table ``DST/_hushnet_results.parquet`` holds one
row per input, however often a file was retried.

Ray is imported only when a job asks for it; the ``ray`` extra installs it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from hushnet.audio.formats import AUDIO_EXTENSIONS
from hushnet.errors import one_line
from hushnet.options import option

if TYPE_CHECKING:
    from hushnet.commands.denoise import DenoiseConfig
    from hushnet.evaluate import Pair
    from hushnet.files import Job

RESULTS_NAME = "_hushnet_results.parquet"
RESULT_COLUMNS = ("path", "output", "status", "error", "audio_seconds", "compute_seconds", "engine", "model", "notes")
# Logical CPUs an actor reserves per thread it runs. A full CPU per thread would let the pool take
# every CPU and leave none for Ray Data's tasks (a read stage beside two 1-CPU actors on 2 CPUs never
# starts); the OS shares the cores.
ACTOR_CPU_SHARE = 0.5
# Blocks of one file each balance the load and bound what a lost worker has to redo; past this many
# files, blocks hold several (the driver keeps one small object per block).
MAX_BLOCKS = 20_000
ADDRESS_HELP = (
    "run on Ray: no ADDRESS = the cluster RAY_ADDRESS or `ray start` names, else a new local one; "
    "auto, HOST:PORT or ray://HOST:10001 = an existing cluster (extra hushnet[ray])"
)


@dataclass
class ClusterOptions:
    """Where a corpus job runs when it runs on Ray; shared by ``denoise`` and ``evaluate``."""

    ray: str | None = option(None, value_optional="", metavar="ADDRESS", help=ADDRESS_HELP, show_default=False)
    actors: int | None = option(
        None,
        help="with --ray: workers, each loading the model once (default: the cluster's CPUs / --threads)",
        show_default=False,
    )


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RuntimeError('--ray needs Ray Data: pip install "hushnet[ray]"') from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected: to the cluster already joined in this process, else to ``address`` ("" = Ray's
    own choice: RAY_ADDRESS, a ``ray start`` cluster on this machine, else a new local one).
    A connection made here is closed on leaving."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address or None, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RuntimeError(
                f"cannot start or reach Ray at {address or 'the default address'}: {one_line(error)}"
            ) from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the job's own bar counts files and audio hours
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": ours is on
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def actor_pool(ray, actors: int | None, threads: int) -> tuple[int, float]:
    """(actors, logical CPUs each reserves): by default one actor per ``threads`` CPUs of the cluster."""
    if actors is not None and actors < 1:
        raise ValueError("--actors must be at least 1")
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return actors or max(1, int(cpus // threads)), threads * ACTOR_CPU_SHARE


class DenoiseActor:
    """One Ray actor: loads the model once, then runs the local per-file path on each row it is given."""

    def __init__(self, model: str, options: dict, float_output: bool) -> None:
        from hushnet.denoiser import Denoiser

        self.denoiser = Denoiser.from_pretrained(model, **options)
        self.model = model
        self.subtype = "FLOAT" if float_output else None

    def __call__(self, batch: dict) -> dict:
        rows = [self.denoise(str(path), str(output)) for path, output in zip(batch["path"], batch["output"])]
        return {column: [row[column] for row in rows] for column in RESULT_COLUMNS}

    def denoise(self, path: str, output: str) -> dict:
        """The results row of one file; any failure is that file's error, not the corpus's."""
        started = time.perf_counter()
        row = {
            "path": path,
            "output": output,
            "status": "ok",
            "error": "",
            "audio_seconds": math.nan,
            "engine": self.denoiser.engine_name,
            "model": self.model,
            "notes": "",
        }
        try:
            result = self.denoiser.denoise_file(path, output, subtype=self.subtype)
            row.update(audio_seconds=float(result.seconds), notes="; ".join(result.notes))
        except Exception as error:  # one bad file is one error row; the rest of the corpus goes on
            row.update(status="error", error=one_line(error))
        row["compute_seconds"] = time.perf_counter() - started
        return row


# --- the results table --------------------------------------------------------------------------------


def read_results(folder: Path) -> dict[str, dict]:
    """The rows of an earlier run's table in ``folder``, by input path (empty when there is none)."""
    path = folder / RESULTS_NAME
    if not path.is_file():
        return {}
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as error:  # an unreadable table is rewritten from this run's rows
        print(f"warning: {path}: {one_line(error)}; it is rewritten", file=sys.stderr)
        return {}
    return {row["path"]: row for row in rows if "path" in row}


def write_results(folder: Path, rows: dict[str, dict]) -> Path:
    """Write the table atomically (temporary file, then rename): a reader never sees half of it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.float64() if name.endswith("_seconds") else pa.string()) for name in RESULT_COLUMNS])
    table = pa.Table.from_pylist(
        [{name: row.get(name) for name in RESULT_COLUMNS} for row in rows.values()], schema=schema
    )
    target = folder / RESULTS_NAME
    temporary = folder / f".{RESULTS_NAME}.{os.getpid()}.tmp"
    pq.write_table(table, temporary)
    os.replace(temporary, target)
    return target


def _skipped_row(job: "Job", earlier: dict | None) -> dict:
    row = dict(
        earlier or {"audio_seconds": math.nan, "compute_seconds": math.nan, "engine": "", "model": "", "notes": ""}
    )
    row.update(path=_absolute(job.input), output=_absolute(job.output), status="skipped", error="")
    return row


def _error_row(job: "Job", message: str) -> dict:
    return {
        "path": _absolute(job.input),
        "output": _absolute(job.output) if job.output else "",
        "status": "error",
        "error": message,
        "audio_seconds": math.nan,
        "compute_seconds": 0.0,
        "engine": "",
        "model": "",
        "notes": "",
    }


def _remove_abandoned_temporaries(jobs: list["Job"]) -> None:
    """Temporary files a killed worker left beside this run's outputs (``AtomicAudioWriter`` names
    them ``.STEM.*EXT.tmp``); run only once no worker of this job is writing."""
    for job in jobs:
        if job.output is not None and job.output.parent.is_dir():
            for leftover in job.output.parent.glob(f".{job.output.stem}.*{job.output.suffix}.tmp"):
                leftover.unlink(missing_ok=True)


# --- hushnet denoise --ray -----------------------------------------------------------------------------


def check_destination(output: str | None) -> Path:
    """The folder a corpus job writes to; a job without one, or with a file name, is refused in one line."""
    if output is None or (Path(output).suffix.lower() in AUDIO_EXTENSIONS and not Path(output).is_dir()):
        raise ValueError("--ray writes a folder of outputs and its results table: give -o FOLDER")
    return Path(output)


def check_cluster_options(options: ClusterOptions) -> None:
    """Refuse, in one line before Ray starts, a pool of no actors and an address that is an input
    (``--ray`` takes an optional value, so ``--ray corpus/`` would read the folder as the address)."""
    if options.actors is not None and options.actors < 1:
        raise ValueError("--actors must be at least 1")
    address = options.ray
    if address and (Path(address).exists() or Path(address).suffix.lower() in AUDIO_EXTENSIONS):
        raise ValueError(
            f"--ray {address}: that is a file or folder, not a Ray address; put --ray after the inputs or give its ADDRESS"
        )


def _model_reference(model: str | None) -> str:
    """The model as workers should load it: a directory as an absolute path (on a shared file system),
    a shipped name as the name (each worker finds it in its own install)."""
    from hushnet.model_dir import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    return str(Path(model).resolve()) if Path(model).exists() else model


def _absolute(path: Path) -> str:
    """Workers run in folders of their own (``ray job submit --working-dir``): paths go to them absolute."""
    return os.path.abspath(path)


def denoise_on_ray(config: "DenoiseConfig", jobs: list["Job"], failed: int) -> int:
    """Run planned jobs on Ray; same exit status as the local command (1 when any file failed),
    2 when the job cannot start. ``failed``: inputs that already failed while planning."""
    from hushnet.denoiser import Denoiser
    from hushnet.model_dir import ModelError

    destination = check_destination(config.output)
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot make {destination} ({one_line(error)})", file=sys.stderr)
        return 2
    earlier = read_results(destination)
    results = {}
    for job in jobs:
        if job.error is not None:
            results[_absolute(job.input)] = _error_row(job, job.error)
            print(f"error: {job.input}: {job.error}", file=sys.stderr)
        elif job.output.exists():  # renamed into place only when complete: an existing output is finished
            results[_absolute(job.input)] = _skipped_row(job, earlier.get(_absolute(job.input)))
    work = [job for job in jobs if _absolute(job.input) not in results]
    options = config.denoiser_options() | {"threads": config.threads or 1}
    model = _model_reference(config.model)
    started = time.perf_counter()
    if work:
        try:  # the local command's one-line refusals (model, engine, options), before any worker starts
            Denoiser.from_pretrained(model, **options)
        except (ModelError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        try:
            with ray_session(config.ray) as ray:
                _run_pool(ray, config, work, model, options, results)
        except KeyboardInterrupt:
            _write_table(destination, earlier | results)
            raise
        except Exception as error:  # Ray missing or unreachable, or the pipeline itself failed (not one file)
            _write_table(destination, earlier | results)
            print(
                f"error: {one_line(error) if isinstance(error, RuntimeError) else 'the Ray pipeline failed: ' + one_line(error)}",
                file=sys.stderr,
            )
            return 2
        finally:
            _remove_abandoned_temporaries(work)
    for job in work:  # every input accounted for, even one the pipeline never returned
        results.setdefault(_absolute(job.input), _error_row(job, "no result came back from the cluster"))
    table = _write_table(destination, earlier | results)
    status = _summarize(list(results.values()), failed, time.perf_counter() - started, table)
    return status if table is not None else max(status, 1)


def _write_table(destination: Path, rows: dict[str, dict]) -> Path | None:
    try:
        return write_results(destination, rows)
    except OSError as error:
        print(f"error: cannot write the results table in {destination} ({one_line(error)})", file=sys.stderr)
        return None


def _run_pool(
    ray, config: "DenoiseConfig", work: list["Job"], model: str, options: dict, rows: dict[str, dict]
) -> None:
    """Add to ``rows`` the row of each file in ``work`` as a pool of actors returns it; each input
    once, whatever was retried."""
    from tqdm import tqdm

    size, cpus = actor_pool(ray, config.actors, options["threads"])
    items = [{"path": _absolute(job.input), "output": _absolute(job.output)} for job in work]
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS)).map_batches(
        DenoiseActor,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=size),
        num_cpus=cpus,
        fn_constructor_args=(model, options, config.float_output),
    )
    bar = tqdm(
        total=len(items),
        unit="file",
        desc=f"denoising on {size} actor{'s' if size != 1 else ''}",
        disable=config.quiet or not sys.stderr.isatty(),
        file=sys.stderr,
    )
    hours = 0.0
    with bar:
        for row in dataset.iter_rows():
            if row["path"] in rows and rows[row["path"]]["status"] == "ok":
                continue  # a retried file that had already come back: keep one row
            rows[row["path"]] = row
            if row["status"] == "error":
                print(f"error: {row['path']}: {row['error']}", file=sys.stderr)
            else:  # the local command's line per file
                hours += row["audio_seconds"] / 3600
                print(f"{row['path']} -> {row['output']}" + (f" ({row['notes']})" if row["notes"] else ""))
            bar.update(1)
            bar.set_postfix_str(f"{hours:.2f} h of audio", refresh=False)


def _summarize(rows: list[dict], failed: int, elapsed: float, table: Path | None) -> int:
    """The local command's summary line (plus what was skipped); the exit status."""
    done = [row for row in rows if row["status"] == "ok"]
    skipped = sum(row["status"] == "skipped" for row in rows)
    failed += sum(row["status"] == "error" for row in rows)
    audio = sum(row["audio_seconds"] for row in done)
    speed = f", {audio / elapsed:.1f}x real time" if done and elapsed > 0 else ""
    also = f", {skipped} skipped (already denoised)" if skipped else ""
    where = f"; results in {table}" if table is not None else ""
    print(
        f"{len(done)} file{'s' if len(done) != 1 else ''} denoised, {failed} failed{also} ({audio:.1f} s of audio in {elapsed:.1f} s{speed}){where}",
        file=sys.stderr,
    )
    return 1 if failed or not (done or skipped) else 0


# --- hushnet evaluate --ray ----------------------------------------------------------------------------


def _score_batch(batch: dict, with_dnsmos: bool) -> dict:
    from hushnet.evaluate import Pair, score_pair

    rows = []
    for index, name, clean, noisy, enhanced in zip(
        batch["index"], batch["name"], batch["clean"], batch["noisy"], batch["enhanced"]
    ):
        pair = Pair(str(name), *(Path(p) if p else None for p in (clean, noisy, enhanced)))
        rows.append(
            json.dumps(score_pair(pair, with_dnsmos=with_dnsmos))
        )  # rows differ in columns: one JSON string each
    return {"index": list(batch["index"]), "row": rows}


def score_on_ray(
    ray,
    pairs: list["Pair"],
    with_dnsmos: bool = False,
    tasks: int | None = None,
    progress: Callable[[], None] | None = None,
) -> list[dict]:
    """``evaluate.score_pairs`` spread over the cluster (one task per pair, one CPU each); rows in the order of ``pairs``."""
    items = [
        {"index": i, "name": p.name, **{role: str(getattr(p, role) or "") for role in ("clean", "noisy", "enhanced")}}
        for i, p in enumerate(pairs)
    ]
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS)).map_batches(
        _score_batch, batch_size=1, fn_kwargs={"with_dnsmos": with_dnsmos}, num_cpus=1, concurrency=tasks
    )
    rows: dict[int, dict] = {}
    for result in dataset.iter_rows():
        if int(result["index"]) not in rows and progress:
            progress()
        rows[int(result["index"])] = json.loads(result["row"])
    return [
        rows.get(i, {"name": pair.name, "error": "no result came back from the cluster"})
        for i, pair in enumerate(pairs)
    ]
