"""Temporary files: results that appear whole or not at all, and what a dead process left is recognised."""

from __future__ import annotations

import os
import subprocess
import sys

from hushnet.temporaries import PendingFile, atomic_write, clean_stale_partials, clean_stale_scratch, scratch_folder


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_pending_file_appears_only_on_commit_and_abort_leaves_nothing(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.bin"
    pending = PendingFile(target)
    pending.handle.write(b"data")
    assert list(tmp_path.iterdir()) == []  # unnamed, and no folder made yet
    pending.commit()
    assert target.read_bytes() == b"data"
    aborted = PendingFile(tmp_path / "other" / "x.bin")
    aborted.handle.write(b"x")
    aborted.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")

    def fails(name: str) -> None:
        with open(name, "w") as handle:
            handle.write("half")
        raise OSError("disk full")

    try:
        atomic_write(target, fails)
    except OSError:
        pass
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_what_dead_processes_left_is_removed_and_the_living_are_left_alone(tmp_path):
    dead = dead_pid()
    stale = [tmp_path / f"hushnet-{kind}-{dead}-abc" for kind in ("stage", "decode", "serve")]
    for folder in stale:
        folder.mkdir()
        (folder / "data").write_bytes(b"x")
    alive = tmp_path / f"hushnet-serve-{os.getppid()}-xyz"
    alive.mkdir()
    other = tmp_path / "hushnet-serve-bench-1"
    other.mkdir()
    assert sorted(clean_stale_scratch(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])
    partial = tmp_path / f".take.hushnet-{dead}-q1w2.wav.tmp"
    partial.write_bytes(b"half")
    mine = tmp_path / f".take.hushnet-{os.getpid()}-e3r4.wav.tmp"
    mine.write_bytes(b"half")
    assert clean_stale_partials(tmp_path) == [partial] and mine.exists()
    folder = scratch_folder("stage", tmp_path)
    assert folder.name.startswith(f"hushnet-stage-{os.getpid()}-")
