import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from hushnet.cli import main
from hushnet.evaluate import Pair, match_folders, read_manifest, score_pairs, summarize

from helpers import DEV, REFERENCE, needs_shared, require_shared


@pytest.fixture
def small_dev(tmp_path):
    """Three dev pairs, and the authors' outputs for them as an 'enhanced' folder."""
    require_shared()
    names = ["p226_001", "p287_001", "p287_002"]
    for role in ("clean", "noisy"):
        (tmp_path / role).mkdir()
        for name in names:
            shutil.copy(DEV / role / f"{name}.flac", tmp_path / role / f"{name}.flac")
    (tmp_path / "enhanced").mkdir()
    for name in names:
        sf.write(
            tmp_path / "enhanced" / f"{name}.wav",
            np.load(REFERENCE / "expected" / f"{name}.npy"),
            16000,
            subtype="FLOAT",
        )
    return tmp_path


@needs_shared
def test_matching_lists_missing_partners(small_dev):
    (small_dev / "noisy" / "p287_002.flac").unlink()
    shutil.copy(DEV / "noisy" / "p287_003.flac", small_dev / "noisy" / "extra.flac")
    matching = match_folders(small_dev / "clean", small_dev / "noisy")
    assert [p.name for p in matching.pairs] == ["p226_001", "p287_001"]
    assert any("p287_002: no noisy file" in m for m in matching.missing)
    assert any("extra: no clean file" in m for m in matching.missing)


def test_manifest_paths_are_relative_to_it(small_dev):
    manifest = small_dev / "m.csv"
    manifest.write_text(
        "clean,enhanced\nclean/p226_001.flac,enhanced/p226_001.wav\nclean/p287_001.flac,enhanced/gone.wav\n"
    )
    matching = read_manifest(manifest)
    assert [p.name for p in matching.pairs] == ["p226_001"] and "gone.wav" in matching.missing[0]


def test_scores_match_the_reference_and_summary_has_intervals(small_dev):
    matching = match_folders(small_dev / "clean", small_dev / "noisy", small_dev / "enhanced")
    rows = score_pairs(matching.pairs, jobs=2)
    assert [r["name"] for r in rows] == ["p226_001", "p287_001", "p287_002"]
    assert rows[0]["pesq_wb"] == pytest.approx(1.6293, abs=0.01) and rows[0]["noisy_pesq_wb"] == pytest.approx(
        1.3624, abs=0.01
    )
    summary = summarize(rows)
    assert summary["pesq_wb"]["n"] == 3 and summary["pesq_wb"]["ci95"] > 0
    assert summary["pesq_wb"]["mean"] == pytest.approx(np.mean([r["pesq_wb"] for r in rows]))


def test_unreadable_file_becomes_an_error_row(small_dev):
    (small_dev / "enhanced" / "p226_001.wav").write_bytes(b"nope")
    rows = score_pairs(
        [Pair("p226_001", small_dev / "clean" / "p226_001.flac", enhanced=small_dev / "enhanced" / "p226_001.wav")]
    )
    assert "error" in rows[0]


