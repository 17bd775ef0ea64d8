#!/usr/bin/env python3
"""Stage extra clean read speech (VCTK, CMU ARCTIC, LibriTTS) found in public repositories.

Every file below is a genuine human recording that a demo page or a repository ships as the
"original" / "ground truth" / "source" / "target (reference)" / "recording" item next to
converted or synthesised outputs. Converted, synthesised, vocoded, enhanced, noisy, low-passed
or augmented files are never selected.

Input: bare git mirrors (as created by the project's `fetch` tool) under MIRROR_ROOT
(default /work/.mirror), one per repository: MIRROR_ROOT/<owner>+<name>/repo.
Files are read with `git --git-dir=... show <commit>:<path>`.

Output (default /work/main/data/extra_speech):
    <set>/<speaker>/<name>.flac   16 kHz, mono, PCM16 FLAC
    manifest.csv                  path,set,speaker,sex,seconds,license,source
(source = owner/repo/path@commit, like shared/data/speech/manifest.csv)

Processing: channels averaged, resampled with soxr VHQ; if resampling overshoots full scale the
file is scaled to just below full scale (nothing else is changed). Skipped: files shorter than
1 s, files with more than 3 samples at full scale, reserved speakers (p232, p257: held-out test
speakers; p226, p287: reserved), duplicates (same content hash, same speaker+utterance as an
earlier file or as the shared speech set, or one recording contained in another of the same
speaker, found by normalised cross-correlation at 16 kHz).

Usage: python tools/stage_extra_speech.py [--mirror-root DIR] [--out DIR] [--shared DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000
RESERVED = {"p232", "p257", "p226", "p287"}
VCTK_LIC = "CC BY 4.0 (CSTR VCTK Corpus, Univ. of Edinburgh)"
ARCTIC_LIC = "CMU ARCTIC licence (free use, modification and redistribution with notice; Carnegie Mellon Univ.)"
LIBRITTS_LIC = "CC BY 4.0 (LibriTTS, H. Zen et al.; from LibriVox/LibriSpeech)"

# Sex as stated by the demo pages (lvc-vc "pNNN (Male)", StarGANv2-VC F2M/M2F folders,
# SGAN-VC and FlowCPCVC "Female to Male"-type sections, YourTTS F-F/M-M folders, FreeVC F_/M_
# prefixes) or by the shared speech manifest.
# Speakers not listed here get an empty sex field.
VCTK_SEX = {
    "p225": "F",
    "p227": "M",
    "p228": "F",
    "p229": "F",
    "p230": "F",
    "p231": "F",
    "p233": "F",
    "p236": "F",
    "p237": "M",
    "p238": "F",
    "p239": "F",
    "p240": "F",
    "p241": "M",
    "p243": "M",
    "p244": "F",
    "p245": "M",
    "p247": "M",
    "p251": "M",
    "p253": "F",
    "p254": "M",
    "p256": "M",
    "p258": "M",
    "p259": "M",
    "p261": "F",
    "p262": "F",
    "p264": "F",
    "p267": "F",
    "p270": "M",
    "p272": "M",
    "p273": "M",
    "p274": "M",
    "p276": "F",
    "p277": "F",
    "p279": "M",
    "p280": "F",
    "p284": "M",
    "p286": "M",
    "p293": "F",
    "p294": "F",
    "p302": "M",
    "p308": "F",
    "p311": "M",
    "p312": "F",
    "p314": "F",
    "p315": "M",
    "p317": "F",
    "p318": "F",
    "p326": "M",
    "p329": "F",
    "p334": "M",
    "p335": "F",
    "p340": "F",
    "p347": "M",
    "p351": "F",
    "p360": "M",
    "p362": "F",
    "p363": "M",
    "p374": "M",
    "p376": "M",
}
# LibriTTS readers with the sex given by the YourTTS demo folder names (<id>_m / <id>_f) or the
# FreeVC demo file names (F_ / M_).
LIBRITTS_SEX = {
    "1089": "M",
    "1188": "M",
    "121": "F",
    "1284": "F",
    "1580": "F",
    "1995": "F",
    "2300": "M",
    "237": "F",
    "260": "M",
    "908": "M",
    "1320": "M",
    "5105": "M",
    "3575": "F",
    "5142": "F",
    "8463": "F",
}
# CMU ARCTIC speakers (festvox documentation).
ARCTIC_SEX = {"aew": "M", "axb": "F", "bdl": "M", "clb": "F", "jmk": "M", "ksp": "M", "rms": "M", "slt": "F"}


def git(gd: Path, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(gd), *args], check=True, capture_output=True).stdout


def list_paths(gd: Path, commit: str) -> list[str]:
    out = git(gd, "ls-tree", "-r", "-z", "--name-only", commit)
    return [p for p in out.decode().split("\0") if p]


# ---------------------------------------------------------------------------------------------
# Source selections. Each returns (path, set, speaker, sex, name, license) tuples.
# ---------------------------------------------------------------------------------------------


def vctk(spk: str, name: str, path: str, sex: str | None = None):
    return (path, "vctk", spk, sex if sex is not None else VCTK_SEX.get(spk, ""), name, VCTK_LIC)


def vctk_matching(paths, pattern: str):
    """VCTK rows for the paths that match ``pattern`` whole: group 1 the speaker, group 2 the utterance."""
    for p in paths:
        m = re.fullmatch(pattern, p)
        if m:
            yield vctk(m[1], f"{m[1]}_{m[2]}", p)


def sel_lvc(paths):
    # LVC-VC demo (gh-pages): audio/vctk_orig/pNNN_UUU.wav = unmodified VCTK source/target
    # utterances; every other audio/* folder holds converted speech.
    yield from vctk_matching(paths, r"audio/vctk_orig/(p\d{3})_(\d{3})\.wav")


def sel_diffwave_sr(paths):
    # docs/samples/origin and docs/samples/16k/origin = "Target" (ground truth) column.
    yield from vctk_matching(paths, r"docs/samples/(?:16k/)?origin/((?:p\d{3}|s5))_(\d{3})_mic(\d)\.wav")


def sel_sganvc(paths):
    # samples/<pair>/source_*.wav and target_*.wav = VCTK recordings (source utterance and
    # target-speaker reference); the other files of each folder are converted speech.
    yield from vctk_matching(paths, r"samples/[^/]+/(?:source|target)_(p\d{3})_(\d{3})_mic\d\.wav")


def sel_starganv2(paths):
    # StarGANv2-VC demo: "Source" and "Target" rows are VCTK recordings (downsampled to 16 kHz
    # by the authors). Crosslingual/*/source.wav (non-English, not VCTK) and Singing/*/source.wav
    # (singing, not VCTK) are excluded; only their VCTK "target" references are kept.
    sexmap = {"F": "F", "M": "M"}
    for p in paths:
        m = re.fullmatch(r"wav/VCTK/(Seen|Unseen)/([FM])2([FM])/(p\d{3})x(p\d{3})/(source|target)\.wav", p)
        if m:
            kind, s_sex, t_sex, src, tgt, role = m.groups()
            spk, sex = (src, sexmap[s_sex]) if role == "source" else (tgt, sexmap[t_sex])
            yield vctk(spk, f"stgv2_{kind.lower()}_{src}x{tgt}_{role}", p, sex)
            continue
        m = re.fullmatch(r"wav/VCTK/Singing/(p\d{3})/target\.wav", p)
        if m:
            yield vctk(m[1], f"stgv2_singing_{m[1]}_target", p)
            continue
        m = re.fullmatch(r"wav/VCTK/Crosslingual/([A-Za-z]+)/target\.wav", p)
        if m:
            spk = {"Japanense": "p228", "Korean": "p244", "Mandarin": "p254"}.get(m[1])
            if spk:
                yield vctk(spk, f"stgv2_crossling_{m[1].lower()}_{spk}_target", p)


def sel_freevc(paths):
    # FreeVC demo: data/wavs/{F,M}_<id>.wav are the source/target recordings (VCTK pNNN_UUU at
    # 48 kHz, LibriTTS <spk>_<chapter>_<utt> at 24 kHz). data/sr/wavs are resampling-augmented
    # (not genuine) and every other folder is converted speech.
    for p in paths:
        m = re.fullmatch(r"data/wavs/([FM])_(p\d{3})_(\d{3})\.wav", p)
        if m:
            yield vctk(m[2], f"{m[2]}_{m[3]}", p, m[1])
            continue
        m = re.fullmatch(r"data/wavs/([FM])_(\d+)_(\d+_\d+_\d+)\.wav", p)
        if m:
            # LibriVox reader id = LibriSpeech speaker id; named like the shared "lsNNNN" speakers.
            yield (p, "libritts", f"ls{m[2]}", m[1], f"{m[2]}_{m[3]}", LIBRITTS_LIC)


def sel_flowcpcvc(paths):
    # FlowCPCVC demo (gh-pages): */source_target_wavs/<src>_to_<tgt>/<id>.wav are the source and
    # target recordings (VCTK test speakers; LibriTTS targets), any2many/flowcpcvc/
    # target_tone_wavs are VCTK target-speaker references and any2many/flowcpcvc/<libritts id>.wav
    # the LibriTTS sources. Everything named *_to_*.wav and the other folders is converted
    # speech; the "yuqi" (emotional, mixed/unknown corpora) folder is left out.
    for p in paths:
        m = re.fullmatch(r"any2any/vctk2(?:vctk|libritts)/source_target_wavs/[^/]+/(p\d{3})_(\d{3})\.wav", p)
        if not m:
            m = re.fullmatch(r"any2many/flowcpcvc/target_tone_wavs/(p\d{3})_(\d{3})\.wav", p)
        if m:
            yield vctk(m[1], f"{m[1]}_{m[2]}", p)
            continue
        m = re.fullmatch(r"any2any/vctk2libritts/source_target_wavs/[^/]+/(\d+)_(\d+_\d+_\d+)(?:_16k)?\.wav", p)
        if not m:
            m = re.fullmatch(r"any2many/flowcpcvc/(\d+)_(\d+_\d+_\d+)(?:_22050)?\.wav", p)
        if m:
            yield (p, "libritts", f"ls{m[1]}", LIBRITTS_SEX.get(m[1], ""), f"{m[1]}_{m[2]}", LIBRITTS_LIC)


def sel_yourtts(paths):
    # YourTTS demo (gh-pages): audios_demo/GT/VCTK/<spk> and audios_demo/GT/Libri-TTS/<spk>_<m|f>
    # are the ground-truth recordings of the test speakers; audios_demo/reference/<id>.wav and
    # audios_demo/Exp.6/EN-EN/*/reference are the VCTK/LibriTTS reference recordings used for
    # zero-shot TTS/VC. Left out: all synthesised/converted folders, the Portuguese MLS
    # recordings (not English) and the speaker-adaptation recordings EN-F/EN-M (no corpus or
    # licence stated).
    for p in paths:
        m = (
            re.fullmatch(r"audios_demo/GT/VCTK/p\d{3}/(p\d{3})_(\d{3})\.wav", p)
            or re.fullmatch(r"audios_demo/reference/(p\d{3})_(\d{3})\.wav", p)
            or re.fullmatch(r"audios_demo/Exp\.6/EN-EN/[FM]-[FM]/reference/(p\d{3})_(\d{3})\.wav", p)
        )
        if m:
            yield vctk(m[1], f"{m[1]}_{m[2]}", p)
            continue
        m = re.fullmatch(r"audios_demo/GT/Libri-TTS/(\d+)_([mf])/\1_(\d+_\d+_\d+)\.wav", p)
        if m:
            yield (p, "libritts", f"ls{m[1]}", m[2].upper(), f"{m[1]}_{m[3]}", LIBRITTS_LIC)
            continue
        m = re.fullmatch(r"audios_demo/reference/(\d+)_(\d+_\d+_\d+)\.wav", p)  # LibriTTS ids only
        if m:
            yield (p, "libritts", f"ls{m[1]}", LIBRITTS_SEX.get(m[1], ""), f"{m[1]}_{m[2]}", LIBRITTS_LIC)


def sel_nuwave(paths):
    # NU-Wave demo: docs/samples/single_x{2,3}/original_48k = ground-truth crops of speaker p225
    # (stated on the page). The multi-speaker crops are left out: their speaker is not given.
    for p in paths:
        m = re.fullmatch(r"docs/samples/single_x(\d)/original_48k/sample_(\d+)\.wav", p)
        if m:
            yield vctk("p225", f"nuwave_single_x{m[1]}_s{m[2]}", p)


def sel_kuleshov(paths):
    # audio-super-res samples: sp1 = single-speaker model on p225 (README: speaker1 = p225,
    # validation files p225_355...). *.hr.wav = high-resolution (original) signal. Only the x4
    # copies are used (x6/x8 folders hold the same utterances). msp/* (unknown test speakers)
    # and extra/* (a copy of sp1.3) are left out.
    for p in paths:
        m = re.fullmatch(r"samples/sp1/4/sp1\.(\d)\.4\.hr\.wav", p)
        if m:
            yield vctk("p225", f"kuleshov_sp1_{m[1]}", p)


def arctic(spk: str, utt: str, path: str):
    return (path, "cmu_arctic", f"arctic_{spk}", ARCTIC_SEX.get(spk, ""), f"arctic_{utt}", ARCTIC_LIC)


def sel_pyroom(paths):
    # pyroomacoustics examples/input_samples/README.md: extracted from the CMU ARCTIC corpus.
    for p in paths:
        m = re.fullmatch(r"examples/input_samples/cmu_arctic_us_([a-z]{3})_(a\d{4})\.wav", p)
        if m:
            yield arctic(m[1], m[2], p)


def sel_r9y9(paths):
    # r9y9.github.io: "Recording" references of the PWG-VUV-D demo (bonus CMU ARCTIC speakers),
    # natural slt speech of the GAN-TTS post (audio/slt, "自然音声") and natural source (clb)
    # / target (slt) speech of the GAN-VC post (audio/ganvc/src, audio/ganvc/tgt).
    for p in paths:
        m = re.fullmatch(
            r"audio/icassp2021-pwg-vuvd/bonus/([a-z]{3})/AnaSyn/\[Test\d+\]-\1_arctic_(b\d{4})_ref-Recording\.wav", p
        )
        if m:
            yield arctic(m[1], m[2], p)
            continue
        m = re.fullmatch(r"audio/slt/arctic_(b\d{4})\.wav", p)
        if m:
            yield arctic("slt", m[1], p)
            continue
        m = re.fullmatch(r"audio/ganvc/(src|tgt)/arctic_(a\d{4})\.wav", p)
        if m:
            yield arctic("clb" if m[1] == "src" else "slt", m[2], p)


# (repository, ref, commit staged on 2026-12-04, selection). The pinned commit is used when the
# mirror has it, else the ref (a warning is printed). Order = preference when the same recording
# occurs twice (full-band, least processed first).
SOURCES = [
    ("anonymousSGANVC/SGAN-VC", "gh-pages", "3b6289e850617d53b31808ea911a7bfd41dbde7f", sel_sganvc),
    ("yoyololicon/diffwave-sr", "HEAD", "8e60d4538e305e972ff59ea5223ca3b23612b4fe", sel_diffwave_sr),
    ("OlaWod/FreeVC-demo", "HEAD", "3bc03ab2f0771a9bdaf8eea63c40833e2ca5da62", sel_freevc),
    ("aijianiula0601/FlowCPCVC", "gh-pages", "518f70614c33f397f243d00ea6b8112650acdc07", sel_flowcpcvc),
    ("Edresson/YourTTS", "gh-pages", "a74087534696806b0bedbf5fd4a4ab8bbb1bbc87", sel_yourtts),
    ("lvc-vc/lvc-vc-demo", "gh-pages", "740a3b13267fe1444b566bbdc7e66e62821e9653", sel_lvc),
    ("starganv2-vc/starganv2-vc.github.io", "HEAD", "6fd387539d4d1b086327bfe8b188aebaa71e5c02", sel_starganv2),
    ("kuleshov/audio-super-res", "HEAD", "45c75f48669d9b6dd3624d426a075855be7c650c", sel_kuleshov),
    ("maum-ai/nuwave", "HEAD", "88aba8683dfa7503ffbe7f0501123248e8f88c2a", sel_nuwave),
    ("r9y9/r9y9.github.io", "HEAD", "c562d42318bf77b06739a8c8d8516b7e91fbc341", sel_r9y9),
    ("LCAV/pyroomacoustics", "HEAD", "6fe43fecb7c358ac9aaa054e7e73641189f1afff", sel_pyroom),
]


# ---------------------------------------------------------------------------------------------


def decode(data: bytes):
    x, sr = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return x, sr


def to16k(x: np.ndarray, sr: int) -> np.ndarray:
    y = x.mean(axis=1)
    if sr != SR:
        y = soxr.resample(y, sr, SR, quality="VHQ")
    peak = np.abs(y).max() if len(y) else 0.0
    lim = 32767 / 32768
    if peak > lim:
        y = y * (lim / peak)
    return y


def contained(a: np.ndarray, b: np.ndarray, thr: float = 0.9) -> bool:
    """True if the shorter signal is (a gain-scaled copy of) a segment of the longer one."""
    if len(a) > len(b):
        a, b = b, a
    if len(a) < SR // 2:
        return False
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    xc = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)[: len(b)]
    # energy of b in each window of len(a)
    c = np.concatenate([[0.0], np.cumsum(b * b)])
    lags = np.arange(len(b))
    end = np.minimum(lags + len(a), len(b))
    eb = c[end] - c[lags]
    ea = float(np.dot(a, a))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = xc / np.sqrt(ea * eb)
    r = np.nan_to_num(r)
    # only full-overlap lags (or near the end, allow a short tail)
    valid = (end - lags) >= 0.9 * len(a)
    return bool(np.max(np.abs(r[valid])) > thr) if valid.any() else False


def load_shared(shared: Path):
    """(speaker, name) keys, source strings and 16 kHz signals per speaker of the shared set."""
    keys, sources, by_spk = set(), set(), {}
    man = shared / "manifest.csv"
    if not man.exists():
        print(f"warning: {man} not found; no de-duplication against the shared set", file=sys.stderr)
        return keys, sources, by_spk
    for row in csv.DictReader(open(man, newline="")):
        stem = Path(row["path"]).stem
        keys.add((row["speaker"], stem))
        sources.add(row["source"].rsplit("@", 1)[0])
        by_spk.setdefault(row["speaker"], []).append(row["path"])
    return keys, sources, by_spk


README_HEAD = """# extra_speech (written by tools/stage_extra_speech.py)

