"""Atomic writes: fill a temporary file (or folder) beside the target, then rename it into place.

A reader sees the old file or the new one, never half of one, and an interrupted write leaves the
old file as it was. Every writer of the package goes through :class:`Replacement`: audio results,
model directories, ONNX exports and training checkpoints.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_file_mode() -> int:
    """The permissions a newly created file gets under the current umask."""
    return 0o666 & ~_umask()


class Replacement:
    """A temporary path beside ``target`` to fill; ``commit`` renames it onto ``target``, ``abort``
    removes it. As a context manager: commit when the block ends normally, abort when it raises.

    ``folder``: the temporary is a folder (a checkpoint); an existing target folder is replaced.
    """

    def __init__(self, target: str | os.PathLike, folder: bool = False) -> None:
        self.target = Path(target)
        self.folder = folder
        prefix = f".{self.target.name}." if folder else f".{self.target.stem}."
        if folder:
            self.path = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=prefix, suffix=".partial"))
        else:
            handle, name = tempfile.mkstemp(dir=self.target.parent, prefix=prefix, suffix=self.target.suffix + ".tmp")
            os.close(handle)
            self.path = Path(name)
            os.chmod(self.path, default_file_mode())  # mkstemp creates 0600; a result should be readable like any file

    def commit(self) -> Path:
        """Move the filled temporary onto the target; returns the target."""
        if self.folder:
            os.chmod(self.path, 0o777 & ~_umask())  # mkdtemp creates 0700, as mkstemp does 0600
            shutil.rmtree(self.target, ignore_errors=True)
        elif self.path.exists():
            os.chmod(self.path, default_file_mode())  # some writers recreate the file with 0600
        os.replace(self.path, self.target)
        return self.target

    def abort(self) -> None:
        """Remove the temporary; the target stays as it was."""
        if self.folder:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with Replacement(path) as temporary:
        temporary.write_text(text)
