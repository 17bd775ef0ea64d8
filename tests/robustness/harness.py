"""Hostile-input and fault cases across every way in: ``hushnet denoise``, ``evaluate``, ``export-onnx``,
the Python API, the HTTP API and ``serve``'s flags, each judged the same way.

For every case: the exit status (HTTP status for requests), whether a traceback reached the user (a
``Traceback`` on stderr, an exception escaping ``main``, an unexpected exception type from the API, a
server-side exception in the log), whether every input file is byte-identical afterwards (arrays
too, for the API), and whether anything was left behind (files and folders new in the case's folder
and its private TMPDIR that are not results the command reported). Cases that kill a process with
``kill -9`` are judged after the next run, which is what the README promises to clean up.

Bounded: each case has a wall-clock limit, the process an address-space limit, models are tiny.
The tests in ``test_robustness.py`` run the groups (one test per group); to rewrite the table:

    python -m pytest -q tests/robustness --robustness-table   # benchmarks/results/robustness.md and .json
    python -m pytest -q tests/robustness -k "http or serve"   # some groups
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from helpers import multipart, speechlike, wav_header

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SRC = ROOT / "src"  # the code under test, on PYTHONPATH of every command a case starts

INPUTS = Path("inputs")  # the material's inputs folder, set by run_groups
CASE_SECONDS = 120  # wall-clock limit of one case
ADDRESS_SPACE_BYTES = 12 * 2**30  # torch and onnxruntime reserve a lot of address space they never touch
# onnxruntime's telemetry writes this fixed-name file into the temp folder when it is imported (not ours).
FOREIGN = {".ses"}


@dataclass
class Result:
    """One case and how it ended."""

    group: str
    case: str
    status: int | str
    traceback: bool
    input_unchanged: bool
    leftovers: list[str] = field(default_factory=list)
    note: str = ""
    nonfinite: bool = False  # a result (file, array, HTTP body) holds NaN or infinite samples

    @property
    def ok(self) -> bool:
        return (
            not self.traceback
            and self.input_unchanged
            and not self.leftovers
            and self.status != 500
            and not self.nonfinite
        )


class CaseTimeout(Exception):
    pass


def digest(path: Path) -> str:
    if not path.is_file():
        return "-"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(*folders: Path) -> set[str]:
    """Every file and folder under ``folders`` (symlinks not followed)."""
    found = set()
    for folder in folders:
        for base, names, files in os.walk(folder):
            for name in names + files:
                found.add(os.path.join(base, name))
    return found


@dataclass
class Sandbox:
    """A case's own folder and TMPDIR; inputs are copied in, so that results beside them stay apart."""

    root: Path
    scratch: Path

    @classmethod
    def make(cls, base: Path, name: str) -> "Sandbox":
        root = Path(tempfile.mkdtemp(prefix="case-", dir=base))
        scratch = root / "tmp"
        scratch.mkdir()
        return cls(root, scratch)

    def copy(self, source: Path, name: str | None = None) -> Path:
        target = self.root / (name or source.name)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        return target


def with_limits(run: Callable[[], object]) -> object:
    """``run()`` under the case's wall-clock limit."""

    def expired(number, frame):
        raise CaseTimeout()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(CASE_SECONDS)
    try:
        return run()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def use_scratch(scratch: Path) -> None:
    """Make ``scratch`` this process's (and its children's) temp folder."""
    os.environ["TMPDIR"] = str(scratch)
    tempfile.tempdir = str(scratch)


def reported_outputs(out: str, err: str) -> set[str]:
    """Results a command said it wrote: ``A -> B`` lines, ``wrote P`` lines, export-onnx's path."""
    paths = set()
    import ast

    for line in out.splitlines():
        if " -> " in line:
            target = line.split(" -> ", 1)[1]
            if target.startswith(("'", '"')):  # quoted by the command: a name with control characters
                end = target.index(target[0], 1) + 1
                paths.add(ast.literal_eval(target[:end]))
            else:
                paths.add(target.split(" (", 1)[0])
        elif line.endswith(".onnx") or ".onnx (" in line:
            paths.add(line.split(" (", 1)[0])
    for line in out.splitlines():
        if line.startswith("run folder: "):  # hushnet train: the run folder is its result
            paths.add(line[len("run folder: ") :].split(" (", 1)[0] + os.sep)
        elif " plan, input level " in line:  # hushnet ensemble: "DIR: members; ... plan, input level ..."
            paths.add(line.split(": ", 1)[0] + os.sep)
    for line in err.splitlines():
        if line.startswith("wrote "):
            paths.add(line[len("wrote ") :])
        if line.startswith("denoising ") and " into " in line:  # evaluate's enhanced folder: its files are results
            paths.add(line.split(" into ", 1)[1].split(" with ", 1)[0] + os.sep)
    return {os.path.realpath(p) if not p.endswith(os.sep) else os.path.realpath(p) + os.sep for p in paths}


def leftovers(before: set[str], after: set[str], allowed: set[str]) -> list[str]:
    """New paths that are neither a reported result, nor a folder holding one, nor foreign."""
    folders = {os.path.dirname(p) for p in allowed}
    extra = []
    for path in sorted(after - before):
        real = os.path.realpath(path)
        if os.path.basename(path) in FOREIGN or real in allowed:
            continue
        if any(real.startswith(a) for a in allowed if a.endswith(os.sep)) or any(
            (a + os.sep).startswith(real + os.sep) for a in allowed
        ):
            continue
        if real in folders:
            continue
        extra.append(path)
    return extra


AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".mp3"}


def nonfinite_audio(paths: set[str]) -> bool:
    """Whether any audio file among ``paths`` (folders: the files under them) holds a non-finite sample."""
    import numpy as np
    import soundfile as sf

    files = []
    for path in paths:
        if path.endswith(os.sep) or os.path.isdir(path):
            files += [str(p) for p in Path(path).rglob("*") if p.is_file()]
        elif os.path.isfile(path):
            files.append(path)
    for path in files:
        if Path(path).suffix.lower() in AUDIO_SUFFIXES:
            try:
                samples, _ = sf.read(path, dtype="float64")
            except Exception:  # noqa: BLE001  not audio soundfile reads: not ours to judge here
                continue
            if not np.isfinite(samples).all():
                return True
    return False


# --- the cases' material -------------------------------------------------------------------------------


def ffmpeg(target: Path, *arguments: str) -> Path:
    import subprocess

    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *arguments, str(target)], check=True)
    return target


