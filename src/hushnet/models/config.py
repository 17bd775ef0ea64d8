"""The CAN's configuration: a plain dataclass with no torch in sight, so that the light runtime
(onnxruntime, no torch) can read a model directory's ``config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

NORM_MODES = ("per-input", "batch")


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
        if self.norm not in NORM_MODES:
            raise ValueError(f"norm must be one of {NORM_MODES}, got {self.norm!r}")
        if self.channels < 1 or self.dilated_layers < 0:
            raise ValueError("channels must be >= 1 and dilated_layers >= 0")

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
