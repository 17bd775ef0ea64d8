"""What the CLI commands do, with their terminal output: progress, one line per failure, a summary."""

from __future__ import annotations

import sys
import time

import soundfile as sf
from tqdm import tqdm

from hushnet.audio import AudioError, output_extension
from hushnet.denoiser import Denoiser
from hushnet.files import find_inputs, plan_outputs


def denoise_files(denoiser: Denoiser, arguments: list[str], output: str | None, progress: bool = True) -> int:
    """Denoise every input; returns the exit status (0 when every file succeeded, 1 otherwise)."""
    inputs, missing = find_inputs(arguments)
    for message in missing:
        print(f"error: {message}", file=sys.stderr)
    try:
        jobs = plan_outputs(inputs, output, output_extension)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    done, failed = 0, len(missing)
    started = time.perf_counter()
    audio_seconds = 0.0
    for job in jobs:
        if job.error:
            print(f"error: {job.input}: {job.error}", file=sys.stderr)
            failed += 1
            continue
        bar = tqdm(total=0, unit="sample", unit_scale=True, desc=job.input.name[:30], leave=False, disable=not (progress and sys.stderr.isatty()), file=sys.stderr)
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            result = denoiser.denoise_file(job.input, job.output, progress=bar.update, on_start=lambda total: setattr(bar, "total", total) or bar.refresh())
        except (AudioError, OSError, sf.LibsndfileError, RuntimeError) as error:
            bar.close()
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            print(f"error: {job.input}: {reason}", file=sys.stderr)
            failed += 1
            continue
        bar.close()
        done += 1
        audio_seconds += result.seconds
        notes = f" ({'; '.join(result.notes)})" if result.notes else ""
        print(f"{job.input} -> {job.output}{notes}")
    elapsed = time.perf_counter() - started
    speed = f", {audio_seconds / elapsed:.1f}x real time" if done and elapsed > 0 else ""
    print(f"{done} file{'s' if done != 1 else ''} denoised, {failed} failed ({audio_seconds:.1f} s of audio in {elapsed:.1f} s{speed})", file=sys.stderr)
    return 1 if failed or not done else 0