def test_cli_with_model_writes_every_report(small_dev, tiny_model_dir, capsys):
    out = small_dev / "report"
    status = main(
        [
            "evaluate",
            "--clean",
            str(small_dev / "clean"),
            "--noisy",
            str(small_dev / "noisy"),
            "--model",
            str(tiny_model_dir),
            "-o",
            str(out),
            "--jobs",
            "1",
            "-q",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "mean ± ci95" in captured.out and "wide-band PESQ" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["enhanced", "per_file.csv", "pesq_vs_snr.png", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 3 and "noisy_pesq_wb" in summary["metrics"]
    assert sf.info(str(out / "enhanced" / "p226_001.wav")).subtype == "FLOAT"


def test_cli_enhanced_folder_mode(small_dev, capsys):
    out = small_dev / "report2"
    status = main(
        [
            "evaluate",
            "--clean",
            str(small_dev / "clean"),
            "--enhanced",
            str(small_dev / "enhanced"),
            "-o",
            str(out),
            "--jobs",
            "1",
        ]
    )
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["stoi"]["mean"] == pytest.approx(np.mean([0.9096, 0.8675, 0.9228]), abs=0.005)


def test_cli_needs_a_reference(capsys):
    assert main(["evaluate", "--noisy", "x"]) == 2
    assert "give --clean" in capsys.readouterr().err


@needs_shared
def test_no_reference_needs_dnsmos(tmp_path, capsys):
    from hushnet.cli import main

    assert main(["evaluate", "--enhanced", str(DEV / "noisy"), "-o", str(tmp_path / "r")]) == 2
    assert "--dnsmos" in capsys.readouterr().err


@needs_shared
@pytest.mark.skipif(
    os.environ.get("HUSHNET_TEST_DNSMOS") != "1",
    reason="DNSMOS is slow: set HUSHNET_TEST_DNSMOS=1 (needs hushnet[dnsmos])",
)
def test_dnsmos_without_reference_scores_every_file_and_tells_clean_from_noisy(tmp_path, capsys):
    from hushnet.cli import main

    names = ["p226_001", "p287_002"]
    means = {}
    for role in ("clean", "noisy"):
        (tmp_path / role).mkdir()
        for name in names:
            shutil.copy(DEV / role / f"{name}.flac", tmp_path / role)
        assert (
            main(
                [
                    "evaluate",
                    "--enhanced",
                    str(tmp_path / role),
                    "--dnsmos",
                    "-o",
                    str(tmp_path / f"r_{role}"),
                    "--jobs",
                    "1",
                    "-q",
                ]
            )
            == 0
        )
        summary = json.loads((tmp_path / f"r_{role}" / "summary.json").read_text())
        assert summary["files"] == 2 and "pesq_wb" not in summary["metrics"]
        means[role] = {key: summary["metrics"][f"dnsmos_{key}"]["mean"] for key in ("sig", "bak", "ovrl")}
    # Measured when written: clean BAK 3.87, noisy 1.22; OVRL 3.21 against 1.25.
    assert means["clean"]["bak"] > means["noisy"]["bak"] + 1.5
    assert means["clean"]["ovrl"] > means["noisy"]["ovrl"] + 1.0


def test_evaluate_without_model_denoises_with_the_default_model(small_dev, tmp_path, capsys):
    """Defect 3: --clean/--noisy alone scores the package default's output (and the noisy baseline), and says so."""
    from hushnet.model_dir import DEFAULT_MODEL

    (small_dev / "noisy" / "p287_002.flac").unlink()  # two files keep it short
    (small_dev / "clean" / "p287_002.flac").unlink()
    out = tmp_path / "report"
    status = main(
        [
            "evaluate",
            "--clean",
            str(small_dev / "clean"),
            "--noisy",
            str(small_dev / "noisy"),
            "-o",
            str(out),
            "--jobs",
            "1",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert status == 0, err
    assert sorted(p.name for p in (out / "enhanced").iterdir()) == ["p226_001.wav", "p287_001.wav"]
    assert (
        f"scoring 2 files: {DEFAULT_MODEL}'s output for {small_dev / 'noisy'}, with {small_dev / 'noisy'} as the noisy baseline"
        in err
    )
    summary = json.loads((out / "summary.json").read_text())
    assert "pesq_wb" in summary["metrics"] and "noisy_pesq_wb" in summary["metrics"]
    assert summary["metrics"]["pesq_wb"]["mean"] > summary["metrics"]["noisy_pesq_wb"]["mean"]
    assert (out / "pesq_vs_snr.png").is_file()


def test_evaluate_help_states_the_default_model(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "denoise --noisy with this model" in help_text and "default: the package default model" in help_text


def test_an_existing_file_as_output_is_refused_before_any_scoring(small_dev, capsys):
    target = small_dev / "report.txt"
    target.write_text("keep me")
    status = main(
        [
            "evaluate",
            "--clean",
            str(small_dev / "clean"),
            "--enhanced",
            str(small_dev / "enhanced"),
            "-o",
            str(target),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.strip() == f"error: -o {target} is a file; give a folder for the reports"
    assert target.read_text() == "keep me"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda x: x[:100], "the enhanced file is too short to score: 100 samples"),
        (lambda x: 0 * x, "the enhanced file is digital silence"),
        (lambda x: x[: x.size // 2], "not a whole result for it"),
    ],
    ids=["100_samples", "silent", "half_length"],
)
def test_unscorable_files_get_a_message_that_says_why(make, message, tmp_path, capsys):
    from helpers import speechlike

    x = speechlike(2.0)[0]
    for role, signal in (("clean", x), ("enhanced", make(x))):
        (tmp_path / role).mkdir()
        sf.write(tmp_path / role / "a.wav", signal, 16000)
    sf.write(tmp_path / "clean" / "b.wav", x, 16000)
    sf.write(tmp_path / "enhanced" / "b.wav", x, 16000)
    status = main(
        [
            "evaluate",
            "--clean",
            str(tmp_path / "clean"),
            "--enhanced",
            str(tmp_path / "enhanced"),
            "-o",
            str(tmp_path / "out"),
            "-q",
            "--jobs",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert (
        status == 1 and "error: a: the " in captured.err and message in captured.err and "Traceback" not in captured.err
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["failed"] == ["a"] and all(
        np.isfinite(v["mean"]) for v in summary["metrics"].values()
    )  # b alone, no -inf mean


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such file"), (bytes(range(256)) * 4, "not a CSV text file")],
    ids=["missing", "binary"],
)
def test_a_missing_or_binary_manifest_is_named(content, message, tmp_path, capsys):
    manifest = tmp_path / "list.csv"
    if content is not None:
        manifest.write_bytes(content)
    assert main(["evaluate", "--manifest", str(manifest), "-o", str(tmp_path / "out"), "-q"]) == 2
    assert capsys.readouterr().err.startswith(f"error: --manifest {manifest}: {message}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_jobs_below_one_are_refused(jobs, small_dev, capsys):
    status = main(
        [
            "evaluate",
            "--clean",
            str(small_dev / "clean"),
            "--enhanced",
            str(small_dev / "enhanced"),
            "-o",
            str(small_dev / "r"),
            "--jobs",
            jobs,
        ]
    )
    assert status == 2 and capsys.readouterr().err.strip() == f"error: --jobs must be at least 1, got {jobs}"
    assert not (small_dev / "r").exists()
