"""What audio hushnet reads and writes: the model's rate, the file extensions, the sample-rate bound,
and the format a result is written in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from hushnet.errors import AudioError

MODEL_RATE = 16000


@dataclass(frozen=True)
class Format:
    """A file format soundfile reads and writes: its major format and the media type it is served as."""

    major: str
    media_type: str


# The one table of the formats soundfile reads and writes: an output keeps its input's format where
# it is one of these, and the server answers with its media type.
FORMATS = {
    ".wav": Format("WAV", "audio/wav"),
    ".flac": Format("FLAC", "audio/flac"),
    ".ogg": Format("OGG", "audio/ogg"),
    ".oga": Format("OGG", "audio/ogg"),
    ".opus": Format("OGG", "audio/ogg"),
    ".mp3": Format("MP3", "audio/mpeg"),
    ".aif": Format("AIFF", "audio/aiff"),
    ".aiff": Format("AIFF", "audio/aiff"),
    ".aifc": Format("AIFF", "audio/aiff"),
    ".au": Format("AU", "audio/basic"),
    ".caf": Format("CAF", "audio/x-caf"),
    ".w64": Format("W64", "application/octet-stream"),
    ".rf64": Format("RF64", "audio/wav"),
}
WRITABLE_EXTENSIONS = set(FORMATS)
FFMPEG_ONLY_EXTENSIONS = {".m4a", ".aac", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".wma", ".amr", ".3gp"}
# Extensions we look for when given a folder: soundfile's formats plus what ffmpeg usually holds.
AUDIO_EXTENSIONS = WRITABLE_EXTENSIONS | FFMPEG_ONLY_EXTENSIONS

# The highest rate audio interfaces record at; above it a "sample rate" is a corrupt header or a
# mistake (2**31 - 1 Hz read as "no audio samples", 10**9 Hz made the resampler fail).
MAX_SAMPLE_RATE = 768000
# Below this no recording is speech (telephone audio is 8 kHz); a rate of 1 Hz read a 1-s array as
# 4.4 hours of audio.
MIN_SAMPLE_RATE = 1000


def check_sample_rate(rate: int) -> None:
    """AudioError for a rate no recording has."""
    if rate > MAX_SAMPLE_RATE:
        raise AudioError(f"unsupported sample rate {rate} Hz (at most {MAX_SAMPLE_RATE})")
    if rate < MIN_SAMPLE_RATE:
        raise AudioError(f"unsupported sample rate {rate} Hz (at least {MIN_SAMPLE_RATE})")


@dataclass
class AudioInfo:
    """What a file holds, and the format to write a result in."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str  # soundfile major format of the file actually read (WAV for ffmpeg-decoded input)
    subtype: str
    decoded_by_ffmpeg: bool = False
    frames_read: int = 0  # set by read_resampled: headers (MP3 above all) can promise more than is there

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def output_format(info: AudioInfo, extension: str) -> tuple[str, str]:
    """(format, subtype) to write a result in: the input's own where soundfile can write it."""
    extension = extension.lower().lstrip(".")
    known = FORMATS.get(f".{extension}")
    if known is None:
        raise AudioError(f"cannot write .{extension} files; use .wav or .flac")
    major = known.major
    subtype = info.subtype if not info.decoded_by_ffmpeg else "PCM_16"
    if major == "WAV" and info.format == "WAVEX":
        # WAVE_FORMAT_EXTENSIBLE (ffmpeg's choice for 24-bit, float and multichannel WAV) is still .wav.
        major = "WAVEX"
    if major == info.format and sf.check_format(major, subtype):
        return major, subtype
    # Another container: keep the resolution where it can hold it (24-bit WAV to FLAC stays 24-bit;
    # float and 32-bit become 24-bit, FLAC's most).
    if subtype.startswith("PCM") and major not in ("OGG", "MP3") and sf.check_format(major, subtype):
        return major, subtype
    if subtype in ("FLOAT", "DOUBLE", "PCM_32") and major not in ("OGG", "MP3") and sf.check_format(major, "PCM_24"):
        return major, "PCM_24"
    return major, sf.default_subtype(major)


def output_extension(path: Path) -> str:
    """The extension a result for ``path`` is written with: its own where writable, else .wav."""
    extension = path.suffix.lower()
    return extension if extension in WRITABLE_EXTENSIONS else ".wav"


def media_type(extension: str) -> str:
    """The media type of a file with ``extension`` (``.flac``), application/octet-stream when unknown."""
    known = FORMATS.get(extension.lower())
    return known.media_type if known else "application/octet-stream"
