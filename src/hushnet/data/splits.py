"""The train / validation / test split of speakers, noise recordings and room impulse responses.

One rule for every source, so that the synthetic test set (``hushnet make-testset``) and the training
recipe can never overlap:

- Named speakers, noise recordings and rooms of ``../shared/data`` are assigned by hand below: the test
  speakers include the two VCTK speakers of ``valentini_dev`` (p226, p287), whose files must not be
  trained on; the large single-speaker sets (Asterisk, dc_tts, ARCTIC clb, two VCC2016 voices) stay
  in training, since holding one out would remove up to a tenth of the speech.
- ESC-10: fold 5 is test, fold 4 validation (the folds the dataset defines).
- Everything else (LibriSpeech speakers, any user folder): a stable hash of the speaker or recording
  name, 10 % test and 10 % validation. Segments of one recording share its name and so its split.
"""

from __future__ import annotations

import zlib
from typing import Iterable, TypeVar

from hushnet.data.sources import ImpulseResponse, NoiseClip, Utterance

SPLITS = ("train", "validation", "test")

TEST_SPEAKERS = {"vcc2016_TM1", "arctic_slt", "p226", "p287"}
VALIDATION_SPEAKERS = {"vcc2016_SF1", "p225"}
TRAIN_SPEAKERS = {
    "asterisk_allison",
    "asterisk_carlo",
    "asterisk_june",
    "asterisk_maxim",
    "pmatthes",
    "arctic_clb",
    "vcc2016_SM1",
    "vcc2016_TF1",
}

TEST_NOISE_RECORDINGS = {
    "ms_snsd/AirConditioner_6",
    "ms_snsd/VacuumCleaner_1",
    "ms_snsd/Neighbor_6",
    "blanket/coffee-shop",
    "berlin_noise/5b6ddd39-911b-4edb-a227-46887e497740",
    "max_audio/typing",
    "speech_commands/running_tap",
    "blanket/city",
}
VALIDATION_NOISE_RECORDINGS = {
    "ms_snsd/CopyMachine_2",
    "max_audio/applause",
    "speech_commands/exercise_bike",
    "berlin_noise/64710754-d31e-453d-9bda-f66386aa6731",
}
FOLD_SPLITS = {"esc10": {"5": "test", "4": "validation"}}

TEST_ROOMS = {"openair/terrys_typing_room"}
VALIDATION_ROOMS = {"openair/spokane_womans_club"}

Item = TypeVar("Item", Utterance, NoiseClip, ImpulseResponse)


def _hashed(name: str) -> str:
    bucket = zlib.crc32(name.encode()) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def speaker_split(speaker: str) -> str:
    if speaker in TEST_SPEAKERS:
        return "test"
    if speaker in VALIDATION_SPEAKERS:
        return "validation"
    if speaker in TRAIN_SPEAKERS:
        return "train"
    return _hashed(speaker)


def noise_split(clip: NoiseClip) -> str:
    by_fold = FOLD_SPLITS.get(clip.corpus)
    if by_fold is not None and clip.fold:
        return by_fold.get(clip.fold, "train")
    if clip.recording in TEST_NOISE_RECORDINGS:
        return "test"
    if clip.recording in VALIDATION_NOISE_RECORDINGS:
        return "validation"
    return _hashed(clip.recording)


def room_split(response: ImpulseResponse) -> str:
    name = f"{response.corpus}/{response.path.stem}"
    if name in TEST_ROOMS:
        return "test"
    if name in VALIDATION_ROOMS:
        return "validation"
    # Only 9 real rooms: user rooms go to training unless named above.
    return "train"


def split_of(item: Utterance | NoiseClip | ImpulseResponse) -> str:
    if isinstance(item, Utterance):
        return speaker_split(item.speaker)
    if isinstance(item, NoiseClip):
        return noise_split(item)
    return room_split(item)


def select(items: Iterable[Item], split: str | None) -> list[Item]:
    """The items of one split (all of them for None)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [item for item in items if split is None or split_of(item) == split]
