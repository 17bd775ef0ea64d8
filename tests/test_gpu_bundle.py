"""tools/gpu_bundle.py: the data that travels to a lent GPU fits its budget and never holds test material."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hushnet.data.sources import impulse_responses, noise_clips, speech_utterances
from hushnet.data.splits import split_of

from helpers import SHARED, needs_shared

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED / "data"


def load_tool():
    spec = importlib.util.spec_from_file_location("gpu_bundle", ROOT / "tools" / "gpu_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_shared
@pytest.mark.skipif(not (DATA / "speech" / "manifest.csv").is_file(), reason="shared data not present")
def test_packed_subset_fits_the_budget_and_leaves_the_test_split_behind(tmp_path):
    sizes = load_tool().pack_data(DATA, tmp_path, max_mib=4.0)
    assert sum(sizes.values()) <= 4.0 * 2**20 + 200_000  # rooms travel whole (a few hundred kB)
    speech, noise = speech_utterances(tmp_path / "speech"), noise_clips(tmp_path / "noise")
    rooms = impulse_responses(tmp_path / "rir")
    assert speech and noise and rooms
    assert all(item.path.is_file() for item in [*speech, *noise, *rooms])  # every manifest row has its file
    splits = {split_of(item) for item in [*speech, *noise, *rooms]}
    assert splits == {"train", "validation"}
    # Round-robin over speakers: with room for fewer files than there are speakers, one file per voice.
    per_speaker = [sum(u.speaker == name for u in speech) for name in {u.speaker for u in speech}]
    assert len(per_speaker) >= 10 and max(per_speaker) == 1
