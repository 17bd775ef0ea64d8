"""Scoring folders of recordings: matching files, metrics in parallel, tables, summaries and plots
(also the loss-network trainer's scene confusion plot)."""

from __future__ import annotations

import csv
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from hushnet.audio.formats import AUDIO_EXTENSIONS
from hushnet.audio.read import read_audio
from hushnet.errors import one_line
from hushnet.metrics import COMPOSITE_NOTE, dnsmos, score

METRICS = [
    "pesq_wb",
    "csig",
    "cbak",
    "covl",
    "ssnr_db",
    "stoi",
    "estoi",
    "si_sdr_db",
    "snr_db",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_ovrl",
]


@dataclass
class Pair:
    """One file to score: its clean reference, and the noisy input and/or enhanced result."""

    name: str
    clean: Path | None  # None: no reference (only DNSMOS can be scored)
    noisy: Path | None = None
    enhanced: Path | None = None


@dataclass
class Matching:
    pairs: list[Pair]
    missing: list[str] = field(default_factory=list)  # human-readable: which partner is missing where


def _audio_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS}


def match_folders(clean: Path, noisy: Path | None = None, enhanced: Path | None = None) -> Matching:
    """Pair files by name (stem) across folders; files without a partner are listed, not dropped silently."""
    clean_files = _audio_files(clean)
    others = {
        role: _audio_files(folder) for role, folder in (("noisy", noisy), ("enhanced", enhanced)) if folder is not None
    }
    missing = []
    names = set(clean_files)
    for role, files in others.items():
        missing += [
            f"{name}: no {role} file in {noisy if role == 'noisy' else enhanced}"
            for name in sorted(set(clean_files) - set(files))
        ]
        missing += [f"{name}: no clean file in {clean}" for name in sorted(set(files) - set(clean_files))]
        names &= set(files)
    pairs = [
        Pair(n, clean_files[n], others.get("noisy", {}).get(n), others.get("enhanced", {}).get(n))
        for n in sorted(names)
    ]
    return Matching(pairs, sorted(set(missing)))


