"""The command side of both training commands: build the job from flags, run it, one line per bad input."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from hushnet.audio import AudioError, one_line
from hushnet.cache import use_compile_cache
from hushnet.options import JobOptions, check_runtime
from hushnet.training import distrib
from hushnet.training.skeleton import check_job_counts, job_config


def run_job(
    config_class: type,
    train: Callable[..., Path],
    options: JobOptions,
    overrides: dict[str, Any],
    done: Callable[[Path], str],
) -> int:
    """Build the job, run ``train``, print ``done(run folder)`` once (rank 0); one line per bad input."""
    use_compile_cache()  # before anything compiles (torch reads it when it first needs its cache)
    try:
        config = job_config(config_class, options, overrides)
        check_job_counts(config)
        check_runtime(config)
        folder = train(config, resume=options.resume, progress=not options.quiet)
    except (
        FileNotFoundError,
        FileExistsError,
        ValueError,
        AudioError,
    ) as error:  # JSON and model errors are ValueErrors
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    if distrib.is_main():
        print(done(folder))
    return 0
