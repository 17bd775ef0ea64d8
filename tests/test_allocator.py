"""The trainer's allocator: ``hushnet train`` runs itself again with jemalloc where it is installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hushnet import allocator

needs_jemalloc = pytest.mark.skipif(allocator.jemalloc_path() is None, reason="jemalloc is not installed")

SHOW_AND_TRAIN_HELP = """
import os, sys
print("PRELOAD", os.environ.get("LD_PRELOAD", ""), "CONF", os.environ.get("MALLOC_CONF", ""), flush=True)
maps = open("/proc/self/maps").read()
print("MAPPED", "libjemalloc" in maps, flush=True)
sys.argv = ["hushnet", *sys.argv[1:]]
from hushnet.cli import main
main()
"""


def run(*arguments: str, **environment: str) -> list[str]:
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", allocator.VARIABLE)}
    env.update(PYTHONPATH=str(root / "src"), **environment)
    done = subprocess.run(
        [sys.executable, "-c", SHOW_AND_TRAIN_HELP, *arguments], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.startswith(("PRELOAD", "MAPPED"))]


def test_jemalloc_environment_preloads_it_once_and_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setattr(allocator, "jemalloc_path", lambda: "/lib/libjemalloc.so.2")
    environ = allocator.jemalloc_environment({"LD_PRELOAD": "/lib/other.so", "MALLOC_CONF": "narenas:2"})
    assert environ["LD_PRELOAD"] == "/lib/libjemalloc.so.2 /lib/other.so"
    assert environ["MALLOC_CONF"] == f"{allocator.JEMALLOC_CONF},narenas:2"
    assert allocator.jemalloc_environment(environ) is None  # already preloaded: no second re-exec
    assert allocator.jemalloc_environment({allocator.VARIABLE: "system"}) is None
    monkeypatch.setattr(allocator, "jemalloc_path", lambda: None)
    assert allocator.jemalloc_environment({}) is None


@needs_jemalloc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc are Linux's")
def test_train_runs_itself_again_with_jemalloc_and_other_commands_do_not():
    started = ["PRELOAD  CONF ", "MAPPED False"]  # as started: the system allocator
    again = [f"PRELOAD {allocator.jemalloc_path()} CONF {allocator.JEMALLOC_CONF}", "MAPPED True"]
    assert run("train", "--help") == started + again
    assert run("train", "--help", **{allocator.VARIABLE: "system"}) == started  # turned off: one process
    assert run("denoise", "--help") == started  # inference keeps the system allocator
