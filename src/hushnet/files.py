"""Which files a command works on, and where each result goes."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from hushnet.audio import AUDIO_EXTENSIONS

OUTPUT_SUFFIX = "_denoised"


@dataclass
class Job:
    """One input and the output it is to be written to; ``error`` is set when it cannot run."""

    input: Path
    output: Path | None
    error: str | None = None


def find_inputs(arguments: list[str]) -> tuple[list[tuple[Path, Path | None]], list[str]]:
    """Expand files, folders (recursively, audio extensions only) and globs.

    Returns ([(file, folder it was found under, or None)], [arguments that matched nothing]).
    """
    found: list[tuple[Path, Path | None]] = []
    missing: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."))
            found.extend((f, path) for f in files)
            if not files:
                missing.append(f"{argument}: no audio files in this folder")
        elif path.exists():
            found.append((path, None))
        elif glob.has_magic(argument):
            matches = sorted(Path(m) for m in glob.glob(argument, recursive=True) if Path(m).is_file())
            found.extend((m, None) for m in matches)
            if not matches:
                missing.append(f"{argument}: no files match")
        else:
            missing.append(f"{argument}: no such file or folder")
    return found, missing


def plan_outputs(inputs: list[tuple[Path, Path | None]], output: str | None, extension_for: "callable[[Path], str]") -> list[Job]:
    """Decide each output path.

    - no ``output``: beside the input, as ``NAME_denoised.EXT``;
    - one input file and ``output`` with an audio extension (not an existing folder): that file;
    - otherwise ``output`` is a folder: inputs found in a folder keep their relative path under it.
    An output that is an input, or that two inputs would share, is an error for that job.
    """
    names_a_file = output is not None and Path(output).suffix.lower() in AUDIO_EXTENSIONS and not Path(output).is_dir()
    if names_a_file and len(inputs) > 1:
        raise ValueError(f"-o {output} names one file, but there are {len(inputs)} inputs: give a folder")
    single_file = names_a_file and len(inputs) == 1
    all_inputs = {_identity(path) for path, _ in inputs}
    taken: dict[str, Path] = {}
    jobs = []
    for path, root in inputs:
        extension = extension_for(path)
        if single_file:
            target = Path(output)
        elif output is None:
            target = path.with_name(f"{path.stem}{OUTPUT_SUFFIX}{extension}")
        else:
            relative = path.relative_to(root) if root is not None else Path(path.name)
            target = Path(output) / relative.with_suffix(extension)
        job = Job(path, target)
        key = _identity(target)
        if key in all_inputs:
            job.error = f"output {target} is an input file; refusing to overwrite it"
        elif key in taken:
            job.error = f"output {target} would also be written for {taken[key]}; give each input its own name"
        else:
            taken[key] = path
        jobs.append(job)
    return jobs


def _identity(path: Path) -> str:
    """A key equal for two spellings of the same file (existing or not)."""
    return os.path.normcase(os.path.realpath(path))
