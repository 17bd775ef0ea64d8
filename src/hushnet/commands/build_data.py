"""``hushnet build-data``: a training-data folder whose speech is measured, filtered and cleaned."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from hushnet.data.sources import DEFAULT_DATA
from hushnet.options import option


@dataclass
class BuildDataConfig:
    """One ``hushnet build-data`` job: which utterances of the source's speech/ to keep, and how to clean them."""

    data: str = option(DEFAULT_DATA, help="source folder with speech/ [and noise/, rir/] (read, never changed)")
    output: str = option("data/speech-clean", short="-o", help="the derived folder to write (train with --data)")
    extra_speech: list[str] | None = option(
        None, help="more speech folders (manifest.csv of the same columns, or audio files) to join the source's"
    )
    sets: list[str] | None = option(None, help="keep only these speech sets (the manifest's set column)")
    exclude_sets: list[str] | None = option(None, help="leave out these speech sets")
    speakers: list[str] | None = option(None, help="keep only these speakers")
    min_snr_db: float | None = option(None, help="leave out utterances whose speech-to-pause level gap is below this")
    min_bandwidth_hz: float | None = option(None, help="leave out utterances with 99 %% of their energy below this")
    max_silence: float | None = option(None, help="leave out utterances with a larger fraction of pause frames")
    max_clipped: float | None = option(None, help="leave out utterances with a larger fraction of full-scale samples")
    max_dc: float | None = option(None, help="leave out utterances whose |mean| / RMS is above this")
    remove_dc: bool = option(False, help="subtract each kept utterance's mean (writes new audio)")
    trim_silence: bool = option(
        False, help="cut the pauses before and after the speech, keeping 0.1 s (writes new audio)"
    )


def run(config: BuildDataConfig) -> int:
    """Build the folder and print what it holds; 2 for a source or output that cannot be used."""
    from hushnet.data.build import Selection, build
    from hushnet.errors import AudioError, one_line

    ranges = (("--max-silence", config.max_silence), ("--max-clipped", config.max_clipped))
    for flag, value in ranges:
        if value is not None and not 0 <= value <= 1:
            print(f"error: {flag} is a fraction between 0 and 1, got {value:g}", file=sys.stderr)
            return 2
    selection = Selection(
        sets=config.sets,
        exclude_sets=config.exclude_sets,
        speakers=config.speakers,
        min_snr_db=config.min_snr_db,
        min_bandwidth_hz=config.min_bandwidth_hz,
        max_silence=config.max_silence,
        max_clipped=config.max_clipped,
        max_dc=config.max_dc,
        remove_dc=config.remove_dc,
        trim_silence=config.trim_silence,
    )
    try:
        summary = build(config.data, config.output, selection, config.extra_speech or [])
    except (OSError, ValueError, AudioError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    hours = sum(entry["hours"] for entry in summary.values())
    sets = ", ".join(f"{name} {entry['hours'] * 60:.1f} min" for name, entry in summary.items())
    print(f"{config.output}: {hours:.2f} h of speech ({sets}); train with --data {config.output}")
    return 0
