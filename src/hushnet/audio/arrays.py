"""Arrays as the Python API takes and returns them: dtypes (float and integer PCM), layouts
([channels, samples] or [samples, channels]), checked sample rates, and resampling."""

from __future__ import annotations

import math

import numpy as np
import soxr

from hushnet.audio.formats import check_sample_rate
from hushnet.errors import AudioError

MAX_CHANNELS = 64
LAYOUTS = ("auto", "channels_first", "channels_last")
# Integer sample formats: full scale of each (uint8 is offset binary, as in 8-bit WAV).
_INTEGER_SCALE = {
    np.dtype(np.int8): (128.0, 0.0),
    np.dtype(np.int16): (32768.0, 0.0),
    np.dtype(np.int32): (2147483648.0, 0.0),
    np.dtype(np.uint8): (128.0, 128.0),
}


def checked_rate(value) -> int:
    """A sample rate as an int: ints and integral floats (16000.0) pass; anything else is an AudioError."""
    if isinstance(value, (bool, np.bool_)):
        raise AudioError(f"invalid sample rate {value!r}")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or not float(value).is_integer():
            raise AudioError(f"sample rate must be a whole number of Hz, got {value!r}")
        value = int(value)
    if not isinstance(value, (int, np.integer)) or value <= 0:
        raise AudioError(f"invalid sample rate {value!r}")
    check_sample_rate(int(value))
    return int(value)


def to_channels_first(audio: np.ndarray, layout: str) -> tuple[np.ndarray, bool]:
    """([channels, samples] view, whether it was transposed) of a 2-D array in ``layout``;
    ``auto`` decides only where one reading is possible, else AudioError."""
    if layout not in LAYOUTS:
        raise AudioError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    rows, columns = audio.shape
    if layout == "channels_first":
        signal = audio
    elif layout == "channels_last":
        signal = audio.T
    else:
        first_ok, last_ok = rows <= MAX_CHANNELS, columns <= MAX_CHANNELS
        if first_ok and last_ok and min(rows, columns) > 1:
            raise AudioError(
                f"ambiguous shape {audio.shape}: pass layout='channels_first' ([channels, samples]) or 'channels_last' ([samples, channels])"
            )
        if not first_ok and not last_ok:
            raise AudioError(f"shape {audio.shape} has more than {MAX_CHANNELS} channels either way")
        # One reading has at most MAX_CHANNELS channels (a row vector or column vector is mono).
        signal = audio.T if (last_ok and not first_ok) or (columns == 1 and rows > 1) else audio
    if signal.shape[0] > MAX_CHANNELS:
        raise AudioError(
            f"{signal.shape[0]} channels in layout {layout} (at most {MAX_CHANNELS}): "
            "for [samples, channels] arrays pass layout='channels_last'"
        )
    return signal, signal is not audio


def to_float(audio: np.ndarray) -> np.ndarray:
    """float32 samples of a float or integer PCM array (integers at their full scale)."""
    if audio.dtype in _INTEGER_SCALE:
        scale, offset = _INTEGER_SCALE[audio.dtype]
        return ((audio.astype(np.float32) - offset) / scale).astype(np.float32)
    if audio.dtype.kind != "f":
        raise AudioError(f"unsupported sample type {audio.dtype} (use float, int8/16/32 or uint8)")
    return audio.astype(np.float32, copy=False)


def from_float(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``y`` in ``dtype``: integer PCM rounded and clipped at full scale, floats as they are."""
    if dtype in _INTEGER_SCALE:
        scale, offset = _INTEGER_SCALE[dtype]
        info = np.iinfo(dtype)
        return np.clip(np.round(y.astype(np.float64) * scale + offset), info.min, info.max).astype(dtype)
    return y.astype(dtype, copy=False)


def finite_float(audio: np.ndarray) -> np.ndarray:
    """:func:`to_float`, refusing NaN and infinite samples."""
    signal = to_float(audio)
    if not np.isfinite(signal).all():
        raise AudioError("contains NaN or infinite samples")
    return signal


def signal_of(audio: np.ndarray, sample_rate, layout: str) -> tuple[np.ndarray, int, bool]:
    """A user's array as float32 [channels, samples], its checked rate, and whether it was transposed
    (a [samples, channels] array); AudioError in one line for what cannot be audio."""
    if audio.ndim not in (1, 2) or audio.size == 0:
        raise AudioError("audio must be a non-empty [samples], [channels, samples] or [samples, channels] array")
    rate = checked_rate(sample_rate)
    signal, transposed = to_channels_first(
        audio[None] if audio.ndim == 1 else audio, "channels_first" if audio.ndim == 1 else layout
    )
    return finite_float(signal), rate, transposed


def like_input(y: np.ndarray, audio: np.ndarray, transposed: bool) -> np.ndarray:
    """[channels, samples] float32 ``y`` in the length, shape, layout and dtype of the user's ``audio``."""
    length = audio.shape[-1] if audio.ndim == 1 or not transposed else audio.shape[0]
    y = y[:, :length] if y.shape[1] >= length else np.pad(y, ((0, 0), (0, length - y.shape[1])))
    y = y[0] if audio.ndim == 1 else (y.T if transposed else y)
    return from_float(np.ascontiguousarray(y), audio.dtype)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """[channels, samples] or [samples] float32 from one rate to another (soxr, high quality)."""
    if from_rate == to_rate:
        return samples.astype(np.float32, copy=False)
    return np.ascontiguousarray(soxr.resample(samples.T, from_rate, to_rate, quality="HQ").T, dtype=np.float32)
