"""files.py and `hushnet denoise` around it: which inputs, which outputs, checked before any work,
no empty folders left by a failed command, and re-runs that skip this program's own results."""

from __future__ import annotations

import soundfile as sf

from hushnet.cli import main
from hushnet.files import CreatedFolders, Input, check_writable, find_inputs, plan_outputs, without_own_outputs

from helpers import speechlike


def run(arguments, capsys):
    status = main(arguments)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_find_inputs_marks_what_came_from_folders_and_globs(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("d/a.wav", "d/a_denoised.wav", "b.flac"):
        sf.write(tmp_path / name, speechlike(0.05)[0], 16000)
    found, missing = find_inputs(
        [str(tmp_path / "d"), str(tmp_path / "b.flac"), str(tmp_path / "*.flac"), str(tmp_path / "nope.wav")]
    )
    assert [(i.path.name, i.expanded) for i in found] == [
        ("a.wav", True),
        ("a_denoised.wav", True),
        ("b.flac", False),
        ("b.flac", True),
    ]
    assert missing == [f"{tmp_path / 'nope.wav'}: no such file or folder"]
    kept, earlier = without_own_outputs(found)
    assert [i.path.name for i in earlier] == ["a_denoised.wav"] and len(kept) == 3
    # Named explicitly, an earlier result is denoised again.
    assert without_own_outputs([Input(tmp_path / "d" / "a_denoised.wav", None)])[1] == []


def test_plan_outputs_names_and_refusals(tmp_path):
    a, b = tmp_path / "x" / "a.wav", tmp_path / "b.mp4"
    jobs = plan_outputs([Input(a, tmp_path), Input(b, None)], None, lambda p: ".wav")
    assert [j.output for j in jobs] == [tmp_path / "x" / "a_denoised.wav", tmp_path / "b_denoised.wav"]
    jobs = plan_outputs([Input(a, tmp_path), Input(b, None)], str(tmp_path / "out"), lambda p: ".wav")
    assert [j.output for j in jobs] == [tmp_path / "out" / "x" / "a.wav", tmp_path / "out" / "b.wav"]
    same = plan_outputs([Input(a, None)], str(a), lambda p: ".wav")[0]
    assert "refusing to overwrite" in same.error


def test_created_folders_are_removed_only_while_empty(tmp_path):
    folders = CreatedFolders()
    folders.make(tmp_path / "a" / "b" / "c")
    folders.make(tmp_path / "kept")
    (tmp_path / "kept" / "result.wav").write_bytes(b"x")
    folders.remove_empty()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_check_writable_names_the_folder_and_the_format(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert check_writable(tmp_path / "new" / "out.wav") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a_file"
    ]  # checked without making the folder; the probe is gone
    message = check_writable(blocker / "sub" / "deeper" / "out.wav")
    assert message.startswith(f"cannot write to {blocker / 'sub' / 'deeper'}")
    assert "cannot write .mp4" in check_writable(tmp_path / "other" / "out.mp4")
    assert not (tmp_path / "other").exists()


def test_unwritable_output_is_reported_before_any_work(tmp_path, write_wav, capsys):
    """Defect 4: the output is probed first; the (missing) model is never even loaded."""
    path = write_wav("in.wav", speechlike(0.3))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    status, _, err = run(
        [
            "denoise",
            str(path),
            "-o",
            str(blocker / "sub" / "deeper" / "out.wav"),
            "--model",
            str(tmp_path / "no-model"),
            "-q",
        ],
        capsys,
    )
    assert status == 1, err
    assert f"error: {path}: cannot write to {blocker / 'sub' / 'deeper'}" in err
    assert "no model directory" not in err and "0 files denoised, 1 failed" in err


def test_refused_output_leaves_no_new_folder(tmp_path, write_wav, tiny_model_dir, capsys):
    """Defect 8: `-o /new/dir/out.mp4` is refused without creating /new/dir; so is a failed file."""
    path = write_wav("in.wav", speechlike(0.3))
    status, _, err = run(
        ["denoise", str(path), "-o", str(tmp_path / "new" / "dir" / "out.mp4"), "--model", str(tiny_model_dir), "-q"],
        capsys,
    )
    assert status == 1 and "cannot write .mp4" in err
    assert not (tmp_path / "new").exists()
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    status, _, err = run(
        ["denoise", str(bad), "-o", str(tmp_path / "new" / "dir" / "out.wav"), "--model", str(tiny_model_dir), "-q"],
        capsys,
    )
    assert status == 1 and "not a readable audio file" in err
    assert not (tmp_path / "new").exists()


def test_rerunning_a_folder_skips_its_own_results(tmp_path, tiny_model_dir, capsys):
    """Defect 5: the second run denoises the originals again and leaves the *_denoised files alone."""
    folder = tmp_path / "takes"
    folder.mkdir()
    for name in ("a.wav", "b.flac"):
        sf.write(folder / name, speechlike(0.3)[0], 16000)
    assert run(["denoise", str(folder), "--model", str(tiny_model_dir), "-q"], capsys)[0] == 0
    first = sorted(p.name for p in folder.iterdir())
    assert first == ["a.wav", "a_denoised.wav", "b.flac", "b_denoised.flac"]
    status, _, err = run(["denoise", str(folder), "--model", str(tiny_model_dir), "-q"], capsys)
    assert status == 0, err
    assert "skipping 2 earlier results" in err and "2 files denoised, 0 failed" in err
    assert sorted(p.name for p in folder.iterdir()) == first


def test_a_manifest_lists_inputs_relative_to_itself(tmp_path, write_wav, tiny_model_dir, capsys):
    (tmp_path / "set" / "a").mkdir(parents=True)
    write_wav("set/a/one.wav", speechlike(0.3)[0])
    write_wav("set/two_denoised.wav", speechlike(0.3, seed=1)[0])  # listed by name: denoised like any named file
    (tmp_path / "set" / "list.csv").write_text("path,speaker\na/one.wav,s1\ntwo_denoised.wav,s2\nmissing.wav,s3\n")
    found, missing = find_inputs([str(tmp_path / "set" / "list.csv")])
    assert [(i.path.name, i.root) for i in found] == [
        ("one.wav", tmp_path / "set"),
        ("two_denoised.wav", tmp_path / "set"),
    ]
    assert missing == [f"missing.wav (listed in {tmp_path / 'set' / 'list.csv'}): no such file"]
    status, _, err = run(
        [
            "denoise",
            str(tmp_path / "set" / "list.csv"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny_model_dir),
            "-q",
        ],
        capsys,
    )
    assert status == 1 and "error: missing.wav (listed in" in err
    assert (tmp_path / "out" / "a" / "one.wav").is_file() and (tmp_path / "out" / "two_denoised.wav").is_file()


def test_a_manifest_without_a_path_column_is_one_line(tmp_path):
    (tmp_path / "list.csv").write_text("file,speaker\na.wav,s1\n")
    assert find_inputs([str(tmp_path / "list.csv")]) == (
        [],
        [f"{tmp_path / 'list.csv'}: a manifest needs a 'path' column (or a single column of paths)"],
    )


def test_an_output_folder_inside_the_input_folder_is_not_an_input(tmp_path, tiny_model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.wav", "b.wav"):
        sf.write(folder / name, speechlike(0.3)[0], 16000)
    for attempt in range(2):
        status, _, err = run(
            ["denoise", str(folder), "-o", str(folder / "clean"), "--model", str(tiny_model_dir), "-q"], capsys
        )
        assert status == 0 and "2 files denoised, 0 failed" in err, err
    assert "skipping 2 files inside the output folder" in err
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "a.wav",
        "b.wav",
        "clean",
        "clean/a.wav",
        "clean/b.wav",
    ]


def test_the_same_input_named_twice_is_denoised_once(tmp_path, write_wav, tiny_model_dir, capsys):
    path = write_wav("a.wav", speechlike(0.3))
    status, _, err = run(
        [
            "denoise",
            str(path),
            str(path),
            str(tmp_path / "*.wav"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny_model_dir),
            "-q",
        ],
        capsys,
    )
    assert status == 0 and "1 file denoised, 0 failed" in err, err


def test_an_output_with_a_non_audio_extension_is_refused_not_made_a_folder(tmp_path, write_wav, tiny_model_dir, capsys):
    path = write_wav("a.wav", speechlike(0.3))
    status, _, err = run(
        ["denoise", str(path), "-o", str(tmp_path / "out.txt"), "--model", str(tiny_model_dir), "-q"], capsys
    )
    assert (
        status == 2
        and err.startswith(f"error: -o {tmp_path / 'out.txt'} names a .txt file")
        and not (tmp_path / "out.txt").exists()
    )
    status, _, err = run(
        ["denoise", str(path), "-o", str(tmp_path / "results.v2") + "/", "--model", str(tiny_model_dir), "-q"], capsys
    )
    assert status == 0 and (tmp_path / "results.v2" / "a.wav").is_file()  # a trailing slash names a folder


def test_a_name_with_a_newline_is_printed_quoted(tmp_path, tiny_model_dir, capsys):
    path = tmp_path / "line\nbreak.wav"
    sf.write(path, speechlike(0.3)[0], 16000)
    status, out, _ = run(
        ["denoise", str(path), "-o", str(tmp_path / "o"), "--model", str(tiny_model_dir), "-q"], capsys
    )
    assert status == 0 and out.splitlines() == [f"{str(path)!r} -> {str(tmp_path / 'o' / path.name)!r}"]
