"""Where hushnet keeps caches between runs (compiled OpenVINO models, torch.compile's kernels): the
user's cache folder, or none at all where there is no such folder, never a folder made elsewhere."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path | None:
    """``$XDG_CACHE_HOME`` when it is an absolute path (the XDG spec says to ignore a relative one),
    else ``~/.cache`` where the home folder exists; None: no cache (a home that does not exist must
    not be created, at the filesystem root or anywhere)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no HOME and no password entry
        return None
    if not home.is_absolute() or not home.is_dir():
        return None
    return home / ".cache"


def hushnet_cache_dir(*parts: str) -> Path | None:
    """``<user cache>/hushnet/<parts>`` (not created here), or None where there is no user cache."""
    base = user_cache_dir()
    return None if base is None else base.joinpath("hushnet", *parts)


def use_compile_cache() -> None:
    """Point torch.compile's cache (``TORCHINDUCTOR_CACHE_DIR``) at ``<user cache>/hushnet/torchinductor``
    unless the user set it: its default, ``$TMPDIR/torchinductor_<user>``, is left behind by every
    run (153 MB after one compiled training run, an empty folder even without compiling)."""
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return
    folder = hushnet_cache_dir("torchinductor")
    if folder is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
