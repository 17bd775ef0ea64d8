"""The Ray pool behind ``hushnet denoise SRC -o DST --ray [ADDRESS]`` and ``hushnet evaluate --ray``
(the commands themselves, their flags, lines and exit codes, are in :mod:`hushnet.commands`).

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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from hushnet.errors import one_line

if TYPE_CHECKING:
    from hushnet.evaluate import Pair
    from hushnet.files import Job

log = logging.getLogger(__name__)
RESULTS_NAME = "_hushnet_results.parquet"
RESULT_COLUMNS = ("path", "output", "status", "error", "audio_seconds", "compute_seconds", "engine", "model", "notes")
# Logical CPUs an actor reserves per thread it runs. A full CPU per thread would let the pool take
# every CPU and leave none for Ray Data's tasks (a read stage beside two 1-CPU actors on 2 CPUs never
# starts); the OS shares the cores.
ACTOR_CPU_SHARE = 0.5
# Blocks of one file each balance the load and bound what a lost worker has to redo; past this many
# files, blocks hold several (the driver keeps one small object per block).
MAX_BLOCKS = 20_000


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
        log.warning("warning: %s: %s; it is rewritten", path, one_line(error))
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


def skipped_row(job: "Job", earlier: dict | None) -> dict:
    """The row of an input whose output is already complete (keeping the ``earlier`` run's figures)."""
    row = dict(
        earlier or {"audio_seconds": math.nan, "compute_seconds": math.nan, "engine": "", "model": "", "notes": ""}
    )
    row.update(path=absolute(job.input), output=absolute(job.output), status="skipped", error="")
    return row


def error_row(job: "Job", message: str) -> dict:
    """The row of an input that failed with ``message``."""
    return {
        "path": absolute(job.input),
        "output": absolute(job.output) if job.output else "",
        "status": "error",
        "error": message,
        "audio_seconds": math.nan,
        "compute_seconds": 0.0,
        "engine": "",
        "model": "",
        "notes": "",
    }


def remove_abandoned_temporaries(jobs: list["Job"]) -> None:
    """Temporary files a killed worker left beside this run's outputs (``AtomicAudioWriter`` names
    them ``.STEM.*EXT.tmp``); run only once no worker of this job is writing."""
    for job in jobs:
        if job.output is not None and job.output.parent.is_dir():
            for leftover in job.output.parent.glob(f".{job.output.stem}.*{job.output.suffix}.tmp"):
                leftover.unlink(missing_ok=True)


def model_reference(model: str | None) -> str:
    """The model as workers should load it: a directory as an absolute path (on a shared file system),
    a shipped name as the name (each worker finds it in its own install)."""
    from hushnet.model_dir import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    return str(Path(model).resolve()) if Path(model).exists() else model


def absolute(path: Path) -> str:
    """Workers run in folders of their own (``ray job submit --working-dir``): paths go to them absolute."""
    return os.path.abspath(path)


def denoised_rows(
    ray, jobs: list["Job"], model: str, options: dict, float_output: bool, actors: int, cpus: float
) -> Iterator[dict]:
    """The results row of each job as a pool of ``actors`` actors (``cpus`` logical CPUs each) returns
    it, each input once however often Ray retried it."""
    items = [{"path": absolute(job.input), "output": absolute(job.output)} for job in jobs]
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS)).map_batches(
        DenoiseActor,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus,
        fn_constructor_args=(model, options, float_output),
    )
    finished = set()
    for row in dataset.iter_rows():
        if row["path"] in finished:
            continue  # a retried file that had already come back: keep one row
        if row["status"] == "ok":
            finished.add(row["path"])
        yield row


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
