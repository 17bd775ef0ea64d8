"""The memory allocator of a training process: jemalloc, which keeps freed pages, where it is installed.

A training step allocates and frees activations of tens of MB each, every step. glibc's malloc
serves those from fresh ``mmap`` regions and gives them back at ``free``, so the kernel zeroes and
maps every page again on each step (system time, page faults). jemalloc, told never to purge
(``dirty_decay_ms:-1``), reuses them. It can only be chosen before the process starts
(``LD_PRELOAD``), so :func:`reexec_with_jemalloc` runs the same command again with it, once.
``HUSHNET_ALLOCATOR=system`` keeps the system allocator.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

VARIABLE = "HUSHNET_ALLOCATOR"
CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)
# Never give freed pages back to the kernel: a training process reuses its peak every step.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def jemalloc_path() -> str | None:
    """The first installed jemalloc library of CANDIDATES, or None."""
    return next((path for path in CANDIDATES if Path(path).is_file()), None)


def uses_jemalloc() -> bool:
    """Whether this process was started with jemalloc preloaded."""
    return "jemalloc" in os.environ.get("LD_PRELOAD", "")


def jemalloc_environment(environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """``environ`` with jemalloc preloaded and configured, or None where it is not installed, already
    in use, or turned off ($HUSHNET_ALLOCATOR=system)."""
    environ = dict(os.environ if environ is None else environ)
    library = jemalloc_path()
    if library is None or environ.get(VARIABLE, "") == "system" or "jemalloc" in environ.get("LD_PRELOAD", ""):
        return None
    environ["LD_PRELOAD"] = " ".join(filter(None, [library, environ.get("LD_PRELOAD", "")]))
    environ["MALLOC_CONF"] = ",".join(filter(None, [JEMALLOC_CONF, environ.get("MALLOC_CONF", "")]))
    environ[VARIABLE] = "jemalloc"  # also stops a second re-exec
    return environ


def reexec_with_jemalloc() -> None:
    """Replace this process by the same command with jemalloc (see :func:`jemalloc_environment`);
    returns only where that does not apply or the exec fails."""
    environ = jemalloc_environment()
    if environ is None or not getattr(sys, "orig_argv", None) or not sys.platform.startswith("linux"):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
    except OSError:
        return
