"""Scene and tag sets: the DCASE 2016 task 1 and CHiME-Home layouts, and our own mixtures."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from hushnet.data.scenes import CHIME_TAG_NAMES, SceneDataset, TagDataset, chime_home, dcase2016_scenes, noise_scenes
from hushnet.data.sources import noise_clips, speech_utterances

SCENES = ("beach", "bus", "office")


def tone(kind: int, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    rng = np.random.default_rng(seed)
    # Classes that differ in amplitude distribution (sparse clicks, Gaussian noise, a sinusoid): what
    # a network with per-input normalisation and mean pooling can tell apart within a few steps.
    if kind == 0:
        clicks = np.zeros(t.size)
        clicks[rng.integers(0, t.size, size=t.size // 400)] = 0.5
        return (clicks + 0.002 * rng.standard_normal(t.size)).astype(np.float32)
    if kind == 1:
        return (0.05 * rng.standard_normal(t.size)).astype(np.float32)
    return (0.1 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)


def make_dcase2016(root):
    """TUT Acoustic Scenes 2016 development layout: meta.txt, audio/, evaluation_setup/foldK_{train,evaluate,test}.txt."""
    (root / "audio").mkdir(parents=True)
    (root / "evaluation_setup").mkdir()
    meta, train, evaluate = [], [], []
    for label, scene in enumerate(SCENES):
        for recording in range(3):
            for segment in range(2):
                name = f"audio/{chr(97 + label)}{recording:03d}_{30 * segment}_{30 * segment + 30}.wav"
                sf.write(root / name, tone(label, seed=recording * 2 + segment), 16000)
                meta.append(f"{name}\t{scene}\t{chr(97 + label)}{recording:03d}")
                (evaluate if recording == 2 else train).append(f"{name}\t{scene}")
    (root / "meta.txt").write_text("\n".join(meta) + "\n")
    (root / "evaluation_setup" / "fold1_train.txt").write_text("\n".join(train) + "\n")
    (root / "evaluation_setup" / "fold1_evaluate.txt").write_text("\n".join(evaluate) + "\n")
    (root / "evaluation_setup" / "fold1_test.txt").write_text("\n".join(e.split("\t")[0] for e in evaluate) + "\n")
    return root


def make_chime_home(root):
    """CHiME-Home layout: chunks/NAME.csv (with majorityvote), chunks/NAME.16kHz.wav, the DCASE 2016 fold list."""
    (root / "chunks").mkdir(parents=True)
    folds = []
    for index in range(12):
        chunk = f"CR_lounge_220110_0731.s{index}_chunk{index % 3}"
        kind = index % 3
        votes = ("m", "cb", "po")[kind]
        (root / "chunks" / f"{chunk}.csv").write_text(
            f"chunkname,{chunk}\nannotation_a1,{votes}\nannotation_a2,{votes}S\nannotation_a3,{votes}\nmajorityvote,{votes}\n"
        )
        sf.write(root / "chunks" / f"{chunk}.16kHz.wav", tone(kind, 4.0, seed=index), 16000)
        folds.append(f"{index},{chunk},{index % 4}")
    (root / "development_chunks_refined.csv").write_text(
        "\n".join(f"{i},{f.split(',')[1]}" for i, f in enumerate(folds)) + "\n"
    )
    (root / "development_chunks_refined_crossval_dcase2016.csv").write_text("\n".join(folds) + "\n")
    return root


def test_dcase2016_layout_is_parsed_with_recordings_and_folds(tmp_path):
    train, evaluate, names = dcase2016_scenes(make_dcase2016(tmp_path / "TUT-acoustic-scenes-2016-development"))
    assert names == list(SCENES)
    assert len(train) == 12 and len(evaluate) == 6
    assert {c.recording for c in train}.isdisjoint({c.recording for c in evaluate})
    assert {(c.path.name[0], c.label) for c in train} == {("a", 0), ("b", 1), ("c", 2)}
    with pytest.raises(FileNotFoundError, match="TUT Acoustic Scenes"):
        dcase2016_scenes(tmp_path, fold=1)


def test_chime_home_layout_majority_vote_and_folds(tmp_path):
    train, evaluate, names = chime_home(make_chime_home(tmp_path / "chime_home"), fold=0)
    assert names == list(CHIME_TAG_NAMES)
    assert len(evaluate) == 3 and len(train) == 9
    tags = {clip.path.name.split(".16kHz")[0]: clip.tags for clip in train + evaluate}
    assert tags["CR_lounge_220110_0731.s0_chunk0"] == (1,)  # m
    assert tags["CR_lounge_220110_0731.s1_chunk1"] == (0, 5)  # c, b
    assert tags["CR_lounge_220110_0731.s2_chunk2"] == (4, 6)  # p, o
    dataset = TagDataset(evaluate, seed=0)
    audio, target = dataset.item(0, 8000)
    assert audio.shape == (8000,) and target.tolist() == [0, 1, 0, 0, 0, 0, 0]


def test_scene_dataset_crops_and_augments_deterministically(tmp_path):
    train, _, _ = dcase2016_scenes(make_dcase2016(tmp_path / "d"))
    dataset = SceneDataset(train, seed=4)
    a, label = dataset.item(100, 5000)
    b, again = SceneDataset(train, seed=4).item(100, 5000)
    assert np.array_equal(a, b) and label == again and a.shape == (5000,)


def test_our_tag_mixtures_carry_what_was_mixed_in(tiny_corpus, tmp_path):
    speech = speech_utterances(tiny_corpus / "speech")
    # The tiny corpus has no sex column: mark speakers by hand.
    speech = [u.__class__(u.path, u.speaker, "M" if u.speaker in ("spk0", "spk1", "spk2") else "F") for u in speech]
    dataset = TagDataset(
        speech=speech,
        noises=noise_clips(tiny_corpus / "noise"),
        noise_classes=["hum", "hiss"],
        seed=1,
        noise_probability=0.5,
    )
    assert dataset.tag_names == ["adult male speech", "adult female speech", "hum", "hiss"]
    for index in range(20):
        audio, target = dataset.item(index, 4000)
        assert target.sum() >= 1 and np.any(audio)
    silent = [dataset.item(i, 4000)[1] for i in range(200)]
    assert 0.3 < np.mean([t[0] for t in silent]) < 0.7  # male speech present about half the time


@pytest.mark.skipif(
    not (__import__("helpers").SHARED / "data" / "noise" / "manifest.csv").is_file(), reason="shared data not present"
)
def test_noise_scene_task_keeps_recordings_in_one_side():
    from helpers import SHARED

    train, held_out, names = noise_scenes(SHARED / "data")
    assert "dog_bark" in names and len(names) >= 10
    assert {c.recording for c in train}.isdisjoint({c.recording for c in held_out})
