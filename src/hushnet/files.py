"""Which files a command works on, and where each result goes."""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from hushnet.audio.formats import AUDIO_EXTENSIONS, WRITABLE_EXTENSIONS
from hushnet.temporaries import check_folder_writable, clean_stale_partials

OUTPUT_SUFFIX = "_denoised"
MANIFEST_EXTENSIONS = {".csv", ".parquet"}


@dataclass
class Job:
    """One input and the output it is to be written to; ``error`` is set when it cannot run."""

    input: Path
    output: Path | None
    error: str | None = None


class Input(NamedTuple):
    """A file to work on, the folder it was found under (None for a file or glob), and whether it was
    found by expanding a folder or glob rather than named."""

    path: Path
    root: Path | None
    expanded: bool = False


def find_inputs(arguments: list[str]) -> tuple[list[Input], list[str]]:
    """Expand files, folders (recursively, audio extensions only), globs and manifests (CSV/Parquet).

    Returns ([inputs], [arguments that matched nothing]).
    """
    found: list[Input] = []
    missing: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.suffix.lower() in MANIFEST_EXTENSIONS and path.is_file():
            listed, absent = manifest_inputs(path)
            found.extend(listed)
            missing.extend(absent)
        elif path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
            )
            found.extend(Input(f, path, True) for f in files)
            if not files:
                missing.append(f"{argument}: no audio files in this folder")
        elif path.exists():
            found.append(Input(path, None))
        elif glob.has_magic(argument):
            matches = sorted(Path(m) for m in glob.glob(argument, recursive=True) if Path(m).is_file())
            found.extend(Input(m, None, True) for m in matches)
            if not matches:
                missing.append(f"{argument}: no files match")
        else:
            missing.append(f"{argument}: no such file or folder")
    return found, missing


def is_own_output(path: Path) -> bool:
    """Whether ``path`` is named as this program names its results beside the inputs."""
    return path.stem.endswith(OUTPUT_SUFFIX)


def without_own_outputs(inputs: list[Input]) -> tuple[list[Input], list[Input]]:
    """(inputs to work on, earlier results found by expanding a folder or glob): re-running a command
    over a folder must not denoise its own results again. A result named explicitly is kept."""
    kept = [i for i in inputs if not (i.expanded and is_own_output(i.path))]
    return kept, [i for i in inputs if i.expanded and is_own_output(i.path)]


def distinct_inputs(inputs: list[Input]) -> list[Input]:
    """``inputs`` with a file named twice (or found twice, by a folder and a glob) kept once."""
    seen: set[str] = set()
    kept = []
    for item in inputs:
        key = _identity(item.path)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def outside_folder(inputs: list[Input], folder: str | None) -> tuple[list[Input], list[Input]]:
    """(inputs, results skipped): files found by expanding a folder or glob that lie inside the output
    ``folder`` are earlier results, not inputs (``denoise in/ -o in/clean`` run twice)."""
    if folder is None:
        return inputs, []
    root = _identity(Path(folder))
    inside = [i for i in inputs if i.expanded and (_identity(i.path) + os.sep).startswith(root + os.sep)]
    return [i for i in inputs if i not in inside], inside


def output_names_a_file(output: str) -> bool:
    """Whether ``-o output`` names a file (an extension, not an existing folder, no trailing slash)."""
    return bool(Path(output).suffix) and not Path(output).is_dir() and not output.endswith(("/", os.sep))


def plan_outputs(inputs: list[Input], output: str | None, extension_for: Callable[[Path], str]) -> list[Job]:
    """Decide each output path.

    - no ``output``: beside the input, as ``NAME_denoised.EXT``;
    - one input file and ``output`` with an audio extension (not an existing folder): that file;
    - otherwise ``output`` is a folder: inputs found in a folder keep their relative path under it.
    An output that is an input, or that two inputs would share, is an error for that job.
    """
    names_a_file = output is not None and output_names_a_file(output)
    if names_a_file and Path(output).suffix.lower() not in AUDIO_EXTENSIONS:
        raise ValueError(
            f"-o {output} names a {Path(output).suffix} file; results are audio (.wav, .flac, ...): "
            "name one, or end a folder name with /"
        )
    if names_a_file and len(inputs) > 1:
        raise ValueError(f"-o {output} names one file, but there are {len(inputs)} inputs: give a folder")
    single_file = names_a_file and len(inputs) == 1
    all_inputs = {_identity(path) for path, *_ in inputs}
    taken: dict[str, Path] = {}
    jobs = []
    for path, root, *_ in inputs:
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