Genuine clean read-speech recordings (VCTK, CMU ARCTIC, LibriTTS) that public demo pages and
repositories ship as ground truth / source / target references. 16 kHz mono PCM16 FLAC; channels
averaged, soxr VHQ resampling, gain reduced only where resampling overshot full scale.
Never included: p232, p257 (held-out test speakers), p226, p287 (reserved).

Changes made: "resampled to 16 kHz mono, converted to FLAC".

Attribution:
- CSTR VCTK Corpus (C. Veaux, J. Yamagishi, K. MacDonald, Univ. of Edinburgh), CC BY 4.0,
  https://datashare.ed.ac.uk/handle/10283/3443
- CMU ARCTIC databases (J. Kominek, A. W. Black, Carnegie Mellon University), free licence with
  notice: http://www.festvox.org/cmu_arctic/
- LibriTTS (H. Zen et al., from LibriSpeech/LibriVox), CC BY 4.0, https://www.openslr.org/60/

| set | speakers | files | minutes | repositories |
| --- | --- | --- | --- | --- |
"""


def write_readme(out: Path, rows: list[dict]) -> None:
    lines = [README_HEAD]
    for set_ in sorted({r["set"] for r in rows}):
        rs = [r for r in rows if r["set"] == set_]
        repos = sorted({"/".join(r["source"].split("/")[:2]) for r in rs})
        lines.append(
            f"| {set_} | {len({r['speaker'] for r in rs})} | {len(rs)} | "
            f"{sum(float(r['seconds']) for r in rs) / 60:.1f} | {', '.join(repos)} |\n"
        )
    (out / "README.md").write_text("".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mirror-root", default="/work/.mirror")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "extra_speech"))
    ap.add_argument("--shared", default="/work/shared/data/speech")
    args = ap.parse_args()

    out = Path(args.out)
    shared = Path(args.shared)
    shared_keys, shared_sources, shared_by_spk = load_shared(shared)
    shared_cache: dict[str, np.ndarray] = {}

    def shared_signals(spk):
        for rel in shared_by_spk.get(spk, []):
            if rel not in shared_cache:
                y, sr = sf.read(shared / rel, dtype="float64", always_2d=True)
                shared_cache[rel] = to16k(y, sr)
            yield rel, shared_cache[rel]

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    rows, hashes, seen_keys = [], set(), set()
    accepted: dict[str, list[tuple[str, np.ndarray]]] = {}
    skipped: list[str] = []
    for repo, ref, pin, select in SOURCES:
        gd = Path(args.mirror_root) / repo.replace("/", "+") / "repo"
        if not gd.exists():
            print(f"missing mirror {gd} (fetch github:{repo}); skipped", file=sys.stderr)
            continue
        if (
            subprocess.run(
                ["git", "--git-dir", str(gd), "cat-file", "-e", f"{pin}^{{commit}}"], capture_output=True
            ).returncode
            == 0
        ):
            commit = pin
        else:
            commit = git(gd, "rev-parse", f"{ref}^{{commit}}").decode().strip()
            print(f"warning: {repo}: pinned commit {pin[:10]} absent, using {ref}={commit[:10]}", file=sys.stderr)
        n_ok = 0
        for path, set_, spk, sex, name, lic in select(list_paths(gd, commit)):
            src = f"{repo}/{path}"
            tag = f"{src}@{commit[:10]}"
            if spk in RESERVED:
                skipped.append(f"{tag}: reserved speaker {spk}")
                continue
            if (spk, name) in shared_keys or src in shared_sources:
                skipped.append(f"{tag}: already in shared set")
                continue
            if (spk, name) in seen_keys:
                skipped.append(f"{tag}: duplicate utterance {spk}/{name}")
                continue
            data = git(gd, "show", f"{commit}:{path}")
            if data.startswith(b"version https://git-lfs"):
                skipped.append(f"{tag}: LFS pointer")
                continue
            try:
                x, sr = decode(data)
            except Exception as e:  # noqa: BLE001
                skipped.append(f"{tag}: undecodable ({e})")
                continue
            if len(x) < sr:
                skipped.append(f"{tag}: shorter than 1 s")
                continue
            nfull = int((np.abs(x) >= 32767 / 32768).sum())
            if nfull > 3:
                skipped.append(f"{tag}: {nfull} samples at full scale")
                continue
            h = hashlib.sha1(np.ascontiguousarray(x.astype(np.float32)).tobytes()).hexdigest()
            if h in hashes:
                skipped.append(f"{tag}: identical content")
                continue
            y = to16k(x, sr)
            dup = next((k for k, z in accepted.get(spk, []) if contained(y, z)), None)
            if dup is None:
                dup = next((k for k, z in shared_signals(spk) if contained(y, z)), None)
                dup = f"shared:{dup}" if dup else None
            if dup is not None:
                skipped.append(f"{tag}: same recording as {dup}")
                continue
            rel = f"{set_}/{spk}/{name}.flac"
            (out / set_ / spk).mkdir(parents=True, exist_ok=True)
            sf.write(out / rel, y, SR, subtype="PCM_16", format="FLAC")
            hashes.add(h)
            seen_keys.add((spk, name))
            accepted.setdefault(spk, []).append((rel, y))
            rows.append(
                {
                    "path": rel,
                    "set": set_,
                    "speaker": spk,
                    "sex": sex,
                    "seconds": f"{len(y) / SR:.3f}",
                    "license": lic,
                    "source": f"{src}@{commit}",
                }
            )
            n_ok += 1
        print(f"{repo}@{commit[:10]}: {n_ok} files")

    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "set", "speaker", "sex", "seconds", "license", "source"])
        w.writeheader()
        w.writerows(rows)
    total = sum(float(r["seconds"]) for r in rows)
    write_readme(out, rows)
    print(f"wrote {len(rows)} files, {total / 60:.1f} min, {len({r['speaker'] for r in rows})} speakers -> {out}")
    for s in skipped:
        print("skip", s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
