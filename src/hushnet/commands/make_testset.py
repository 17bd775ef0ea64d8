"""``hushnet make-testset``: the reproducible synthetic test set from held-out speakers and noise."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from hushnet.data.sources import DEFAULT_DATA
from hushnet.data.testset import DEFAULT_COUNT, DEFAULT_SEED, build_test_set, reserved_summary
from hushnet.errors import AudioError, one_line
from hushnet.options import option


@dataclass
class TestsetConfig:
    """One ``hushnet make-testset`` job."""

    data: str = option(
        DEFAULT_DATA, help="folder with speech/ and noise/ (a relative path is taken from the working folder)"
    )
    output: str = option("testsets/synthetic", short="-o", help="folder to write clean/, noisy/, manifest.csv")
    count: int = option(DEFAULT_COUNT, help="number of files")
    seed: int = option(DEFAULT_SEED, help="seed (2026: the published set)")


def run(config: TestsetConfig) -> int:
    """Write the synthetic test set and say what it holds; returns the exit status."""
    try:
        folder = build_test_set(config.data, config.output, config.count, config.seed)
        summary = reserved_summary(config.data)
    except (FileNotFoundError, ValueError, AudioError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print(
        f"{config.count} noisy/clean pairs in {folder} from {len(summary['speakers'])} held-out speakers "
        f"({summary['speech_minutes']} min) and {len(summary['noise_recordings'])} held-out noise sources ({summary['noise_minutes']} min)"
    )
    return 0