def shown(path: Path) -> str:
    """``path`` as printed: as is, or quoted with escapes when it holds a newline or another control
    character (which would break a line-per-file listing), as ``ls`` and ``git`` do."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _identity(path: Path) -> str:
    """A key equal for two spellings of the same file (existing or not)."""
    return os.path.normcase(os.path.realpath(path))


class CreatedFolders:
    """Folders made for outputs, so that a command that fails leaves none of them behind empty."""

    def __init__(self) -> None:
        self.created: list[Path] = []

    def make(self, folder: Path) -> None:
        """``mkdir -p folder``, remembering each level that did not exist."""
        missing = []
        for level in [folder, *folder.parents]:
            if level.exists():
                break
            missing.append(level)
        for level in reversed(missing):
            level.mkdir()
            self.created.append(level)

    def remove_empty(self) -> None:
        """Remove the folders made here that stayed empty, deepest first."""
        for level in reversed(self.created):
            try:
                level.rmdir()
            except OSError:  # not empty (a result is in it), or gone
                pass
        self.created = []


def check_writable(target: Path, folders: CreatedFolders | None = None) -> str | None:
    """Why ``target`` cannot be written (one line naming the folder), or None. Run before any work:
    a long file must not be denoised only to find that its result has nowhere to go. Creates
    nothing: a missing folder is made when its first result is complete (so that a command killed
    before then leaves no empty folder). Hidden partial results of dead processes there are removed.
    ``folders`` is accepted for compatibility and unused."""
    if target.suffix.lower() not in WRITABLE_EXTENSIONS:
        return f"cannot write {target.suffix or 'extension-less'} files ({target}); use .wav or .flac"
    folder = target.parent
    try:
        check_folder_writable(folder)
    except OSError as error:
        return f"cannot write to {folder} ({error.strerror or error})"
    if folder.is_dir():
        clean_stale_partials(folder)
    return None


def _manifest_paths(manifest: Path) -> list[str]:
    """The ``path`` column of a CSV or Parquet manifest (or its only column)."""
    if manifest.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(
                f'{manifest}: reading a Parquet manifest needs pyarrow: pip install "hushnet[ray]"'
            ) from None
        try:
            table = pq.read_table(manifest)
        except Exception as error:  # pyarrow raises its own types for a damaged file
            raise ValueError(f"{manifest}: not a readable Parquet file ({error})") from None
        columns = {name: table.column(name).to_pylist() for name in table.column_names}
    else:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
        columns = {name: [row[name] for row in rows] for name in (rows[0] if rows else {})}
    column = "path" if "path" in columns else next(iter(columns)) if len(columns) == 1 else None
    if column is None:
        raise ValueError(f"{manifest}: a manifest needs a 'path' column (or a single column of paths)")
    return [str(value).strip() for value in columns[column] if value is not None and str(value).strip()]


def manifest_inputs(manifest: Path) -> tuple[list[Input], list[str]]:
    """The files a manifest lists, relative paths read from its folder; ([inputs], [lines about missing ones]).
    A listed file under the manifest's folder keeps its relative path under an output folder."""
    base = manifest.parent
    try:
        listed = _manifest_paths(manifest)
    except (ValueError, OSError, UnicodeDecodeError, csv.Error) as error:
        return [], [str(error) if isinstance(error, ValueError) else f"{manifest}: {error}"]
    found, missing = [], []
    for entry in listed:
        path = base / entry  # an absolute entry stays itself
        if not path.is_file():
            missing.append(f"{entry} (listed in {manifest}): no such file")
            continue
        inside = not Path(entry).is_absolute() and ".." not in Path(entry).parts
        found.append(Input(path, base if inside else None))  # listed by name: kept even if named like a result
    if not listed:
        missing.append(f"{manifest}: the manifest lists no files")
    return found, missing