def wav_with_rate_field(path: Path, rate: int) -> Path:
    import soundfile as sf

    sf.write(path, speechlike(0.2)[0], 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = rate.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def make_inputs(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(good recordings, bad files) by name, written once and copied into each case's sandbox."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    good: dict[str, Path] = {}

    def audio(name: str, x, rate: int = 16000, **options) -> None:
        good[name] = folder / name
        sf.write(good[name], x.T, rate, **options)

    audio("mono16k.wav", speechlike(0.6))
    audio("stereo44k.wav", speechlike(0.6, 44100, 2), 44100)
    audio("mono8k.wav", speechlike(0.6, 8000), 8000)
    audio("six48k.wav", speechlike(0.4, 48000, 6), 48000)
    audio("float.wav", speechlike(0.5), subtype="FLOAT")
    audio("pcm24.wav", speechlike(0.5), subtype="PCM_24")
    audio("talk.flac", speechlike(0.6, 22050), 22050)
    audio("talk.ogg", speechlike(0.6), format="OGG")
    audio("talk.aiff", speechlike(0.5), format="AIFF")
    audio("ten_ms.wav", speechlike(0.01))
    audio("silence.wav", np.zeros((1, 8000), np.float32))
    audio("clipped.wav", np.clip(speechlike(0.5) * 40, -1, 1))
    audio("name with spaces é.wav", speechlike(0.3))
    if shutil.which("ffmpeg"):
        good["talk.m4a"] = ffmpeg(
            folder / "talk.m4a", "-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:a", "aac"
        )
        good["talk.mp3"] = ffmpeg(folder / "talk.mp3", "-f", "lavfi", "-i", "sine=frequency=300:duration=1")
        good["movie.mp4"] = ffmpeg(
            folder / "movie.mp4",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:duration=1",
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=32x32:d=1",
            "-c:a",
            "aac",
            "-c:v",
            "mpeg4",
            "-shortest",
        )

    bad: dict[str, Path] = {}

    def raw(name: str, data: bytes) -> None:
        bad[name] = folder / name
        bad[name].write_bytes(data)

    raw("empty.wav", b"")
    sf.write(folder / "zero_frames.wav", np.zeros(0, np.float32), 16000)
    bad["zero_frames.wav"] = folder / "zero_frames.wav"
    x = speechlike(0.5)
    x[0, 100] = np.nan
    sf.write(folder / "nan.wav", x.T, 16000, subtype="FLOAT")
    bad["nan.wav"] = folder / "nan.wav"
    x[0, 100] = np.inf
    sf.write(folder / "inf.wav", x.T, 16000, subtype="FLOAT")
    bad["inf.wav"] = folder / "inf.wav"
    whole = folder / "whole.flac"
    sf.write(whole, speechlike(2.0)[0], 16000)
    raw("truncated.flac", whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    raw("text.wav", b"this is not audio\n" * 20)
    raw("random.mp4", os.urandom(4096))
    raw("random.wav", b"RIFF" + os.urandom(2000))
    raw("header_only.wav", wav_header(1, 0)[:44])
    raw("many_channels.wav", wav_header(4096))
    bad["huge_rate.wav"] = wav_with_rate_field(folder / "huge_rate.wav", 2**31 - 1)
    bad["zero_rate.wav"] = wav_with_rate_field(folder / "zero_rate.wav", 0)
    (folder / "a_folder.wav").mkdir()
    bad["a_folder.wav"] = folder / "a_folder.wav"
    os.mkfifo(folder / "fifo.wav")
    bad["fifo.wav"] = folder / "fifo.wav"
    if shutil.which("ffmpeg"):
        bad["video_only.mp4"] = ffmpeg(
            folder / "video_only.mp4", "-f", "lavfi", "-i", "color=c=blue:s=32x32:d=1", "-c:v", "mpeg4"
        )
    return good, bad


def make_models(folder: Path) -> dict[str, Path]:
    """A tiny CAN (with model.onnx), a tiny loss network, and broken copies of the CAN."""
    import torch

    from hushnet.inference.networks import export_onnx
    from hushnet.model_dir import fingerprint_metadata, save_model
    from hushnet.models.can import CAN, CANConfig
    from hushnet.models.lossnet import LossNet, LossNetConfig

    torch.manual_seed(0)
    models = {"tiny": folder / "tiny", "lossnet": folder / "lossnet"}
    can = CAN(CANConfig(channels=8, dilated_layers=4, norm="batch"))
    save_model(can.eval(), models["tiny"], "# tiny\n")
    export_onnx(can.eval(), models["tiny"] / "model.onnx", fingerprint_metadata(models["tiny"]))
    # Another tiny CAN (other weights; its graph copied into "tiny" must be refused), and one that
    # normalises its input level (where near-silent input met an overflowing gain).
    for name, config in (
        ("tiny2", CANConfig(channels=8, dilated_layers=4, norm="batch")),
        ("levelled", CANConfig(channels=8, dilated_layers=4, norm="batch", input_rms_db=-23.0)),
    ):
        models[name] = folder / name
        other = CAN(config).eval()
        save_model(other, models[name], f"# {name}\n")
        export_onnx(other, models[name] / "model.onnx", fingerprint_metadata(models[name]))
    save_model(
        LossNet(LossNetConfig(layers=6, base_channels=4, double_every=3, max_channels=8, scene_classes=3, tags=2)),
        models["lossnet"],
        "# l\n",
    )

    def broken(name: str, change: Callable[[Path], None]) -> None:
        models[name] = folder / name
        shutil.copytree(models["tiny"], models[name])
        (models[name] / "model.onnx").unlink()
        change(models[name])

    broken("corrupt_weights", lambda d: (d / "model.safetensors").write_bytes(b"\0garbage" * 8))
    broken(
        "truncated_weights",
        lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:300]),
    )
    broken("config_list", lambda d: (d / "config.json").write_text("[1, 2]"))
    broken("config_no_config", lambda d: (d / "config.json").write_text('{"kind": "can"}'))
    broken("config_not_utf8", lambda d: (d / "config.json").write_bytes(b'{"kind": "can", "config": {"norm": "\xff"}}'))
    broken(
        "config_sixty",
        lambda d: (d / "config.json").write_text(
            json.dumps(
                {
                    **json.loads((d / "config.json").read_text()),
                    "config": {**json.loads((d / "config.json").read_text())["config"], "channels": "sixty"},
                }
            )
        ),
    )
    broken("config_not_json", lambda d: (d / "config.json").write_text("{nope"))
    broken("config_unknown_kind", lambda d: (d / "config.json").write_text('{"kind": "gan", "config": {}}'))
    broken("no_weights", lambda d: (d / "model.safetensors").unlink())
    models["corrupt_onnx"] = folder / "corrupt_onnx"
    shutil.copytree(models["tiny"], models["corrupt_onnx"])
    (models["corrupt_onnx"] / "model.onnx").write_bytes(b"not onnx")
    return models


# --- commands, in this process ------------------------------------------------------------------------


def run_cli(
    group: str, case: str, argv: list[str], box: Sandbox, inputs: list[Path], stdin_bytes: bytes | None = None
) -> Result:
    """``hushnet ARGV`` through ``hushnet.cli.main`` with the case's TMPDIR; judged as described above."""
    import contextlib

    from hushnet.cli import main

    hashes = {p: digest(p) for p in inputs}
    before = snapshot(box.root)
    use_scratch(box.scratch)
    out, err = io.StringIO(), io.StringIO()
    escaped = ""
    status: int | str
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = with_limits(lambda: main(argv))
        except SystemExit as exit_:  # argparse's own refusals: usage and one line, status 2
            status = exit_.code if isinstance(exit_.code, int) else 2
        except CaseTimeout:
            status, escaped = "timeout", "timeout"
        except BaseException as error:  # noqa: BLE001  an exception escaping main is a traceback for the user
            status, escaped = "exception", f"{type(error).__name__}: {error}"
    text = err.getvalue()
    allowed = reported_outputs(out.getvalue(), text)
    left = leftovers(before, snapshot(box.root), allowed)
    last = [line for line in text.strip().splitlines() if line.startswith("error")][:1]
    return Result(
        group,
        case,
        status,
        bool(escaped) or "Traceback" in text or "Exception ignored" in text,
        all(digest(p) == h for p, h in hashes.items()),
        left,
        escaped or (last[0][:140] if last else ""),
        nonfinite_audio(allowed),
    )


def denoise_cases(
    good: dict[str, Path], bad: dict[str, Path], models: dict[str, Path]
) -> list[tuple[str, Callable[[Sandbox], tuple[list[str], list[Path]]]]]:
    """(name, build) pairs; ``build(box)`` copies what it needs and returns (argv, inputs to watch)."""
    tiny = str(models["tiny"])
    cases = []

    def add(name: str, build) -> None:
        cases.append((name, build))

    outputs = {
        "beside": lambda box, p: [],
        "-o file.wav": lambda box, p: ["-o", str(box.root / "out.wav")],
        "-o new/deeper folder": lambda box, p: ["-o", str(box.root / "new" / "deeper")],
        "--float -o folder": lambda box, p: ["--float", "-o", str(box.root / "f")],
        "-o file.flac": lambda box, p: ["-o", str(box.root / "out.flac")],
    }
    for name, path in good.items():
        for label, extra in outputs.items():
            add(
                f"{name} {label}",
                lambda box, path=path, extra=extra: (
                    lambda p: (["denoise", str(p), "--model", tiny, "-q", *extra(box, p)], [p])
                )(box.copy(path)),
            )
    for name, path in bad.items():
        for label, extra in {"-o folder": ["-o", "OUT"], "beside": []}.items():

            def build(box, path=path, extra=extra):
                source = box.root / path.name
                if path.is_dir():
                    source.mkdir()
                elif path.name == "fifo.wav":
                    os.mkfifo(source)
                else:
                    box.copy(path)
                return [
                    "denoise",
                    str(source),
                    "--model",
                    tiny,
                    "-q",
                    *[str(box.root / "out") if e == "OUT" else e for e in extra],
                ], [source]

            add(f"{name} {label}", build)
    return cases + denoise_option_cases(good, models)


def denoise_option_cases(good: dict[str, Path], models: dict[str, Path]) -> list:
    tiny = str(models["tiny"])
    source = good["mono16k.wav"]
    cases = []

    def flags(name: str, *extra: str) -> None:
        cases.append(
            (
                name,
                lambda box: (
                    lambda p: (["denoise", str(p), "-o", str(box.root / "o.wav"), "--model", tiny, "-q", *extra], [p])
                )(box.copy(source)),
            )
        )

    for flag, value in [
        ("--threads", "0"),
        ("--threads", "-1"),
        ("--threads", "100000"),
        ("--threads", "two"),
        ("--memory-budget-mb", "-1"),
        ("--memory-budget-mb", "nan"),
        ("--memory-budget-mb", "0"),
        ("--memory-budget-mb", "inf"),
        ("--dry", "-0.1"),
        ("--dry", "1.5"),
        ("--dry", "nan"),
        ("--level-db", "5"),
        ("--level-db", "loud"),
        ("--level-db", "nan"),
        ("--level-scope", "song"),
        ("--engine", "tpu"),
        ("--device", "foo"),
        ("--device", "cuda"),
        ("--device", "cuda:7"),
        ("--level-db", "off"),
    ]:
        flags(f"{flag} {value}", flag, value)
    for name in [
        "corrupt_weights",
        "truncated_weights",
        "config_list",
        "config_no_config",
        "config_not_utf8",
        "config_sixty",
        "config_not_json",
        "config_unknown_kind",
        "no_weights",
        "lossnet",
        "corrupt_onnx",
    ]:
        engine = "onnx" if name == "corrupt_onnx" else "torch"
        cases.append(
            (
                f"--model {name}",
                lambda box, name=name, engine=engine: (
                    lambda p: (
                        [
                            "denoise",
                            str(p),
                            "-o",
                            str(box.root / "o.wav"),
                            "--model",
                            str(models[name]),
                            "--engine",
                            engine,
                            "-q",
                        ],
                        [p],
                    )
                )(box.copy(source)),
            )
        )
    cases.append(
        (
            "--model missing",
            lambda box: (lambda p: (["denoise", str(p), "--model", str(box.root / "nope"), "-q"], [p]))(
                box.copy(source)
            ),
        )
    )
    cases.append(
        (
            "--engine onnx without model.onnx",
            lambda box: (
                lambda p: (["denoise", str(p), "--model", str(models["no_weights"]), "--engine", "onnx", "-q"], [p])
            )(box.copy(source)),
        )
    )
    return cases + denoise_path_cases(good, models)


def denoise_path_cases(good: dict[str, Path], models: dict[str, Path]) -> list:
    tiny = str(models["tiny"])
    wav, flac = good["mono16k.wav"], good["talk.flac"]
    cases = []

    def case(name: str, build: Callable[[Sandbox], tuple[list[str], list[Path]]]) -> None:
        cases.append((name, build))

    def argv(*words) -> list[str]:
        return ["denoise", *map(str, words), "--model", tiny, "-q"]

    def folder_of_two(box: Sandbox) -> Path:
        (box.root / "in").mkdir()
        return box.copy(wav, "in/a.wav").parent, box.copy(flac, "in/b.flac")

    case("-o out.txt", lambda box: (lambda p: (argv(p, "-o", box.root / "out.txt"), [p]))(box.copy(wav)))
    case("-o the input itself", lambda box: (lambda p: (argv(p, "-o", p), [p]))(box.copy(wav)))
    case(
        "-o symlink to the input",
        lambda box: (lambda p: ((box.root / "link.wav").symlink_to(p), (argv(p, "-o", box.root / "link.wav"), [p]))[1])(
            box.copy(wav)
        ),
    )
    case(
        "input through a symlink",
        lambda box: (lambda p: ((box.root / "link.wav").symlink_to(p), (argv(box.root / "link.wav"), [p]))[1])(
            box.copy(wav)
        ),
    )
    case(
        "two inputs -o one file",
        lambda box: (
            argv(box.copy(wav), box.copy(flac), "-o", box.root / "one.wav"),
            [box.root / wav.name, box.root / flac.name],
        ),
    )
    case("same input twice", lambda box: (lambda p: (argv(p, p, "-o", box.root / "out"), [p]))(box.copy(wav)))
    case(
        "same input by name and glob",
        lambda box: (lambda p: (argv(p, box.root / "*.wav", "-o", box.root / "out"), [p]))(box.copy(wav)),
    )
    case(
        "-o blocked by a file",
        lambda box: (
            lambda p: (
                (box.root / "blocker").write_text("x"),
                (argv(p, "-o", box.root / "blocker" / "sub"), [p, box.root / "blocker"]),
            )[1]
        )(box.copy(wav)),
    )
    case("-o .mp4", lambda box: (lambda p: (argv(p, "-o", box.root / "new" / "out.mp4"), [p]))(box.copy(wav)))
    case(
        "-o existing file replaced",
        lambda box: (
            lambda p: ((box.root / "old.wav").write_bytes(b"old"), (argv(p, "-o", box.root / "old.wav"), [p]))[1]
        )(box.copy(wav)),
    )
    case(
        "-o existing folder",
        lambda box: (lambda p: ((box.root / "exists").mkdir(), (argv(p, "-o", box.root / "exists"), [p]))[1])(
            box.copy(wav)
        ),
    )
    case(
        "-o folder/ with a dot",
        lambda box: (lambda p: (argv(p, "-o", str(box.root / "v1.2") + "/"), [p]))(box.copy(wav)),
    )
    case("missing input", lambda box: (argv(box.root / "nope.wav"), []))
    case("glob matching nothing", lambda box: (argv(box.root / "*.flac"), []))
    case("folder without audio", lambda box: ((box.root / "empty").mkdir(), (argv(box.root / "empty"), []))[1])
    case(
        "folder input",
        lambda box: (lambda pair: (argv(pair[0], "-o", box.root / "out"), [pair[1], pair[0] / "a.wav"]))(
            folder_of_two(box)
        ),
    )
    case(
        "glob input",
        lambda box: (
            lambda pair: (argv(box.root / "in" / "*.*", "-o", box.root / "out"), [pair[1], pair[0] / "a.wav"])
        )(folder_of_two(box)),
    )

    def twice(box: Sandbox, output: str | None):
        folder, second = folder_of_two(box)
        words = argv(folder, *(["-o", folder / output] if output else []))
        from hushnet.cli import main

        with open(os.devnull, "w") as quiet:  # the first run; the case is the second
            import contextlib

            with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
                main(words)
        return words, [second, folder / "a.wav"]

    case("-o inside the input folder, run twice", lambda box: twice(box, "clean"))
    case("beside, run twice", lambda box: twice(box, None))
    case("no inputs", lambda box: (["denoise", "--model", tiny], []))
    case("unknown flag", lambda box: (argv(box.copy(wav), "--turbo"), [box.root / wav.name]))
    case(
        "newline in the name",
        lambda box: (lambda p: (argv(p, "-o", box.root / "o"), [p]))(box.copy(wav, "line\nbreak.wav")),
    )
    return cases


# --- signals: real processes ----------------------------------------------------------------------------

KILL_WHILE_WRITING = """
import os, signal, sys
import hushnet.audio as audio
real = audio.AtomicAudioWriter.write
def write_then_die(self, block):
    real(self, block)
    os.kill(os.getpid(), signal.SIGKILL)
audio.AtomicAudioWriter.write = write_then_die
from hushnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_signalled(
    case: str, box: Sandbox, source: Path, sig: int | None, after: str, models: dict[str, Path]
) -> Result:
    """``hushnet denoise SOURCE -o new/out`` in a child; ``sig`` sent once ``after`` is seen (a scratch
    folder, or "start"), or the child kills itself mid-write (``sig`` None). After a SIGKILL, a second,
    small run must clean up what the README says the next run cleans."""
    import subprocess

    env = {**os.environ, "TMPDIR": str(box.scratch), "PYTHONPATH": str(SRC)}
    before, hashes = snapshot(box.root), {source: digest(source)}
    command = ["denoise", str(source), "-o", str(box.root / "new" / "deeper"), "--model", str(models["tiny"]), "-q"]
    if sig is None:
        child = subprocess.Popen(
            [sys.executable, "-c", KILL_WHILE_WRITING, *command], env=env, stderr=subprocess.PIPE, text=True
        )
    else:
        child = subprocess.Popen(
            [sys.executable, "-m", "hushnet.cli", *command], env=env, stderr=subprocess.PIPE, text=True
        )
        started = time.monotonic()
        while child.poll() is None and time.monotonic() < started + 30:
            if (after == "start" and time.monotonic() > started + 1.5) or any(box.scratch.glob(after)):
                child.send_signal(sig)
                break
            time.sleep(0.005)
    _, err = child.communicate(timeout=CASE_SECONDS)
    note = f"exit {child.returncode}; " + (err.strip().splitlines() or [""])[-1][:80]
    if child.returncode in (-signal.SIGKILL, 137):
        small = box.root / "small.wav"
        import soundfile as sf

        sf.write(small, speechlike(0.2)[0], 16000)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "hushnet.cli",
                "denoise",
                str(small),
                "-o",
                str(box.root / "small_out.wav"),
                "--model",
                str(models["tiny"]),
                "-q",
            ],
            env=env,
            capture_output=True,
            timeout=CASE_SECONDS,
        )
        before |= {str(small), str(box.root / "small_out.wav")}
        note += "; judged after the next run"
    allowed = (
        {os.path.realpath(box.root / "new" / "deeper" / source.with_suffix(".wav").name)}
        if child.returncode == 0
        else set()
    )
    return Result(
        "denoise (signals)",
        case,
        child.returncode,
        "Traceback" in err,
        digest(source) == hashes[source],
        leftovers(before, snapshot(box.root), allowed),
        note,
    )


def signal_cases(work: Path, models: dict[str, Path]) -> list[Result]:
    import soundfile as sf

    results = []
    long_wav = work / "long.wav"
    # long enough that the tiny model is still at work when the signal comes (it runs hundreds of times real time)
    sf.write(long_wav, speechlike(1800.0, 8000)[0], 8000)
    sources = {"wav": long_wav}
    if shutil.which("ffmpeg"):
        sources["m4a"] = ffmpeg(work / "long.m4a", "-i", str(long_wav), "-c:a", "aac", "-b:a", "32k")
    plans = [("SIGTERM", signal.SIGTERM), ("SIGINT", signal.SIGINT), ("SIGKILL", signal.SIGKILL)]
    for kind, source in sources.items():
        stage = "hushnet-decode-*/decoded.wav" if kind == "m4a" else "start"
        for label, sig in plans:
            box = Sandbox.make(work, label)
            results.append(
                run_signalled(
                    f"{label} during {'decoding' if kind == 'm4a' else 'denoising'} ({kind})",
                    box,
                    box.copy(source),
                    sig,
                    stage,
                    models,
                )
            )
        box = Sandbox.make(work, "writing")
        results.append(
            run_signalled(
                f"kill -9 halfway through writing the result ({kind})", box, box.copy(source), None, "", models
            )
        )
    return results


# --- evaluate and export-onnx ---------------------------------------------------------------------------


def pair_folders(box: Sandbox, enhanced: Callable | None = None, names=("a", "b")) -> tuple[Path, Path, list[Path]]:
    """clean/ and enhanced/ with the same names; ``enhanced(x)`` makes the first enhanced file."""
    import soundfile as sf

    written = []
    for role in ("clean", "enhanced"):
        (box.root / role).mkdir()
        for k, name in enumerate(names):
            x = speechlike(1.0, seed=k)[0]
            if role == "enhanced":
                x = enhanced(x) if enhanced and k == 0 else x + 0.01 * speechlike(1.0, seed=9)[0]
            sf.write(box.root / role / f"{name}.wav", x, 16000)
            written.append(box.root / role / f"{name}.wav")
    return box.root / "clean", box.root / "enhanced", written


def evaluate_cases(models: dict[str, Path]) -> list:
    import numpy as np

    cases = []

    def scored(name: str, enhanced: Callable | None, *extra: str) -> None:
        def build(box: Sandbox):
            clean, enh, files = pair_folders(box, enhanced)
            return [
                "evaluate",
                "--clean",
                str(clean),
                "--enhanced",
                str(enh),
                "-o",
                str(box.root / "report"),
                "-q",
                "--jobs",
                "1",
                *extra,
            ], files

        cases.append((name, build))

    scored("well-formed pairs", None)
    scored("an enhanced file of 100 samples", lambda x: x[:100])
    scored("a silent enhanced file", lambda x: 0 * x)
    scored("an enhanced file half its reference's length", lambda x: x[: x.size // 2])
    scored("NaN in an enhanced file", lambda x: np.where(np.arange(x.size) == 5, np.nan, x).astype(np.float32))
    scored("--jobs 0", None, "--jobs", "0")
    scored("--jobs -3", None, "--jobs", "-3")

    def with_output(name: str, prepare: Callable[[Sandbox], Path]) -> None:
        def build(box: Sandbox):
            clean, enh, files = pair_folders(box)
            target = prepare(box)
            return [
                "evaluate",
                "--clean",
                str(clean),
                "--enhanced",
                str(enh),
                "-o",
                str(target),
                "-q",
                "--jobs",
                "1",
            ], files + [target]

        cases.append((name, build))

    with_output(
        "-o an existing file", lambda box: (box.root / "taken.txt", (box.root / "taken.txt").write_text("keep"))[0]
    )
    with_output("-o below a file", lambda box: (box.root / "f", (box.root / "f").write_text("x"))[0] / "sub")

    def manifest(name: str, content: bytes | None) -> None:
        def build(box: Sandbox):
            path = box.root / "list.csv"
            if content is not None:
                path.write_bytes(content)
            return ["evaluate", "--manifest", str(path), "-o", str(box.root / "report"), "-q"], [path]

        cases.append((name, build))

    manifest("a missing manifest", None)
    manifest("a binary manifest", bytes(range(256)) * 8)
    manifest("a manifest without the columns", b"x,y\n1,2\n")
    manifest("an empty manifest", b"")
    manifest("a manifest naming missing files", b"clean,enhanced\nnope.wav,gone.wav\n")
    cases.append(("no arguments", lambda box: (["evaluate", "-o", str(box.root / "r")], [])))
    cases.append(
        (
            "--clean missing folder",
            lambda box: (
                [
                    "evaluate",
                    "--clean",
                    str(box.root / "none"),
                    "--enhanced",
                    str(box.root / "none2"),
                    "-o",
                    str(box.root / "r"),
                ],
                [],
            ),
        )
    )

    def denoised_pairs(name: str, model: Callable[[Sandbox], str], *extra: str) -> None:
        def build(box: Sandbox):
            clean, noisy, inputs = pair_folders(box)
            argv = ["evaluate", "--clean", str(clean), "--noisy", str(noisy), "--model", model(box)]
            return argv + ["-o", str(box.root / "r"), "-q", *extra], inputs

        cases.append((name, build))

    denoised_pairs("--model missing", lambda box: str(box.root / "nope"))
    denoised_pairs("--noisy denoised with the tiny model", lambda box: str(models["tiny"]), "--jobs", "1")
    return cases


def export_cases(models: dict[str, Path]) -> list:
    cases = []

    def export(name: str, model: str, output: Callable[[Sandbox, Path], Path]) -> None:
        def build(box: Sandbox):
            directory = box.copy(models[model], "model")
            watched = sorted(
                p for p in directory.iterdir() if p.name != "model.onnx"
            )  # the one file an export may replace
            return ["export-onnx", str(directory), "-o", str(output(box, directory))], watched

        cases.append((name, build))

    export("-o MODEL/model.safetensors", "tiny", lambda box, d: d / "model.safetensors")
    export("-o MODEL/config.json", "tiny", lambda box, d: d / "config.json")
    export("-o MODEL/README.md", "tiny", lambda box, d: d / "README.md")
    export("-o MODEL (the folder)", "tiny", lambda box, d: d)
    export("-o out.txt", "tiny", lambda box, d: box.root / "out.txt")
    export("-o missing/folder/m.onnx", "tiny", lambda box, d: box.root / "missing" / "m.onnx")
    export("-o elsewhere.onnx", "tiny", lambda box, d: box.root / "elsewhere.onnx")
    export("-o MODEL/model.onnx", "tiny", lambda box, d: d / "model.onnx")
    export("a loss network", "lossnet", lambda box, d: box.root / "l.onnx")
    for broken in ("corrupt_weights", "truncated_weights", "config_list", "config_sixty", "config_not_utf8"):
        export(f"--model {broken}", broken, lambda box, d: box.root / "b.onnx")
    cases.append(
        ("a missing model", lambda box: (["export-onnx", str(box.root / "nope"), "-o", str(box.root / "x.onnx")], []))
    )
    return cases


# --- round two: near silence, model directories edited by hand, ensembles, training, streams -----------


def edited_config(directory: Path, **values) -> None:
    config = json.loads((directory / "config.json").read_text())
    config["config"].update(values)
    (directory / "config.json").write_text(json.dumps(config))


def near_silent_wav(path: Path, amplitude: float, channels: int = 1) -> Path:
    import numpy as np
    import soundfile as sf

    x = (np.random.default_rng(0).standard_normal((channels, 16000)) * amplitude).astype(np.float32)
    if channels > 1:
        x[1] = speechlike(1.0)[0]  # a loud channel beside a near-silent one
    sf.write(path, x.T, 16000, subtype="FLOAT")
    return path


def silence_cases(models: dict[str, Path]) -> list:
    """Near-silent float files through the level-normalised model, every engine: silence, never NaN."""
    cases = []
    for amplitude in (1e-45, 1e-43, 1e-42, 1e-38, 1e-30, 1e-12):
        for engine in ("auto", "onnx", "openvino", "torch"):
            for channels in (1, 2):

                def build(box, amplitude=amplitude, engine=engine, channels=channels):
                    source = near_silent_wav(box.root / "quiet.wav", amplitude, channels)
                    model = ["--model", str(models["levelled"]), "--engine", engine, "-q"]
                    return ["denoise", str(source), "-o", str(box.root / "out.wav"), *model], [source]

                cases.append((f"{amplitude:g} amplitude, {channels} ch, --engine {engine}", build))
    return cases


def model_dir_cases(models: dict[str, Path]) -> list:
    """``hushnet denoise --model DIR`` where DIR was edited by hand, on every engine."""
    import numpy as np

    def other_graph(d: Path) -> None:
        (d / "model.onnx").write_bytes((models["tiny2"] / "model.onnx").read_bytes())

    def unfingerprinted(d: Path) -> None:
        import onnx

        graph = onnx.load(str(d / "model.onnx"))
        del graph.metadata_props[:]
        onnx.save(graph, str(d / "model.onnx"))

    edits: dict[str, Callable[[Path], None]] = {
        "input_rms_db -1000": lambda d: edited_config(d, input_rms_db=-1000.0),
        "input_rms_db 1000": lambda d: edited_config(d, input_rms_db=1000.0),
        "input_rms_db NaN": lambda d: edited_config(d, input_rms_db=float("nan")),
        "segment_seconds -4": lambda d: edited_config(d, segment_seconds=-4.0),
        "segment_seconds 0": lambda d: edited_config(d, segment_seconds=0.0),
        "sample_rate 8000": lambda d: edited_config(d, sample_rate=8000),
        "dilated_layers 0": lambda d: edited_config(d, dilated_layers=0),
        "dilated_layers 100": lambda d: edited_config(d, dilated_layers=100),
        "channels 32": lambda d: edited_config(d, channels=32),
        "dry 2": lambda d: edited_config(d, dry=2.0),
        "another model's model.onnx": other_graph,
        "model.onnx without a fingerprint (an old export)": unfingerprinted,
        "model.onnx of random bytes": lambda d: (d / "model.onnx").write_bytes(np.random.default_rng(0).bytes(5000)),
        "model.onnx cut short": lambda d: (d / "model.onnx").write_bytes(
            (d / "model.onnx").read_bytes()[: (d / "model.onnx").stat().st_size // 2]
        ),
        "config.json dry 0.3 (no re-export needed)": lambda d: edited_config(d, dry=0.3),
    }
    cases = []
    for label, edit in edits.items():
        for engine in ("auto", "onnx", "openvino", "torch"):

            def build(box, edit=edit, engine=engine):
                directory = box.copy(models["tiny"], "model")
                edit(directory)
                source = box.copy(INPUTS / "mono16k.wav")
                watched = [source, *sorted(directory.iterdir())]
                argv = ["denoise", str(source), "-o", str(box.root / "out.wav"), "--model", str(directory)]
                return [*argv, "--engine", engine, "-q"], watched

            cases.append((f"{label}, --engine {engine}", build))
    return cases


def ensemble_cases(models: dict[str, Path]) -> list:
    """``hushnet ensemble`` into folders and files that are not its own."""
    members = [str(models["tiny"]), str(models["levelled"])]
    cases = []

    def ensemble(name: str, prepare: Callable[[Sandbox], tuple[Path, list[Path]]], *extra: str) -> None:
        def build(box):
            target, watched = prepare(box)
            return ["ensemble", *members, "-o", str(target), *extra], watched

        cases.append((name, build))

    def user_folder(box):
        folder = box.root / "proj"
        folder.mkdir()
        (folder / "README.md").write_text("precious\n")
        (folder / "model.onnx").write_bytes(b"the user's own graph")
        return folder, sorted(folder.iterdir())

    def a_file(box):
        (box.root / "notes.txt").write_text("mine\n")
        return box.root / "notes.txt", [box.root / "notes.txt"]

    def another_model(box):
        folder = box.copy(models["tiny2"], "other")
        return folder, sorted(folder.iterdir())

    def empty(box):
        (box.root / "empty").mkdir()
        return box.root / "empty", []

    def earlier(box):
        from hushnet.ensemble import build_ensemble, save_ensemble

        save_ensemble(build_ensemble(members), box.root / "blend", onnx=False)
        return box.root / "blend", []

    ensemble("-o a folder of the user's files", user_folder)
    ensemble("-o a folder of the user's files --no-onnx", user_folder, "--no-onnx")
    ensemble("-o an existing file", a_file)
    ensemble("-o another model's folder", another_model)
    ensemble("-o an empty folder", empty)
    ensemble("-o an earlier ensemble (rebuilt)", earlier)
    ensemble("-o new/deeper folder", lambda box: (box.root / "new" / "deeper", []))
    ensemble("-o a member", lambda box: (Path(members[0]), []))
    ensemble("--weights 0.9 0.3", lambda box: (box.root / "w", []), "--weights", "0.9", "0.3")
    ensemble("--level-db -1000", lambda box: (box.root / "l", []), "--level-db", "-1000")
    return cases


def tiny_corpus(root: Path) -> Path:
    """speech/SPEAKER/*.wav, noise/LABEL/*.wav, rir/: the layout ``hushnet train --data`` reads."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    for speaker in range(4):
        for index in range(2):
            path = root / "speech" / f"spk{speaker}" / f"spk{speaker}_{index}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, speechlike(0.8, seed=10 * speaker + index)[0], 16000)
    for label in ("hum", "hiss"):
        path = root / "noise" / label / f"{label}_0.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.05 * rng.standard_normal(12000)).astype(np.float32), 16000)
    return root


TRAIN_FLAGS = [
    "--channels", "8", "--max-steps", "4", "--checkpoint-every", "2", "--batch-size", "1",
    "--segment-seconds", "0.25", "--validation-items", "1", "--calibration-steps", "1", "--threads", "1",
    "--no-compile", "--precision", "float32", "-q",
]  # fmt: skip


def train_cases(models: dict[str, Path], work: Path) -> list:
    """``hushnet train`` on hostile run folders and data folders (a finished 4-step run is made once)."""
    from hushnet.cli import main

    corpus = tiny_corpus(work / "train-data")
    finished = work / "train-run"
    common = ["--data", str(corpus), "--lossnet", str(models["lossnet"])]
    with open(os.devnull, "w") as quiet:
        import contextlib

        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            assert main(["train", "-o", str(finished), *common, *TRAIN_FLAGS]) == 0, "the starting run failed"
    cases = []

    def train(name: str, prepare: Callable[[Sandbox], tuple[Path, list[Path]]], *extra: str, data=None) -> None:
        def build(box):
            run, watched = prepare(box)
            flags = ["--data", str(data(box)) if data else str(corpus), "--lossnet", str(models["lossnet"])]
            return ["train", "-o", str(run), *flags, *TRAIN_FLAGS, *extra], watched

        cases.append((name, build))

    speech = sorted((corpus / "speech").rglob("*.wav"))  # the inputs: a resumed run rewrites its own files

    def copied_run(damage: Callable[[Path], None] = lambda run: None):
        def prepare(box):
            run = box.copy(finished, "run")
            damage(run)
            return run, speech

        return prepare

    def cut(*parts: str) -> Callable[[Path], None]:
        def damage(run: Path) -> None:
            path = run.joinpath("checkpoints", *parts)
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

        return damage

    def lock_folder(box):
        (box.root / "run" / ".lock").mkdir(parents=True)
        return box.root / "run", speech

    def data_with(change: Callable[[Path], None]) -> Callable[[Sandbox], Path]:
        def data(box):
            copy = box.copy(corpus, "data")
            change(copy)
            return copy

        return data

    def garbage_and_fifo(data: Path) -> None:
        (data / "speech" / "spk0" / "garbage.flac").write_bytes(b"not audio" * 100)
        os.mkfifo(data / "speech" / "spk1" / "pipe.flac")

    def empty_speech(data: Path) -> None:
        shutil.rmtree(data / "speech")
        (data / "speech").mkdir()

    train("a folder named .lock in the run folder", lock_folder)
    for part in ("training_state.safetensors", "model.safetensors", "training_state.json"):
        train(f"--resume, last checkpoint's {part} cut short", copied_run(cut("step_0000004", part)), "--resume",
              "--max-steps", "6")  # fmt: skip
    both = lambda run: (cut("step_0000004", "training_state.safetensors")(run),  # noqa: E731
                        cut("step_0000002", "training_state.safetensors")(run))  # fmt: skip
    train("--resume, every checkpoint damaged", copied_run(both), "--resume", "--max-steps", "6")
    train("--resume --channels 32", copied_run(), "--resume", "--channels", "32")
    train("--resume --norm batch", copied_run(), "--resume", "--norm", "batch")
    train("--resume (continues)", copied_run(), "--resume", "--max-steps", "6")
    train("--batch-size 0", lambda box: (box.root / "run", []), "--batch-size", "0")
    train("--checkpoint-every 0", lambda box: (box.root / "run", []), "--checkpoint-every", "0")
    train("--max-steps 0", lambda box: (box.root / "run", []), "--max-steps", "0")
    train("garbage .flac and a FIFO in speech/", lambda box: (box.root / "run", []), "--max-steps", "1",
          data=data_with(garbage_and_fifo))  # fmt: skip
    train("an empty speech/", lambda box: (box.root / "run", []), data=data_with(empty_speech))
    return cases


def stream_and_array_cases(models: dict[str, Path]) -> list:
    """The Python API: near-silent arrays, streams flushed early, rates below 1 kHz; results must be finite."""
    import numpy as np

    from hushnet.denoiser import Denoiser

    levelled = str(models["levelled"])
    cases = []

    def finite(y) -> object:
        assert np.isfinite(np.asarray(y, dtype=np.float64)).all(), "NON-FINITE RESULT"
        return y

    def call(name: str, run: Callable[[], object], arrays: list | None = None) -> None:
        cases.append((name, lambda box: run_api(name, lambda b: finite(run()), box, arrays)))

    rng = np.random.default_rng(0)
    for amplitude in (1e-45, 1e-43, 1e-42, 1e-38, 1e-20):
        for dtype in (np.float32, np.float64):
            data = (rng.standard_normal(8000) * amplitude).astype(dtype)
            for engine in ("onnx", "openvino", "torch"):
                call(
                    f"denoise({amplitude:g} amplitude {np.dtype(dtype).name}), engine {engine}",
                    lambda data=data, engine=engine: Denoiser.from_pretrained(levelled, engine=engine).denoise(
                        data, 16000
                    ),
                    [data],
                )
    full = np.clip(rng.standard_normal(8000), -1, 1).astype(np.float32)
    call("denoise(full-scale noise)", lambda: Denoiser.from_pretrained(levelled).denoise(full, 16000), [full])
    for rate in (1, 500, 999, 1000):
        call(f"denoise(1-s array, sample_rate={rate})", lambda rate=rate: Denoiser.from_pretrained(levelled).denoise(
            np.zeros(16000, np.float32), rate))  # fmt: skip
    for level in (None, "off"):
        for rate in (16000, 44100):
            opened = lambda rate=rate, level=level: Denoiser.from_pretrained(levelled, level_db=level).stream(rate)  # noqa: E731
            call(f"stream({rate}).flush() with nothing fed, level {level}", lambda opened=opened: opened().flush())

            def empty_feed(opened=opened):
                stream = opened()
                return np.concatenate([stream.feed(np.zeros(0, np.float32)), stream.flush()])

            call(f"stream({rate}).feed(empty) then flush, level {level}", empty_feed)
    return cases


# --- the Python API -------------------------------------------------------------------------------------


def same_array(a, b) -> bool:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    return (
        a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
        if a.dtype != object
        else list(a) == list(b)
    )


def run_api(
    case: str,
    call: Callable[[Sandbox], object],
    box: Sandbox,
    arrays: list | None = None,
    files: list[Path] | None = None,
    results: list[Path] | None = None,
) -> Result:
    """``call(box)``: a documented refusal (a ValueError: AudioError, ModelError, RuntimeOptionError, with
    a one-line message) is an answer; any other exception reaching the caller is counted as a traceback."""
    import numpy as np

    copies = [np.array(a, copy=True) for a in arrays or []]
    hashes = {p: digest(p) for p in files or []}
    before = snapshot(box.root)
    use_scratch(box.scratch)
    status, escaped, note = "ok", False, ""
    try:
        with_limits(lambda: call(box))
    except CaseTimeout:
        status, escaped, note = "timeout", True, "timeout"
    except ValueError as error:
        status, note = type(error).__name__, str(error)[:140]
        escaped = "\n" in str(error).strip() or not str(error).strip()
    except BaseException as error:  # noqa: BLE001
        status, escaped, note = type(error).__name__, True, str(error)[:140]
    unchanged = all(same_array(a, c) for a, c in zip(arrays or [], copies)) and all(
        digest(p) == h for p, h in hashes.items()
    )
    allowed = {os.path.realpath(p) for p in results or []} if status == "ok" else set()
    return Result("Python API", case, status, escaped, unchanged, leftovers(before, snapshot(box.root), allowed), note)


def api_cases(
    good: dict[str, Path], bad: dict[str, Path], models: dict[str, Path]
) -> list[tuple[str, Callable[[Sandbox], Result]]]:
    import numpy as np

    from hushnet.denoiser import Denoiser

    tiny = str(models["tiny"])
    x = speechlike(0.5)[0]
    cases = []

    def option(name: str, **options) -> None:
        cases.append(
            (
                f"Denoiser({name})",
                lambda box: run_api(
                    f"from_pretrained({name})",
                    lambda b: Denoiser.from_pretrained(tiny, **options).denoise(x, 16000),
                    box,
                    [x],
                ),
            )
        )

    for name, options in {
        "dry=-0.1": {"dry": -0.1},
        "dry=1.5": {"dry": 1.5},
        "dry=nan": {"dry": float("nan")},
        "dry='0.5'": {"dry": "0.5"},
        "dry=True": {"dry": True},
        "dry=np.float32(0.5)": {"dry": np.float32(0.5)},
        "level_db=5": {"level_db": 5.0},
        "level_db=-200": {"level_db": -200.0},
        "level_db='loud'": {"level_db": "loud"},
        "level_db=nan": {"level_db": float("nan")},
        "level_db='off'": {"level_db": "off"},
        "level_scope='song'": {"level_scope": "song"},
        "chunk_seconds=0": {"chunk_seconds": 0},
        "chunk_seconds=-1": {"chunk_seconds": -1},
        "chunk_seconds=nan": {"chunk_seconds": float("nan")},
        "chunk_seconds=1e9": {"chunk_seconds": 1e9},
        "threads=0": {"threads": 0},
        "threads=-1": {"threads": -1},
        "threads=100000": {"threads": 100000},
        "threads=2.5": {"threads": 2.5},
        "memory_budget_mb=-1": {"memory_budget_mb": -1},
        "memory_budget_mb=nan": {"memory_budget_mb": float("nan")},
        "device='foo'": {"device": "foo"},
        "engine='tpu'": {"engine": "tpu"},
        "engine='onnx'": {"engine": "onnx"},
    }.items():
        option(name, **options)

    def array(name: str, make: Callable[[], np.ndarray], rate=16000, **kw) -> None:
        def run(box: Sandbox) -> Result:
            data = make()
            return run_api(
                f"denoise({name})", lambda b: Denoiser.from_pretrained(tiny).denoise(data, rate, **kw), box, [data]
            )

        cases.append((name, run))

    array("empty array", lambda: np.zeros(0, np.float32))
    array("3-D array", lambda: np.zeros((2, 2, 100), np.float32))
    array("NaN samples", lambda: np.where(np.arange(x.size) == 3, np.nan, x))
    array("Inf samples", lambda: np.where(np.arange(x.size) == 3, np.inf, x))
    array("int16 samples", lambda: (x * 20000).astype(np.int16))
    array("uint8 samples", lambda: (x * 100 + 128).astype(np.uint8))
    array("int64 samples", lambda: (x * 1000).astype(np.int64))
    array("complex samples", lambda: x.astype(np.complex64))
    array("object array", lambda: np.array(["a", "b"], dtype=object))
    array("bool samples", lambda: x > 0)
    array("a Python list", lambda: list(x[:800]))
    array("float64 samples", lambda: x.astype(np.float64))
    array("4x4 ambiguous", lambda: np.zeros((4, 4), np.float32))
    array("[2, N] stereo", lambda: speechlike(0.3, channels=2))
    array("[N, 2] stereo", lambda: speechlike(0.3, channels=2).T.copy())
    array("[N, 2] with layout channels_first", lambda: speechlike(0.3, channels=2).T.copy(), layout="channels_first")
    array("layout='sideways'", lambda: speechlike(0.3, channels=2), layout="sideways")
    array("65 channels", lambda: np.zeros((65, 1000), np.float32), layout="channels_first")
    array("one sample", lambda: np.ones(1, np.float32) * 0.1)
    array("full-scale square", lambda: np.sign(x).astype(np.float32))
    for rate in (0, -1, 16000.5, "16000", True, None, 10**9, 2**31 - 1, 1, 16000.0, np.int32(22050), float("nan")):
        array(f"sample_rate={rate!r}", lambda: x.copy(), rate=rate)
    return cases + api_file_cases(good, bad, models)


def api_file_cases(good: dict[str, Path], bad: dict[str, Path], models: dict[str, Path]) -> list:
    import numpy as np

    from hushnet.denoiser import Denoiser

    tiny = str(models["tiny"])
    cases = []

    def file_case(name: str, source: Path | None, output: Callable[[Sandbox], Path]) -> None:
        def run(box: Sandbox) -> Result:
            copied = box.copy(source) if source is not None and source.is_file() else (box.root / "missing.wav")
            target = output(box)
            return run_api(
                f"denoise_file({name})",
                lambda b: Denoiser.from_pretrained(tiny).denoise_file(copied, target),
                box,
                files=[copied],
                results=[target],
            )

        cases.append((f"denoise_file({name})", run))

    for name in ("empty.wav", "nan.wav", "truncated.flac", "text.wav", "huge_rate.wav", "zero_frames.wav"):
        file_case(name, bad[name], lambda box: box.root / "out.wav")
    file_case("a missing input", None, lambda box: box.root / "out.wav")
    file_case("output is the input", good["mono16k.wav"], lambda box: box.root / "mono16k.wav")
    file_case("output in a missing folder", good["mono16k.wav"], lambda box: box.root / "new" / "out.wav")
    file_case(
        "output below a file",
        good["mono16k.wav"],
        lambda box: ((box.root / "f").write_text("x"), box.root / "f" / "o.wav")[1],
    )
    file_case("output .mp4", good["mono16k.wav"], lambda box: box.root / "out.mp4")
    file_case("output .txt", good["mono16k.wav"], lambda box: box.root / "out.txt")
    cases.append(
        (
            "denoise_file(/dev/zero)",
            lambda box: run_api(
                "denoise_file(/dev/zero)",
                lambda b: Denoiser.from_pretrained(tiny).denoise_file("/dev/zero", box.root / "o.wav"),
                box,
            ),
        )
    )

    def stream(name: str, make: Callable[[Denoiser], object]) -> None:
        cases.append(
            (
                f"stream: {name}",
                lambda box: run_api(f"stream: {name}", lambda b: make(Denoiser.from_pretrained(tiny)), box),
            )
        )

    stream("channels=0", lambda d: d.stream(16000, 0))
    stream("channels=65", lambda d: d.stream(16000, 65))
    stream("wrong chunk shape", lambda d: d.stream(16000, 2).feed(np.zeros(100, np.float32)))
    stream("NaN chunk", lambda d: d.stream(16000).feed(np.full(100, np.nan, np.float32)))
    stream("rate 0", lambda d: d.stream(0))
    stream(
        "feed after flush",
        lambda d: (lambda s: (s.feed(np.zeros(800, np.float32)), s.flush(), s.feed(np.zeros(800, np.float32))))(
            d.stream(16000)
        ),
    )
    for name in ("corrupt_weights", "config_list", "config_not_utf8", "config_sixty", "lossnet", "corrupt_onnx"):
        engine = "onnx" if name == "corrupt_onnx" else "torch"
        cases.append(
            (
                f"from_pretrained({name})",
                lambda box, name=name, engine=engine: run_api(
                    f"from_pretrained({name})", lambda b: Denoiser.from_pretrained(models[name], engine=engine), box
                ),
            )
        )
    cases.append(
        (
            "from_pretrained(missing)",
            lambda box: run_api("from_pretrained(missing)", lambda b: Denoiser.from_pretrained(box.root / "nope"), box),
        )
    )
    return cases


# --- HTTP -----------------------------------------------------------------------------------------------


class ErrorLog:
    """Log records with a traceback (exc_info) from the server, the framework and the ASGI layer."""

    def __init__(self) -> None:
        import logging

        self.records: list = []
        handler = logging.Handler()
        handler.emit = lambda record: (
            self.records.append(record) if record.exc_info or record.levelno >= logging.ERROR else None
        )
        for name in ("", "hushnet.serve", "uvicorn", "uvicorn.error", "starlette", "fastapi"):
            logging.getLogger(name).addHandler(handler)


def http_client(models: dict[str, Path], scratch: Path, **settings):
    import warnings

    from hushnet.commands.serve import ServeConfig
    from hushnet.denoiser import Denoiser
    from hushnet.serve.app import create_app
    from hushnet.serve.jobs import JobStore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    config = ServeConfig(**settings)
    denoiser = Denoiser.from_pretrained(models["tiny"])
    store = JobStore(denoiser, config.workers, config.max_jobs, config.keep_minutes, root=scratch)
    return TestClient(create_app(denoiser, config, store=store), base_url="http://127.0.0.1:8000")


def wait_job(client, job_id: str) -> None:
    from concurrent.futures import wait

    job = client.app.state.store.jobs.get(job_id)
    if job is not None:
        wait(job.futures, timeout=CASE_SECONDS)


def http_results(models: dict[str, Path], good: dict[str, Path], bad: dict[str, Path], work: Path) -> list[Result]:
    """Every request of every HTTP case, judged one by one; the server's folders are checked at the end."""
    log = ErrorLog()
    results: list[Result] = []
    box = Sandbox.make(work, "http")
    use_scratch(box.scratch)
    sources = {**good, **{k: v for k, v in bad.items() if v.is_file() and k != "fifo.wav"}}
    hashes = {p: digest(p) for p in sources.values()}

    def judge(client, case: str, request: Callable[[], object]) -> object:
        seen = len(log.records)
        try:
            response = with_limits(request)
            status, note = response.status_code, response.text[:100] if response.status_code >= 400 else ""
        except BaseException as error:  # noqa: BLE001  the test client re-raises what the app let escape
            response, status, note = None, "exception", f"{type(error).__name__}: {error}"[:100]
        nonfinite = False
        if response is not None and response.status_code == 200 and "audio" in response.headers.get("content-type", ""):
            import numpy as np
            import soundfile as sf

            try:
                nonfinite = not np.isfinite(sf.read(io.BytesIO(response.content), dtype="float64")[0]).all()
            except Exception:  # noqa: BLE001  a format soundfile cannot read back: not judged here
                pass
        results.append(
            Result("HTTP", case, status, len(log.records) > seen or status == "exception", True, [], note, nonfinite)
        )
        return response

    with http_client(models, box.scratch) as client:
        for name, path in sources.items():
            data = path.read_bytes()
            judge(
                client, f"POST /api/denoise {name}", lambda: client.post("/api/denoise", files={"file": (name, data)})
            )
            created = judge(
                client, f"POST /api/jobs {name}", lambda: client.post("/api/jobs", files={"file": (name, data)})
            )
            if created is not None and created.status_code == 201:
                job_id = created.json()["id"]
                wait_job(client, job_id)
                if name in good:
                    for what in (
                        "output?dry=0.3",
                        "spectrogram?which=input",
                        "spectrogram?which=output&dry=0.5",
                        "input",
                    ):
                        judge(client, f"GET {what} of {name}", lambda: client.get(f"/api/jobs/{job_id}/files/0/{what}"))
                judge(client, f"DELETE job of {name}", lambda: client.delete(f"/api/jobs/{job_id}"))
        malformed_requests(client, judge, box)
        race_requests(client, judge, good)
    limit_requests(models, box, judge, good)
    left = [str(p) for p in box.scratch.rglob("*") if p.name not in FOREIGN]
    results.append(
        Result(
            "HTTP",
            "every job deleted and the server stopped: its folders",
            "-",
            False,
            all(digest(p) == h for p, h in hashes.items()),
            left,
            "server-side error log records: %d" % len(log.records),
        )
    )
    return results


def malformed_requests(client, judge, box: Sandbox) -> None:
    wav = (INPUTS / "mono16k.wav").read_bytes()
    whole, headers = multipart([("file", "a.wav", wav)])
    bodies = {
        "no closing boundary": multipart([("file", "a.wav", wav)], close=False)[0],
        "cut in half": whole[: len(whole) // 2],
        "last 10 bytes missing": whole[:-10],
        "no file field": multipart([("other", None, b"1")])[0],
        "two files to /api/denoise": multipart([("file", "a.wav", wav), ("file", "b.wav", wav)])[0],
        "dry=loud": multipart([("file", "a.wav", wav), ("dry", None, b"loud")])[0],
        "dry=1.5": multipart([("file", "a.wav", wav), ("dry", None, b"1.5")])[0],
        "dry=-1": multipart([("file", "a.wav", wav), ("dry", None, b"-1")])[0],
        "dry=nan": multipart([("file", "a.wav", wav), ("dry", None, b"nan")])[0],
        "dry=inf": multipart([("file", "a.wav", wav), ("dry", None, b"inf")])[0],
        "dry of 40 digits": multipart([("file", "a.wav", wav), ("dry", None, b"0" * 40)])[0],
        "a 5000-character name": multipart([("file", "x" * 5000 + ".wav", wav)])[0],
        "a 100000-character name": multipart([("file", "x" * 100000 + ".wav", wav)])[0],
        "name ../../etc/passwd": multipart([("file", "../../etc/passwd", wav)])[0],
        "name with NUL": multipart([("file", "a\x00b.wav", wav)])[0],
        "empty file part": multipart([("file", "a.wav", b"")])[0],
        "garbage body": os.urandom(3000),
    }
    for label, body in bodies.items():
        for endpoint in ("/api/denoise", "/api/jobs"):
            response = judge(
                client, f"POST {endpoint} {label}", lambda: client.post(endpoint, content=body, headers=headers)
            )
            if response is not None and response.status_code == 201:
                wait_job(client, response.json()["id"])
                client.delete(f"/api/jobs/{response.json()['id']}")
    judge(
        client,
        "POST raw bytes as audio/wav",
        lambda: client.post("/api/denoise", content=wav, headers={"content-type": "audio/wav"}),
    )
    judge(client, "POST without a content type", lambda: client.post("/api/denoise", content=wav))
    judge(
        client,
        "POST multipart without a boundary",
        lambda: client.post("/api/denoise", content=whole, headers={"content-type": "multipart/form-data"}),
    )
    judge(
        client,
        "POST a body longer than its Content-Length",
        lambda: client.post("/api/jobs", content=whole, headers={**headers, "content-length": str(len(whole) - 40)}),
    )
    for path in (
        "/api/jobs/..",
        "/api/jobs/../etc",
        "/api/jobs/" + "a" * 22,
        "/api/jobs/%2e%2e%2f",
        "/api/jobs/x/files/0/output",
        "/api/jobs/x/zip",
        "/api/nothing",
        "/static/../../README.md",
        "/api/jobs/" + "A" * 5000,
    ):
        judge(client, f"GET {path[:60]}", lambda: client.get(path))
    job = client.post("/api/jobs", files={"file": ("a.wav", wav)}).json()["id"]
    wait_job(client, job)
    for query in (
        "files/-1/output",
        "files/99/output",
        "files/abc/output",
        "files/0/output?dry=2",
        "files/0/output?dry=nan",
        "files/0/spectrogram?which=secret",
        "files/0/spectrogram?dry=-1",
        "zip?dry=0.5,0.5",
        "zip?dry=abc",
        "zip?dry=",
        "files/0/output?download=maybe",
    ):
        judge(client, f"GET {query}", lambda: client.get(f"/api/jobs/{job}/{query}"))
    judge(
        client,
        "GET output with Range bytes=0-99",
        lambda: client.get(f"/api/jobs/{job}/files/0/output", headers={"Range": "bytes=0-99"}),
    )
    judge(
        client,
        "GET output with Range bytes=999999-",
        lambda: client.get(f"/api/jobs/{job}/files/0/output", headers={"Range": "bytes=999999-"}),
    )
    judge(client, "GET with Host: evil.example", lambda: client.get("/api/health", headers={"host": "evil.example"}))
    judge(
        client,
        "GET with a cross-site Origin",
        lambda: client.get("/api/health", headers={"origin": "http://evil.example"}),
    )
    judge(client, "GET events of a finished job", lambda: client.get(f"/api/jobs/{job}/events"))
    judge(client, "DELETE", lambda: client.delete(f"/api/jobs/{job}"))
    judge(client, "DELETE again", lambda: client.delete(f"/api/jobs/{job}"))
    judge(client, "GET output after DELETE", lambda: client.get(f"/api/jobs/{job}/files/0/output?dry=0.5"))
    judge(client, "GET /api/health", lambda: client.get("/api/health"))


def race_requests(client, judge, good: dict[str, Path]) -> None:
    """Renders and downloads racing a DELETE: a DELETE from another thread while each request runs."""
    import threading

    data = good["stereo44k.wav"].read_bytes()
    for what in (
        "files/0/output?dry=0.37",
        "files/0/spectrogram?which=output&dry=0.61",
        "zip?dry=0.29",
        "files/0/input",
        "files/0/output",
    ):
        for attempt in range(3):
            job = client.post("/api/jobs", files={"file": ("a.wav", data)}).json()["id"]
            wait_job(client, job)
            deleter = threading.Timer(0.002 * attempt, lambda: client.delete(f"/api/jobs/{job}"))
            deleter.start()
            judge(
                client, f"GET {what} racing a DELETE (try {attempt + 1})", lambda: client.get(f"/api/jobs/{job}/{what}")
            )
            deleter.join()


def limit_requests(models: dict[str, Path], box: Sandbox, judge, good: dict[str, Path]) -> None:
    data = good["stereo44k.wav"].read_bytes()
    with http_client(models, box.scratch, max_upload_mb=0.05) as client:
        judge(
            client,
            "POST over --max-upload-mb (declared)",
            lambda: client.post("/api/denoise", files={"file": ("a.wav", data)}),
        )

        body, headers = multipart([("file", "a.wav", data)])
        judge(
            client,
            "POST over --max-upload-mb (streamed)",
            lambda: client.post(
                "/api/jobs", content=(body[i : i + 4096] for i in range(0, len(body), 4096)), headers=headers
            ),
        )
    with http_client(models, box.scratch, max_jobs=1) as client:
        first = client.post("/api/jobs", files={"file": ("a.wav", data)}).json()["id"]
        judge(client, "POST over --max-jobs", lambda: client.post("/api/jobs", files={"file": ("a.wav", data)}))
        wait_job(client, first)
        client.delete(f"/api/jobs/{first}")
        judge(
            client,
            "POST after a DELETE freed a slot",
            lambda: client.post("/api/denoise", files={"file": ("a.wav", data)}),
        )
    with http_client(models, box.scratch, token="s3cret") as client:
        judge(client, "no token", lambda: client.get("/api/health"))
        judge(client, "wrong token", lambda: client.get("/api/health", headers={"Authorization": "Bearer nope"}))
        judge(client, "token by header", lambda: client.get("/api/health", headers={"Authorization": "Bearer s3cret"}))
        judge(client, "token by query", lambda: client.get("/api/health?token=s3cret"))
        judge(client, "non-ASCII token by query", lambda: client.get("/api/health?token=caf%C3%A9"))
        judge(client, "the page without a token", lambda: client.get("/"))


# --- serve's flags: real processes ----------------------------------------------------------------------


def run_serve(
    case: str, flags: list[str], box: Sandbox, stop: int | None = signal.SIGINT, restart: bool = False
) -> Result:
    """``hushnet serve FLAGS``: refused flags must exit 2 in one line; a server that starts is stopped
    with ``stop`` once it listens (SIGKILL: judged after a restart, which must remove its uploads)."""
    import re
    import subprocess

    import httpx

    env = {**os.environ, "TMPDIR": str(box.scratch), "PYTHONPATH": str(SRC)}
    before = snapshot(box.root)
    command = [sys.executable, "-m", "hushnet.cli", "serve", *flags]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"http://[^:]+:(\d+)/", line)
        if match:
            port = int(match.group(1))
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer ok-token"}
            ) as http:
                http.get("/api/health")
                http.post("/api/jobs", files={"file": ("a.wav", (INPUTS / "mono16k.wav").read_bytes())})
            server.send_signal(stop)
            break
    try:
        rest = server.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        server.kill()
        rest = server.communicate()[1]
    err = "".join(lines) + rest
    note = f"{(err.strip().splitlines() or [''])[0][:120]}"
    if restart:
        again = subprocess.Popen(
            [sys.executable, "-m", "hushnet.cli", "serve", "--port", "0", *flags[2:]],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        again.stderr.readline()
        again.send_signal(signal.SIGINT)
        again.communicate(timeout=60)
        note += "; judged after a restart"
    left = leftovers(before, snapshot(box.root), set())
    return Result("serve flags", case, server.returncode, "Traceback" in err, True, left, note)


HELD: list = []


def serve_cases(models: dict[str, Path]) -> list[tuple[str, list[str], dict]]:
    tiny = str(models["tiny"])
    refused = [
        ("--token ''", ["--token", ""]),
        ("--token café", ["--token", "café"]),
        ("--token 'two words'", ["--token", "two words"]),
        ("--max-upload-mb nan", ["--max-upload-mb", "nan"]),
        ("--max-upload-mb 0", ["--max-upload-mb", "0"]),
        ("--max-upload-mb -1", ["--max-upload-mb", "-1"]),
        ("--max-upload-mb inf", ["--max-upload-mb", "inf"]),
        ("--keep-minutes nan", ["--keep-minutes", "nan"]),
        ("--keep-minutes 0", ["--keep-minutes", "0"]),
        ("--workers 0", ["--workers", "0"]),
        ("--max-jobs 0", ["--max-jobs", "0"]),
        ("--port -1", ["--port", "-1"]),
        ("--port 70000", ["--port", "70000"]),
        ("--threads 0", ["--threads", "0"]),
        ("--memory-budget-mb -1", ["--memory-budget-mb", "-1"]),
        ("--device foo", ["--device", "foo"]),
        ("--device cuda (none here)", ["--device", "cuda"]),
        ("--model missing", ["--model", "/nonexistent/model"]),
        ("--model corrupt weights", ["--model", str(models["corrupt_weights"])]),
        ("--model config.json a list", ["--model", str(models["config_list"])]),
        ("--host 999.1.1.1", ["--host", "999.1.1.1"]),
        ("--port abc", ["--port", "abc"]),
    ]
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    HELD.append(taken)  # kept open until the run ends: the port stays taken
    refused.append(("--port already in use", ["--port", str(taken.getsockname()[1])]))
    cases = [(name, flags + (["--model", tiny] if "--model" not in flags else []), {}) for name, flags in refused]
    cases.append(
        ("valid, stopped with Ctrl-C", ["--port", "0", "--model", tiny, "--token", "ok-token"], {"stop": signal.SIGINT})
    )
    # More threads than cores are capped at the cores with a note: the server starts.
    cases.append(
        (
            "--threads 100000 (capped), stopped with Ctrl-C",
            ["--port", "0", "--model", tiny, "--token", "ok-token", "--threads", "100000"],
            {"stop": signal.SIGINT},
        )
    )
    cases.append(
        (
            "valid, stopped with SIGTERM",
            ["--port", "0", "--model", tiny, "--token", "ok-token"],
            {"stop": signal.SIGTERM},
        )
    )
    cases.append(
        (
            "valid, kill -9 then restarted",
            ["--port", "0", "--model", tiny, "--token", "ok-token"],
            {"stop": signal.SIGKILL, "restart": True},
        )
    )
    return cases


# --- the run --------------------------------------------------------------------------------------------


def isolated(run: Callable[[], Result], group: str, case: str, box: Sandbox) -> Result:
    """``run()`` in a forked child, so that a crash (a segfault, the OOM killer) is one case's result
    and not the end of the run; the child's own state (threads, temp folder) dies with it."""
    import pickle

    before = snapshot(box.root)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(reader)
        try:
            data = pickle.dumps(run())
        except BaseException as error:  # noqa: BLE001
            data = pickle.dumps(
                Result(group, case, "harness error", True, True, [], f"{type(error).__name__}: {error}")
            )
        with os.fdopen(writer, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as incoming:
        data = incoming.read()
    _, status = os.waitpid(pid, 0)
    if data:
        return pickle.loads(data)
    why = (
        f"crashed ({signal.Signals(os.WTERMSIG(status)).name})"
        if os.WIFSIGNALED(status)
        else f"died (status {os.WEXITSTATUS(status)})"
    )
    return Result(group, case, why, True, True, leftovers(before, snapshot(box.root), set()), why)


def run_group(group: str, cases: list, work: Path) -> list[Result]:
    results = []
    for name, build in cases:
        box = Sandbox.make(work, name)
        if group == "Python API":
            results.append(isolated(lambda: build(box), group, name, box))
            continue

        def run(build=build, box=box, name=name) -> Result:
            try:
                argv, inputs = build(box)
            except Exception as error:  # noqa: BLE001  a case that cannot be set up is reported, not skipped
                return Result(group, name, "setup failed", True, True, [], f"{type(error).__name__}: {error}")
            return run_cli(group, name, argv, box, inputs)

        results.append(isolated(run, group, name, box))
    return results


def cpu_line() -> str:
    """This machine's CPU for the table: model, family/model numbers, the class hushnet sees."""
    from hushnet.precision import cpu_numbers, detect_cpu

    cpu, numbers = detect_cpu(), cpu_numbers()
    family, model = numbers.get("cpu family", "?"), numbers.get("model", "?")
    return f"{cpu.model}, family {family} model {model}, class {cpu.name}, {os.cpu_count()} cores"


def table(results: list[Result], seconds: float, load: str, work: str, cpu: str) -> str:
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    groups = list(dict.fromkeys(r.group for r in results))
    lines = [
        "# Robustness: hostile input and faults",
        "",
        f"`python -m pytest tests/robustness --robustness-table` on {time.strftime('%Y-%m-%d')}: {len(results)} cases in {seconds:.0f} s, two groups at a time (load average before: {load}; CPU: {cpu}).",
        "Exit: the command's status (HTTP status for requests; the exception's type, or ok, for the Python API). Traceback: one reached",
        "the user (stderr, an exception escaping main, an undocumented exception type from the API, a server-side exception logged).",
        "Input unchanged: every input file (and array) byte-identical after. Leftovers: new files or folders in the case's folder or",
        "TMPDIR that are not reported results (after `kill -9`, checked after the next run, which is what removes them; onnxruntime's",
        "own fixed `.ses` telemetry file in the temp folder is not counted).",
        "Non-finite: a result (an output file, a returned array, an HTTP audio body) holding a NaN or infinite sample.",
        "Not here, because they need a live server or a full disk: a stalled upload holding a job slot",
        "(tests/test_serve.py, a real uvicorn) and an ensemble failing mid-write (tests/test_ensemble.py, under a file-size limit).",
        "",
        "| group | cases | tracebacks | inputs changed | with leftovers | HTTP 500 | non-finite results |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in groups + ["all"]:
        rows = [r for r in results if group in ("all", r.group)]
        lines.append(
            f"| {group} | {len(rows)} | {sum(r.traceback for r in rows)} | {sum(not r.input_unchanged for r in rows)} | "
            f"{sum(bool(r.leftovers) for r in rows)} | {sum(r.status == 500 for r in rows)} | "
            f"{sum(r.nonfinite for r in rows)} |"
        )
    for group in groups:
        lines += [
            "",
            f"## {group}",
            "",
            "| case | exit | traceback | input unchanged | leftovers | message or note |",
            "|---|---|---|---|---|---|",
        ]
        for r in (r for r in results if r.group == group):
            note = r.note.replace(work, "$WORK").replace("|", "\\|").replace("\n", " ")
            note = ("NON-FINITE RESULT; " if r.nonfinite else "") + note
            left = ", ".join(Path(p).name for p in r.leftovers)[:80]
            lines.append(
                f"| {r.case.replace('|', '/')[:90]} | {r.status} | {yes(r.traceback)} | {yes(r.input_unchanged)} | {left or 'no'} | {note} |"
            )
    return "\n".join(lines) + "\n"


def preload() -> None:
    """Import what the cases use once, here, so that each forked case does not import it again."""
    import importlib

    for module in (
        "onnxruntime",
        "torch",
        "scipy.stats",
        "scipy.signal",
        "pesq",
        "pystoi",
        "fastapi",
        "httpx",
        "hushnet.cli",
        "hushnet.denoiser",
        "hushnet.commands.denoise",
        "hushnet.evaluate",
        "hushnet.metrics",
        "hushnet.inference.networks",
        "hushnet.serve.app",
        "hushnet.commands.serve",
    ):
        importlib.import_module(module)


def serve_results(models: dict[str, Path], work: Path) -> list[Result]:
    return [run_serve(name, flags, Sandbox.make(work, name), **options) for name, flags, options in serve_cases(models)]


def stream_results(models: dict[str, Path], work: Path) -> list[Result]:
    return [
        replace(r, group="Python API: silence, streams, rates")
        for r in run_group("Python API", stream_and_array_cases(models), work)
    ]


# Each group: how its cases run, given (good inputs, bad inputs, models, work folder).
GROUPS: dict[str, Callable[[dict, dict, dict, Path], list[Result]]] = {
    "denoise": lambda good, bad, models, work: run_group("denoise", denoise_cases(good, bad, models), work),
    "signals": lambda good, bad, models, work: signal_cases(work, models),
    "evaluate": lambda good, bad, models, work: run_group("evaluate", evaluate_cases(models), work),
    "export-onnx": lambda good, bad, models, work: run_group("export-onnx", export_cases(models), work),
    "api": lambda good, bad, models, work: run_group("Python API", api_cases(good, bad, models), work),
    "http": lambda good, bad, models, work: http_results(models, good, bad, work),
    "serve": lambda good, bad, models, work: serve_results(models, work),
    "silence": lambda good, bad, models, work: run_group("near silence", silence_cases(models), work),
    "models": lambda good, bad, models, work: run_group("model directories", model_dir_cases(models), work),
    "ensemble": lambda good, bad, models, work: run_group("ensemble", ensemble_cases(models), work),
    "train": lambda good, bad, models, work: run_group("train", train_cases(models, work), work),
    "streams": lambda good, bad, models, work: stream_results(models, work),
}
MATERIAL_INDEX = "material.json"


def prepare(material: Path) -> None:
    """Write the cases' inputs and models under ``material``, with an index the groups read."""
    good, bad = make_inputs(material / "inputs")
    models = make_models(material / "models")
    index = {
        name: {k: str(v) for k, v in paths.items()}
        for name, paths in (("good", good), ("bad", bad), ("models", models))
    }
    (material / MATERIAL_INDEX).write_text(json.dumps(index, indent=1) + "\n")


def run_groups(groups: list[str], material: Path, work: Path, out: Path) -> None:
    """Run ``groups`` one after another in this process (each case in a forked child), writing
    ``out/GROUP.json`` (the results and the seconds taken) as each group ends.

    Run in a fresh process (``python tests/robustness/harness.py``), never inside pytest's: forking a
    process whose thread pools are running can hang the child."""
    from hushnet.temporaries import write_text

    global INPUTS
    INPUTS = material / "inputs"
    index = json.loads((material / MATERIAL_INDEX).read_text())
    good, bad, models = ({k: Path(v) for k, v in index[name].items()} for name in ("good", "bad", "models"))
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))
    use_scratch(material / "inputs")  # onnxruntime's telemetry file is written at import: not in any case's folder
    preload()
    out.mkdir(parents=True, exist_ok=True)
    for group in groups:
        folder = work / group
        folder.mkdir(parents=True, exist_ok=True)
        begun = time.perf_counter()
        try:
            results = GROUPS[group](good, bad, models, folder)
        except Exception as error:  # noqa: BLE001  a group that cannot run is one failing result
            results = [
                Result(group, "(the group)", "harness error", True, True, [], f"{type(error).__name__}: {error}")
            ]
        record = {
            "group": group,
            "seconds": round(time.perf_counter() - begun, 1),
            "results": [asdict(r) for r in results],
        }
        # Atomically: the waiting test reads the file as soon as it exists.
        write_text(out / f"{group}.json", json.dumps(record, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run robustness groups (started by tests/robustness/conftest.py).")
    parser.add_argument("groups", nargs="*", help=f"the groups to run, in order: {', '.join(GROUPS)}")
    parser.add_argument("--prepare", action="store_true", help="only write the material")
    parser.add_argument("--material", type=Path, required=True, help="the material folder (see --prepare)")
    parser.add_argument("--work", type=Path, help="where the cases' folders go")
    parser.add_argument("--out", type=Path, help="where each group's GROUP.json goes")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch or onnxruntime start their pools
    if args.prepare:
        prepare(args.material)
        return 0
    unknown = [group for group in args.groups if group not in GROUPS]
    if unknown or args.work is None or args.out is None:
        parser.error(f"unknown groups {unknown}" if unknown else "--work and --out are needed to run groups")
    run_groups(args.groups, args.material, args.work, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
