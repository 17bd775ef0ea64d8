"""``hushnet denoise``: files, folders and globs through a :class:`~hushnet.denoiser.Denoiser`, with
progress, one line per failure and a summary, here or (``--ray``) on a pool of Ray actors
(:mod:`hushnet.corpus`). Every output is checked before any file is denoised."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hushnet.audio.formats import AUDIO_EXTENSIONS, output_extension
from hushnet.corpus import (
    absolute,
    actor_pool,
    denoised_rows,
    error_row,
    model_reference,
    ray_session,
    read_results,
    remove_abandoned_temporaries,
    skipped_row,
    write_results,
)
from hushnet.errors import one_line
from hushnet.files import (
    OUTPUT_SUFFIX,
    CreatedFolders,
    Job,
    check_writable,
    distinct_inputs,
    find_inputs,
    output_names_a_file,
    outside_folder,
    plan_outputs,
    shown,
    without_own_outputs,
)
from hushnet.options import DenoiserOptions, check_runtime, option
from hushnet.temporaries import clean_stale_scratch

if TYPE_CHECKING:
    from hushnet.denoiser import Denoiser


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


@dataclass
class DenoiseConfig(DenoiserOptions, ClusterOptions):
    """One ``hushnet denoise`` job."""

    inputs: list[str] = option(
        default_factory=list, positional=True, help="audio files, folders (searched recursively) or glob patterns"
    )
    output: str | None = option(
        None,
        short="-o",
        help="output file (one input) or folder (default: NAME_denoised.EXT beside each input)",
        show_default=False,
    )
    float_output: bool = option(False, flag="--float", help="write 32-bit float WAV instead of the input's format")
    quiet: bool = option(False, short="-q", help="no progress bar")
    verbose: bool = option(
        False, short="-v", help="say which engine and precision ran, and how long loading and compiling took"
    )


def run(config: DenoiseConfig) -> int:
    """Denoise every input with the model ``config.model`` names; the exit status: 0 when every file
    succeeded, 1 when any failed, 2 for a job that cannot start."""
    # No torch here: with the onnx engine, denoising runs on onnxruntime alone.
    from hushnet.denoiser import Denoiser

    try:
        check_runtime(config)
        options = config.denoiser_options()
        if config.ray is not None:
            check_cluster_options(config)
            check_destination(config.output)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    clean_stale_scratch()  # what a killed run left in the temp folder
    folders = CreatedFolders()
    try:
        jobs, failed = _plan(config, folders)
        if jobs is None:
            return 2
        if config.ray is not None:  # a corpus on Ray: the same plan, then a pool of workers
            return denoise_on_ray(config, jobs, failed)
        denoiser = None
        if any(job.error is None for job in jobs):  # nothing to load when no job can run
            try:
                denoiser = Denoiser.from_pretrained(config.model, **options)
            except ValueError as error:  # ModelError, AudioError: one line
                print(f"error: {error}", file=sys.stderr)
                return 2
            if config.verbose:
                print(describe_engine(denoiser), file=sys.stderr)
        return denoise_jobs(denoiser, jobs, failed, progress=not config.quiet, float_output=config.float_output)
    finally:
        folders.remove_empty()


def describe_engine(denoiser: "Denoiser") -> str:
    """One line: the engine and precision that run, why, and the seconds spent loading and compiling."""
    engine = denoiser.engine
    choice = getattr(engine, "choice", None) or f"{engine.name} {getattr(engine, 'precision', 'float32')}"
    parts = [f"engine: {choice}", f"threads: {engine.threads if getattr(engine, 'threads', None) else 'all cores'}"]
    if hasattr(engine, "load_seconds"):
        parts.append(f"model loaded in {engine.load_seconds:.2f} s")
    compiled = getattr(engine, "compile_seconds", {})
    if compiled:
        parts.append(
            "compiled " + ", ".join(f"[1, {length}] in {seconds:.2f} s" for length, seconds in compiled.items())
        )
    return "; ".join(parts)


def _plan(config: DenoiseConfig, folders: CreatedFolders) -> tuple[list[Job] | None, int]:
    """The jobs (None for a job that cannot start) and how many inputs already failed; output folders
    are made and probed here, so that nothing is denoised into a place it cannot be written."""
    inputs, missing = find_inputs(config.inputs)
    for message in missing:
        print(f"error: {message}", file=sys.stderr)
    inputs = distinct_inputs(inputs)
    if config.output is not None and not output_names_a_file(config.output):
        inputs, inside = outside_folder(inputs, config.output)
        if inside:
            print(
                f"skipping {len(inside)} file{'s' if len(inside) != 1 else ''} inside the output folder {config.output} "
                "(earlier results, not inputs)",
                file=sys.stderr,
            )
    if config.output is None:
        inputs, earlier = without_own_outputs(inputs)
        if earlier:
            print(
                f"skipping {len(earlier)} earlier result{'s' if len(earlier) != 1 else ''} (*{OUTPUT_SUFFIX}.*) found in folders or globs; "
                "name such a file to denoise it again",
                file=sys.stderr,
            )
    try:
        jobs = plan_outputs(inputs, config.output, (lambda path: ".wav") if config.float_output else output_extension)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return None, 0
    for job in jobs:
        if job.error is None:
            job.error = check_writable(job.output, folders)
    return jobs, len(missing)


def _progress_bar(name: str):
    from tqdm import tqdm  # only on a terminal: its import is a visible part of start-up (docs/speed.md)

    return tqdm(total=0, unit="sample", unit_scale=True, desc=name[:30], leave=False, file=sys.stderr)


def denoise_jobs(
    denoiser: "Denoiser | None", jobs: list[Job], failed: int = 0, progress: bool = True, float_output: bool = False
) -> int:
    """Run planned jobs; returns the exit status (0 when every file succeeded, 1 otherwise).

    ``float_output`` writes 32-bit float WAV (no quantization noise: what scoring should see).
    """
    from hushnet.denoiser import DENOISE_ERRORS

    done = 0
    started = time.perf_counter()
    audio_seconds = 0.0
    for job in jobs:
        if job.error:
            print(f"error: {job.input}: {job.error}", file=sys.stderr)
            failed += 1
            continue
        bar = _progress_bar(job.input.name) if progress and sys.stderr.isatty() else None
        try:
            result = denoiser.denoise_file(
                job.input,
                job.output,
                progress=bar.update if bar else None,
                on_start=(lambda total: setattr(bar, "total", total) or bar.refresh()) if bar else None,
                subtype="FLOAT" if float_output else None,
            )
        except DENOISE_ERRORS as error:
            print(f"error: {job.input}: {one_line(error)}", file=sys.stderr)
            failed += 1
            continue
        finally:
            if bar is not None:
                bar.close()
        done += 1
        audio_seconds += result.seconds
        notes = f" ({'; '.join(result.notes)})" if result.notes else ""
        print(f"{shown(job.input)} -> {shown(job.output)}{notes}")
    print(summary(done, failed, audio_seconds, time.perf_counter() - started), file=sys.stderr)
    return 1 if failed or not done else 0


def summary(
    done: int, failed: int, audio_seconds: float, elapsed: float, skipped: int = 0, table: Path | None = None
) -> str:
    """The command's last line, local or on Ray: files denoised and failed (and skipped), audio, speed,
    and where the results table is."""
    speed = f", {audio_seconds / elapsed:.1f}x real time" if done and elapsed > 0 else ""
    also = f", {skipped} skipped (already denoised)" if skipped else ""
    where = f"; results in {table}" if table is not None else ""
    return (
        f"{done} file{'s' if done != 1 else ''} denoised, {failed} failed{also} "
        f"({audio_seconds:.1f} s of audio in {elapsed:.1f} s{speed}){where}"
    )


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
            results[absolute(job.input)] = error_row(job, job.error)
            print(f"error: {job.input}: {job.error}", file=sys.stderr)
        elif job.output.exists():  # renamed into place only when complete: an existing output is finished
            results[absolute(job.input)] = skipped_row(job, earlier.get(absolute(job.input)))
    work = [job for job in jobs if absolute(job.input) not in results]
    options = config.denoiser_options() | {"threads": config.threads or 1}
    model = model_reference(config.model)
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
            remove_abandoned_temporaries(work)
    for job in work:  # every input accounted for, even one the pipeline never returned
        results.setdefault(absolute(job.input), error_row(job, "no result came back from the cluster"))
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
    """Add to ``rows`` the row of each file in ``work`` as the pool returns it, with the local
    command's line per file and one progress bar over files."""
    from tqdm import tqdm

    size, cpus = actor_pool(ray, config.actors, options["threads"])
    bar = tqdm(
        total=len(work),
        unit="file",
        desc=f"denoising on {size} actor{'s' if size != 1 else ''}",
        disable=config.quiet or not sys.stderr.isatty(),
        file=sys.stderr,
    )
    hours = 0.0
    with bar:
        for row in denoised_rows(ray, work, model, options, config.float_output, size, cpus):
            rows[row["path"]] = row
            if row["status"] == "error":
                print(f"error: {row['path']}: {row['error']}", file=sys.stderr)
            else:
                hours += row["audio_seconds"] / 3600
                print(f"{row['path']} -> {row['output']}" + (f" ({row['notes']})" if row["notes"] else ""))
            bar.update(1)
            bar.set_postfix_str(f"{hours:.2f} h of audio", refresh=False)


def _summarize(rows: list[dict], failed: int, elapsed: float, table: Path | None) -> int:
    """Print the summary line of a run on Ray; the exit status."""
    done = [row for row in rows if row["status"] == "ok"]
    skipped = sum(row["status"] == "skipped" for row in rows)
    failed += sum(row["status"] == "error" for row in rows)
    audio = sum(row["audio_seconds"] for row in done)
    print(summary(len(done), failed, audio, elapsed, skipped=skipped, table=table), file=sys.stderr)
    return 1 if failed or not (done or skipped) else 0
