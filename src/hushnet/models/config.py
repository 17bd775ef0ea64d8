"""The CAN's configuration: a plain dataclass with no torch in sight, so that the light runtime
(onnxruntime, no torch) can read a model directory's ``config.json``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

NORM_MODES = ("per-input", "batch")
# The one rate models run at (every input is resampled to it and back).
MODEL_SAMPLE_RATE = 16000
# Ranges shared by a model's config.json and the flags that set the same things (--level-db, --dry),
# so that a value one refuses is not taken from the other.
LEVEL_DB_RANGE = (-100.0, 0.0)
DRY_RANGE = (0.0, 1.0)
SEGMENT_SECONDS_RANGE = (0.01, 3600.0)  # as --chunk-seconds: 0 or less never ends, more is a whole file in memory
MAX_CHANNELS = 1024
# 16 dilated layers see 131074 samples (8 s) each side; beyond that a shape overflows what engines take.
MAX_DILATED_LAYERS = 16


class ModelConfig:
    """What every network's config dataclass shares: plain-dict round trips that refuse unknown keys
    (a config.json from another version or a typo must not be silently dropped)."""

    what = "model"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.what} config keys: {sorted(unknown)}")
        return cls(**values)


@dataclass
class CANConfig(ModelConfig):
    """Everything needed to rebuild a CAN; saved as ``config.json`` beside the weights."""

    what = "CAN"

    channels: int = 64
    dilated_layers: int = 12
    norm: str = "per-input"
    eps: float = 1e-3
    negative_slope: float = 0.2
    batch_norm_momentum: float = 0.01
    sample_rate: int = 16000
    # Our own models normalise the input RMS to this level (dBFS) and restore the level afterwards,
    # so that their output does not depend on how loud the recording is. None: feed the input as is
    # (the authors' model, which was trained on audio at its natural level).
    input_rms_db: float | None = None
    # Per-input models: inputs longer than this are processed as overlapping segments of this length,
    # each with its own statistics (the length the model was trained on). None: the whole input.
    segment_seconds: float | None = None
    # Default dry/wet: the fraction of the input mixed back into the output (0 = fully denoised).
    dry: float = 0.0

    def __post_init__(self) -> None:
        problem = can_config_problem(self)
        if problem:
            raise ValueError(problem)

    @property
    def dilations(self) -> list[int]:
        """Dilation of each normalised conv layer, in order."""
        return [1] + [2**i for i in range(1, self.dilated_layers + 1)] + [1]

    @property
    def receptive_radius(self) -> int:
        """Samples of context on each side that influence one output sample."""
        return sum(self.dilations)

    @property
    def receptive_field(self) -> int:
        return 2 * self.receptive_radius + 1


def _outside(value, low: float, high: float) -> bool:
    return (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and low <= value <= high)
    )


def can_config_problem(config: CANConfig) -> str | None:
    """Why a CAN config cannot run (one line naming the field and its range), or None."""
    if config.norm not in NORM_MODES:
        return f"norm must be one of {', '.join(NORM_MODES)}, got {config.norm!r}"
    for name, low, high in (("channels", 1, MAX_CHANNELS), ("dilated_layers", 0, MAX_DILATED_LAYERS)):
        value = getattr(config, name)
        if _outside(value, low, high) or int(value) != value:
            return f"{name} must be a whole number from {low} to {high}, got {value!r}"
    if config.sample_rate != MODEL_SAMPLE_RATE or isinstance(config.sample_rate, bool):
        return f"sample_rate must be {MODEL_SAMPLE_RATE} (models run at that rate), got {config.sample_rate!r}"
    ranges = {
        "eps": (1e-12, 1.0),
        "negative_slope": (0.0, 1.0),
        "batch_norm_momentum": (0.0, 1.0),
        "input_rms_db": LEVEL_DB_RANGE,
        "segment_seconds": SEGMENT_SECONDS_RANGE,
        "dry": DRY_RANGE,
    }
    for name, (low, high) in ranges.items():
        value = getattr(config, name)
        if value is None and name in ("input_rms_db", "segment_seconds"):
            continue
        if _outside(value, low, high):
            return f"{name} must be between {low:g} and {high:g}, got {value!r}"
    return None
