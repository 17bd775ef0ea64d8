"""Every temporary thing the program makes, named so that one of a dead process can be recognised and
removed, and results that appear only when complete.

- Scratch folders in the temp folder are ``hushnet-<kind>-<pid>-XXXX`` (:func:`scratch_folder`);
  :func:`clean_stale_scratch` removes those whose process is gone (a ``kill -9`` runs no cleanup).
- A result is written as a :class:`PendingFile`: an unnamed file (``O_TMPFILE``) in the nearest
  existing folder, linked into place (folders made then) only once complete, so that a crash or
  ``kill -9`` leaves neither a partial file nor an empty folder. Where the filesystem has no unnamed
  files it is a hidden ``.NAME.hushnet-<pid>-XXXX.EXT.tmp`` beside the result, which
  :func:`clean_stale_partials` removes once its process is gone.
- Every atomic write goes through here: audio results (:class:`PendingFile`), model directories and
  ONNX exports (:func:`atomic_write`, :func:`write_text`), checkpoints (:class:`PendingFolder`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

# Every scratch-folder kind, so that the cleaner knows them all.
SCRATCH_KINDS = ("stage", "decode", "serve")
_SCRATCH = re.compile(r"^hushnet-(?:%s)-(\d+)-" % "|".join(SCRATCH_KINDS))
_PARTIAL = re.compile(r"^\..*\.hushnet-(\d+)-[^.]*\..*tmp$")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (someone else's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(pid: str) -> bool:
    return int(pid) != os.getpid() and not process_alive(int(pid))


def scratch_folder(kind: str, root: str | os.PathLike | None = None) -> Path:
    """A new private folder ``hushnet-<kind>-<pid>-XXXX`` in the temp folder (stale ones removed first)."""
    assert kind in SCRATCH_KINDS, kind
    clean_stale_scratch(root)
    return Path(tempfile.mkdtemp(prefix=f"hushnet-{kind}-{os.getpid()}-", dir=root))


def clean_stale_scratch(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove scratch folders of processes that are gone; returns them."""
    removed = []
    folder = Path(root or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            match = _SCRATCH.match(path.name)
            if match and _stale(match.group(1)) and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def clean_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove hidden partial results of dead processes in ``folder``; returns them."""
    removed = []
    with contextlib.suppress(OSError):
        for path in Path(folder).iterdir():
            match = _PARTIAL.match(path.name)
            if not match or not _stale(match.group(1)) or path.is_symlink():
                continue
            if path.is_dir():  # a checkpoint folder (PendingFolder)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_file_mode() -> int:
    """The permissions a newly created file gets under the current umask."""
    return 0o666 & ~_umask()


def nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists."""
    for level in [folder, *folder.parents]:
        if level.exists():
            return level
    return Path(folder.anchor or ".")


def partial_name(path: Path) -> Path:
    """A hidden temporary name beside ``path``, tagged with this process's id."""
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.hushnet-{os.getpid()}-", suffix=path.suffix + ".tmp"
    )
    os.close(handle)
    return Path(name)


def check_folder_writable(folder: Path) -> None:
    """Raise OSError when files cannot be created in ``folder`` (made where missing) — creating nothing."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(existing))
    PendingFile(folder / ".hushnet-probe").abort()


class PendingFile:
    """A file that appears at ``path`` only by :meth:`commit`; ``handle`` is its open binary file."""

    def __init__(self, path: str | os.PathLike, unnamed: bool = True) -> None:
        """``unnamed`` False: always the named temporary (for writers that open the name themselves and
        replace it, as safetensors does)."""
        self.path = Path(path)
        self.temporary: Path | None = None
        existing = nearest_existing(self.path.parent)
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        try:
            if not unnamed:
                raise OSError("a named temporary was asked for")
            descriptor = os.open(existing, os.O_TMPFILE | os.O_RDWR, default_file_mode())
        except (AttributeError, OSError):  # no unnamed files here: a named, process-tagged one
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.temporary = partial_name(self.path)
            os.chmod(self.temporary, default_file_mode())  # mkstemp creates 0600
            descriptor = os.open(self.temporary, os.O_RDWR)
        self.handle: io.BufferedRandom = os.fdopen(descriptor, "w+b")

    @property
    def writable_path(self) -> str:
        """A name for the file (its /proc descriptor link while unnamed)."""
        return str(self.temporary) if self.temporary else f"/proc/self/fd/{self.handle.fileno()}"

    def commit(self) -> None:
        """Put the complete file in place (atomically replacing any file there)."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        if self.temporary is None:
            source = self.writable_path
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.temporary = partial_name(self.path)
            self.temporary.unlink()
            root = os.open("/", os.O_RDONLY)
            try:  # linkat(AT_SYMLINK_FOLLOW) of the descriptor: os.link uses it only with a dir fd
                os.link(source, self.temporary, src_dir_fd=root, follow_symlinks=True)
            finally:
                os.close(root)
        self.handle.close()
        os.replace(self.temporary, self.path)
        self.temporary = None

    def abort(self) -> None:
        """Drop the file; nothing is left."""
        with contextlib.suppress(Exception):
            self.handle.close()
        if self.temporary is not None:
            self.temporary.unlink(missing_ok=True)
            self.temporary = None


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Have ``write`` fill the file named by its argument, then put it at ``path`` complete (or not at all)."""
    pending = PendingFile(path, unnamed=False)
    clean_stale_partials(pending.path.parent)
    try:
        write(pending.writable_path)
        os.chmod(pending.writable_path, default_file_mode())  # some writers recreate the file with 0600
        pending.commit()
    except BaseException:
        pending.abort()
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (a reader sees the old file or the new one)."""
    atomic_write(path, lambda name: Path(name).write_text(text))


class PendingFolder:
    """A folder that replaces ``path`` only when complete (a checkpoint): fill the hidden, process-tagged
    ``.NAME.hushnet-<pid>-XXXX.tmp`` folder beside it within the block; on success it is renamed onto
    ``path`` (an older folder there is replaced), on an error removed. One of a dead process is removed
    by :func:`clean_stale_partials` of the parent folder."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary = Path(
            tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.hushnet-{os.getpid()}-", suffix=".tmp")
        )
        os.chmod(self.temporary, 0o777 & ~_umask())  # mkdtemp makes it 0700

    def __enter__(self) -> Path:
        return self.temporary

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.replace(self.temporary, self.path)