def read_manifest(path: Path) -> Matching:
    """A CSV with a ``clean`` column and ``noisy`` and/or ``enhanced`` columns (paths relative to it)."""
    base = path.parent
    if not path.is_file():
        raise ValueError(f"--manifest {path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return _read_manifest_rows(path, base, csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"--manifest {path}: not a CSV text file ({type(error).__name__})") from None


def _read_manifest_rows(path: Path, base: Path, reader: csv.DictReader) -> Matching:
    pairs, missing = [], []
    if not reader.fieldnames or "clean" not in reader.fieldnames or not {"noisy", "enhanced"} & set(reader.fieldnames):
        raise ValueError(f"{path}: needs a 'clean' column and a 'noisy' or 'enhanced' column")
    for number, row in enumerate(reader, start=2):
        resolve = lambda key: (base / row[key]) if row.get(key) else None  # noqa: E731
        name = row.get("name") or row.get("file") or Path(row["clean"] or f"line {number}").stem
        pair = Pair(name, resolve("clean"), resolve("noisy"), resolve("enhanced"))
        absent = [str(p) for p in (pair.clean, pair.noisy, pair.enhanced) if p is not None and not p.is_file()]
        if absent:
            missing.append(f"{name} (line {number}): missing {', '.join(absent)}")
        elif pair.clean is None:
            missing.append(f"{name} (line {number}): no clean file named")
        else:
            pairs.append(pair)
    return Matching(pairs, missing)


def _mono(path: Path) -> tuple[np.ndarray, int]:
    samples, rate = read_audio(path)
    return samples.mean(axis=0), rate


def _load_same_rate(clean_path: Path, other_path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    from hushnet.audio.arrays import resample

    clean, clean_rate = _mono(clean_path)
    other, other_rate = _mono(other_path)
    if other_rate != clean_rate:
        other = resample(other, other_rate, clean_rate)
    return clean, other, clean_rate


# PESQ needs a quarter of a second; alignment allows 0.1 s of delay, so a longer length difference
# means the file is not a whole result for its reference (cut short, or another recording).
MIN_SCORE_SECONDS = 0.25
MAX_LENGTH_DIFFERENCE_SECONDS = 0.1


def check_scorable(clean: np.ndarray, other: np.ndarray, rate: int, role: str) -> None:
    """Raise ValueError (one line) for a pair whose scores would be undefined or misleading."""
    for what, signal in (("clean reference", clean), (f"{role} file", other)):
        if signal.size < MIN_SCORE_SECONDS * rate:
            raise ValueError(
                f"the {what} is too short to score: {signal.size} samples ({signal.size / rate:.3f} s; at least {MIN_SCORE_SECONDS} s)"
            )
        if not np.any(signal):
            raise ValueError(f"the {what} is digital silence: its scores are undefined")
    difference = abs(clean.size - other.size) / rate
    if difference > MAX_LENGTH_DIFFERENCE_SECONDS:
        raise ValueError(
            f"the {role} file lasts {other.size / rate:.2f} s but its clean reference {clean.size / rate:.2f} s: "
            "not a whole result for it"
        )


def score_pair(pair: Pair, with_dnsmos: bool = False) -> dict:
    """One row: metrics of the noisy input (``noisy_*``) and of the enhanced result, where present.

    Without a clean reference only DNSMOS is scored (``with_dnsmos`` must then be set).
    """
    row: dict = {"name": pair.name}
    try:
        for role, path in (("noisy", pair.noisy), ("enhanced", pair.enhanced)):
            if path is None:
                continue
            prefix = "" if role == "enhanced" or pair.enhanced is None else "noisy_"
            values: dict = {}
            if pair.clean is not None:
                clean, other, rate = _load_same_rate(pair.clean, path)
                check_scorable(clean, other, rate, role)
                values = score(clean, other, rate)
            if with_dnsmos:
                signal, rate = _mono(path)
                values.update(dnsmos(signal, rate))
            row.update({f"{prefix}{k}": v for k, v in values.items()})
    except Exception as error:  # one bad file must not sink a whole evaluation: report it in its row
        row["error"] = one_line(error)
    return row


def score_pairs(
    pairs: list[Pair], jobs: int = 1, progress: Callable[[], None] | None = None, with_dnsmos: bool = False
) -> list[dict]:
    """Score every pair, in ``jobs`` processes; rows come back in the order of ``pairs``."""
    work = partial(score_pair, with_dnsmos=with_dnsmos)
    with ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else nullcontext() as pool:
        rows = []
        for row in (pool.map if pool else map)(work, pairs):
            rows.append(row)
            if progress:
                progress()
        return rows


def unreferenced(folder: Path, role: str = "enhanced") -> Matching:
    """Every audio file of ``folder`` as a pair without a reference (for DNSMOS alone)."""
    files = _audio_files(folder)
    return Matching([Pair(name, None, **{role: path}) for name, path in files.items()])


def summarize(rows: Iterable[dict]) -> dict:
    """Mean, standard deviation and 95 % confidence interval (Student t) of every numeric column."""
    from scipy.stats import t

    rows = [r for r in rows if "error" not in r]
    keys = [
        k
        for k in (rows[0] if rows else {})
        if k not in ("name", "delay_samples", "length_difference") and isinstance(rows[0][k], float)
    ]
    summary = {}
    for key in keys:
        values = np.array([r[key] for r in rows if key in r and not math.isnan(r[key])])
        n = len(values)
        if n == 0:
            continue
        std = float(values.std(ddof=1)) if n > 1 else 0.0
        half_width = float(t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
        summary[key] = {"mean": float(values.mean()), "std": std, "ci95": half_width, "n": n}
    return summary


def format_table(rows: list[dict], summary: dict) -> str:
    """A plain-text table: one line per file, then mean ± 95 % CI."""
    columns = [c for c in ["noisy_pesq_wb"] + METRICS + ["delay_samples"] if any(c in r for r in rows)]
    header = ["file"] + columns
    lines = [header]
    for r in rows:
        if "error" in r:
            lines.append([r["name"], f"error: {r['error']}"])
            continue
        lines.append([r["name"]] + [_fmt(r.get(c)) for c in columns])
    lines.append(
        ["mean ± ci95"]
        + [f"{summary[c]['mean']:.3f}±{summary[c]['ci95']:.3f}" if c in summary else "" for c in columns]
    )
    widths = [max(len(str(line[i])) for line in lines if i < len(line)) for i in range(len(header))]
    return (
        "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)
        + f"\n{COMPOSITE_NOTE}"
    )


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def write_reports(rows: list[dict], summary: dict, folder: Path, title: str = "") -> list[Path]:
    """per_file.csv, summary.json and (when noisy inputs were scored) pesq_vs_snr.png in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    columns = ["name"] + sorted({k for r in rows for k in r} - {"name"})
    with open(folder / "per_file.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    written.append(folder / "per_file.csv")
    failed = [r["name"] for r in rows if "error" in r]
    (folder / "summary.json").write_text(
        json.dumps(
            {"title": title, "files": len(rows), "failed": failed, "note": COMPOSITE_NOTE, "metrics": summary}, indent=2
        )
        + "\n"
    )
    written.append(folder / "summary.json")
    plotted = [r for r in rows if "noisy_snr_db" in r and "pesq_wb" in r]
    if plotted:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 4))
        x = [r["noisy_snr_db"] for r in plotted]
        y = [r["pesq_wb"] - r["noisy_pesq_wb"] for r in plotted]
        axes.scatter(x, y)
        axes.axhline(0, color="grey", linewidth=0.8)
        axes.set_xlabel("input SNR (dB)")
        axes.set_ylabel("PESQ-WB improvement")
        axes.set_title(title or "PESQ improvement per file")
        figure.tight_layout()
        figure.savefig(folder / "pesq_vs_snr.png", dpi=120)
        plt.close(figure)
        written.append(folder / "pesq_vs_snr.png")
    return written


def plot_confusion(confusion: list[list[int]], names: list[str], path: Path) -> None:
    """A confusion matrix (rows: true class, columns: predicted) as a PNG, counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    figure, axes = plt.subplots(figsize=(7, 6))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (row, column), value in np.ndenumerate(matrix):
        if value:
            axes.text(column, row, str(value), ha="center", va="center", fontsize=6)
    axes.set_title("held-out scene confusion")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))
