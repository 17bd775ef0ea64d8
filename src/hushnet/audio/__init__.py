"""Audio in and out, knowing nothing of models: ``read`` (files in, ffmpeg for other containers),
``write`` (results out, atomically), ``arrays`` (what the Python API takes and returns) and
``formats`` (the extensions, rates and output formats). The names are re-exported here, so that
``from hushnet.audio import X`` keeps working; the package's own modules import from the submodules."""

from hushnet.audio.arrays import (
    LAYOUTS,
    MAX_CHANNELS,
    checked_rate,
    finite_float,
    from_float,
    like_input,
    resample,
    signal_of,
    to_channels_first,
    to_float,
)
from hushnet.audio.formats import (
    AUDIO_EXTENSIONS,
    FFMPEG_ONLY_EXTENSIONS,
    MAX_SAMPLE_RATE,
    MODEL_RATE,
    WRITABLE_EXTENSIONS,
    AudioInfo,
    check_sample_rate,
    output_extension,
    output_format,
)
from hushnet.audio.read import READ_BLOCK_SECONDS, ffmpeg_available, open_audio, read_audio, read_resampled
from hushnet.audio.write import AtomicAudioWriter, write_resampled
from hushnet.errors import AudioError, one_line
from hushnet.temporaries import PendingFile, default_file_mode, scratch_folder

__all__ = [
    "AUDIO_EXTENSIONS",
    "FFMPEG_ONLY_EXTENSIONS",
    "LAYOUTS",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MODEL_RATE",
    "READ_BLOCK_SECONDS",
    "WRITABLE_EXTENSIONS",
    "AtomicAudioWriter",
    "AudioError",
    "AudioInfo",
    "PendingFile",
    "check_sample_rate",
    "checked_rate",
    "default_file_mode",
    "ffmpeg_available",
    "finite_float",
    "from_float",
    "like_input",
    "one_line",
    "open_audio",
    "output_extension",
    "output_format",
    "read_audio",
    "read_resampled",
    "resample",
    "scratch_folder",
    "signal_of",
    "to_channels_first",
    "to_float",
    "write_resampled",
]
