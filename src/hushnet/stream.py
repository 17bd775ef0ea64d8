"""Push-style streaming through a :class:`~hushnet.denoiser.Denoiser`'s engine and plan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import soxr

from hushnet.audio.arrays import MAX_CHANNELS, finite_float
from hushnet.audio.formats import MODEL_RATE
from hushnet.errors import AudioError

if TYPE_CHECKING:
    from hushnet.inference.plan import Enhancer, Scheme


class StreamSource(Protocol):
    """What a stream needs of its :class:`~hushnet.denoiser.Denoiser`, spelled here so that this module
    does not import the one that makes its streams."""

    level_db: float | None
    level_scope: str

    def enhancer(self, channels: int, *, level_scope: str | None = None, streaming: bool = False) -> Enhancer: ...

    def prepare(self, scheme: Scheme | None = None) -> None: ...


class DenoiseStream:
    """Push-style streaming: ``feed(chunk)`` returns the output that is final, ``flush()`` the rest.

    Chunks are [samples] (mono) or [channels, samples] float arrays at ``sample_rate``. The output,
    concatenated, equals ``Denoiser.denoise`` of the whole signal (same options), except that a level
    normalised per recording, which needs the whole recording, is normalised per segment here (as
    ``level_scope="segment"``). ``latency`` is the most audio (seconds) that must be fed past an
    output sample before that sample is returned (not counting the resamplers' own short delay).
    """

    def __init__(self, denoiser: StreamSource, sample_rate: int, channels: int = 1) -> None:
        if not 1 <= channels <= MAX_CHANNELS:
            raise AudioError(f"channels must be between 1 and {MAX_CHANNELS}")
        self.sample_rate, self.channels = sample_rate, channels
        # A level per recording needs the whole recording: streams normalise it per segment.
        self.level_scope = "segment" if denoiser.level_db is not None else denoiser.level_scope
        self.enhancer = denoiser.enhancer(channels, level_scope=self.level_scope, streaming=True)
        self.scheme = self.enhancer.scheme
        denoiser.prepare(self.scheme)
        make = lambda a, b: soxr.ResampleStream(a, b, channels, dtype="float32", quality="HQ")  # noqa: E731
        self._in = None if sample_rate == MODEL_RATE else make(sample_rate, MODEL_RATE)
        self._out = None if sample_rate == MODEL_RATE else make(MODEL_RATE, sample_rate)
        self.received = 0
        self.returned = 0
        self._mono: bool | None = None
        self.flushed = False

    @property
    def latency(self) -> float:
        """Seconds of lookahead (see the class docstring)."""
        return self.scheme.lookahead / MODEL_RATE

    def _shape(self, chunk) -> np.ndarray:
        chunk = np.asarray(chunk)
        mono = chunk.ndim == 1
        if self._mono is None:
            self._mono = mono
        if chunk.ndim not in (1, 2) or (mono and self.channels != 1) or (not mono and chunk.shape[0] != self.channels):
            raise AudioError(f"expected [samples] or [{self.channels}, samples] chunks, got shape {chunk.shape}")
        return finite_float(chunk[None] if mono else chunk)

    def _emit(self, y16: np.ndarray, last: bool) -> np.ndarray:
        y = y16 if self._out is None else self._out.resample_chunk(np.ascontiguousarray(y16.T), last=last).T
        y = y[:, : max(0, self.received - self.returned)]
        if last:  # exactly as many samples out as came in
            y = np.pad(y, ((0, 0), (0, self.received - self.returned - y.shape[1])))
        self.returned += y.shape[1]
        y = np.ascontiguousarray(y, dtype=np.float32)
        mono = self._mono if self._mono is not None else self.channels == 1  # flushed before any feed
        return y[0] if mono else y

    def feed(self, chunk) -> np.ndarray:
        """Push samples; returns the denoised samples that are ready (possibly none)."""
        if self.flushed:
            raise AudioError("this stream has been flushed (its input ended): start another with Denoiser.stream()")
        signal = self._shape(chunk)
        self.received += signal.shape[1]
        x16 = signal if self._in is None else self._in.resample_chunk(np.ascontiguousarray(signal.T)).T
        return self._emit(self.enhancer.feed(np.ascontiguousarray(x16)), last=False)

    def flush(self) -> np.ndarray:
        """The rest of the output: the input has ended."""
        if self.flushed:
            raise AudioError("this stream has already been flushed: start another with Denoiser.stream()")
        self.flushed = True
        if self._in is not None:
            tail = self._in.resample_chunk(np.zeros((0, self.channels), dtype=np.float32), last=True).T
            rest = self.enhancer.feed(np.ascontiguousarray(tail))
        else:
            rest = np.zeros((self.channels, 0), dtype=np.float32)
        rest = np.concatenate([rest, self.enhancer.flush()], axis=1)
        return self._emit(rest, last=True)
