"""The data builder: measured speech properties, the derived folder, ``hushnet build-data``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from hushnet.cli import main
from hushnet.data.build import Selection, build
from hushnet.data.properties import measure, trim_silence
from hushnet.data.sources import speech_utterances

RATE = 16000


def tone(seconds: float, hz: float = 440.0, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * hz * t)


def test_snr_is_the_gap_between_speech_and_pause_levels():
    rng = np.random.default_rng(0)
    floor = 10 ** (-60 / 20) * rng.standard_normal(2 * RATE)  # -60 dBFS noise floor
    signal = floor.copy()
    signal[RATE:] += tone(1.0, amplitude=0.1 * np.sqrt(2))  # a -20 dBFS tone in the second half
    facts = measure(signal, RATE)
    assert facts["level_db"] == pytest.approx(-20, abs=0.5)
    assert facts["floor_db"] == pytest.approx(-60, abs=0.5)
    assert facts["snr_db"] == pytest.approx(40, abs=1)
    assert facts["silence"] == pytest.approx(0.5, abs=0.05)
    assert facts["lead_s"] == pytest.approx(1.0, abs=0.04)
    assert facts["trail_s"] == 0.0


def test_bandwidth_dc_and_clipping():
    assert measure(tone(1.0, 1000), RATE)["bandwidth_hz"] == pytest.approx(1000, abs=20)
    wide = np.random.default_rng(1).standard_normal(RATE) * 0.1
    assert measure(wide, RATE)["bandwidth_hz"] > 7500
    assert measure(tone(1.0) + 0.01, RATE)["dc"] == pytest.approx(0.01 / np.sqrt(0.1**2 / 2 + 0.01**2), rel=1e-2)
    clipped = np.clip(tone(1.0, amplitude=2.0), -1, 1)
    assert 0.5 < measure(clipped, RATE)["clipped"] < 0.9
    assert measure(tone(1.0), RATE)["clipped"] == 0.0


def test_trim_silence_keeps_the_speech_and_a_margin():
    signal = np.concatenate([np.zeros(RATE), tone(0.5), np.zeros(RATE)])
    trimmed = trim_silence(signal, RATE, keep_seconds=0.1)
    assert 0.65 <= len(trimmed) / RATE <= 0.8
    assert np.sum(trimmed**2) == pytest.approx(np.sum(signal**2), rel=1e-6)


@pytest.fixture
def source(tmp_path):
    """A shared-data-style folder: speech with a manifest (a quiet set and a noisy one), noise, rir."""
    root = tmp_path / "source"
    rng = np.random.default_rng(0)
    rows = []
    for index in range(4):
        for corpus, floor_db in (("studio", -70), ("phone", -30)):
            path = root / "speech" / corpus / f"{corpus}_{index}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            audio = 10 ** (floor_db / 20) * rng.standard_normal(RATE)
            audio[RATE // 4 : 3 * RATE // 4] += tone(0.5, 200 + 50 * index)
            audio += 0.02  # a DC offset all along
            sf.write(path, audio, RATE)
            rows.append({"path": f"{corpus}/{path.name}", "set": corpus, "speaker": f"{corpus}{index}", "sex": "F"})
    with open(root / "speech" / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "noise" / "hum").mkdir(parents=True)
    sf.write(root / "noise" / "hum" / "hum_0.wav", 0.05 * rng.standard_normal(RATE), RATE)
    return root


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_build_filters_by_set_and_snr_and_records_why(source, tmp_path):
    output = tmp_path / "derived"
    summary = build(source, output, Selection(min_snr_db=35))
    assert set(summary) == {"studio"} and summary["studio"]["utterances"] == 4
    table = read_csv(output / "speech" / "properties.csv")
    assert len(table) == 8
    assert {row["why"] for row in table if row["set"] == "phone"} == {"SNR below 35"}
    manifest = read_csv(output / "speech" / "manifest.csv")
    assert [row["set"] for row in manifest] == ["studio"] * 4 and float(manifest[0]["snr_db"]) > 35
    assert (output / "noise").resolve() == (source / "noise").resolve()
    # the trainers read the derived folder like the shared one, with the source's own files
    utterances = speech_utterances(output / "speech")
    assert [u.path for u in utterances] == [
        (source / "speech" / r["path"]).resolve()
        for r in read_csv(source / "speech" / "manifest.csv")
        if r["set"] == "studio"
    ]
    assert json.loads((output / "build.json").read_text())["selection"]["min_snr_db"] == 35


def test_cleaning_writes_new_audio_and_never_touches_the_source(source, tmp_path):
    before = {p: p.read_bytes() for p in source.rglob("*.flac")}
    output = tmp_path / "derived"
    build(source, output, Selection(sets=["studio"], remove_dc=True, trim_silence=True))
    manifest = read_csv(output / "speech" / "manifest.csv")
    for row in manifest:
        audio, rate = sf.read(output / "speech" / row["path"])
        assert rate == RATE and len(audio) < 0.8 * RATE
        assert abs(audio.mean()) < 1e-3 and abs(float(row["dc"])) < 0.01
    assert {p: p.read_bytes() for p in source.rglob("*.flac")} == before


def test_an_existing_folder_is_refused_unless_it_is_a_build(source, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a folder made by hushnet build-data"):
        build(source, mine, Selection())
    assert (mine / "notes.txt").read_text() == "precious"
    output = tmp_path / "derived"
    build(source, output, Selection())
    build(source, output, Selection(sets=["phone"]))  # a rebuild replaces its own earlier result
    assert {row["set"] for row in read_csv(output / "speech" / "manifest.csv")} == {"phone"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_cli_builds_and_fails_in_one_line(source, tmp_path, capsys):
    output = tmp_path / "derived"
    assert main(["build-data", "--data", str(source), "-o", str(output), "--sets", "phone"]) == 0
    assert "phone" in capsys.readouterr().out
    assert main(["build-data", "--data", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert main(["build-data", "--data", str(source), "-o", str(tmp_path / "y"), "--sets", "none"]) == 2
    assert "no utterance left" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    assert main(["build-data", "--data", str(source), "-o", str(tmp_path / "z"), "--max-silence", "2"]) == 2


def test_extra_speech_joins_the_source_before_the_selection(source, tmp_path):
    extra = tmp_path / "extra"
    (extra / "vctk").mkdir(parents=True)
    sf.write(extra / "vctk" / "p999_001.flac", tone(1.0, 300), RATE)
    with open(extra / "manifest.csv", "w", newline="") as handle:
        handle.write("path,set,speaker,sex,seconds,license,source\nvctk/p999_001.flac,vctk,p999,F,1.0,CC BY 4.0,x\n")
    output = tmp_path / "derived"
    summary = build(source, output, Selection(sets=["vctk", "studio"]), extra_speech=[extra])
    assert summary["vctk"] == {"utterances": 1, "hours": round(1 / 3600, 4), "speakers": 1}
    rows = read_csv(output / "speech" / "manifest.csv")
    assert rows[-1]["license"] == "CC BY 4.0" and rows[-1]["path"] == str((extra / "vctk" / "p999_001.flac").resolve())
