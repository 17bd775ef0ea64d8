"""``hushnet denoise``: files, folders and globs through a :class:`~hushnet.denoiser.Denoiser`, with
progress, one line per failure and a summary. Every output is checked before any file is denoised."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hushnet.audio.formats import output_extension
from hushnet.corpus import ClusterOptions, check_cluster_options, check_destination, denoise_on_ray
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
    from tqdm import tqdm  # only on a terminal: the import costs about 40 ms of start-up

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
    elapsed = time.perf_counter() - started
    speed = f", {audio_seconds / elapsed:.1f}x real time" if done and elapsed > 0 else ""
    print(
        f"{done} file{'s' if done != 1 else ''} denoised, {failed} failed ({audio_seconds:.1f} s of audio in {elapsed:.1f} s{speed})",
        file=sys.stderr,
    )
    return 1 if failed or not done else 0
