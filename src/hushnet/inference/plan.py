"""How a signal of any length goes through the network: chunks, segments, crossfades (numpy only).

Two schemes, chosen by the model's normalisation:

``chunks`` (fixed-statistics models)
    The network is a fixed filter of finite support, so chunk k's output ``[kC, (k+1)C)`` is computed
    from the input ``[kC - R, (k+1)C + R)`` (R = receptive radius, clipped at the two ends, where the
    network's own zero padding applies): exactly the whole-signal result, in bounded memory.
``segments`` (per-input models, or any model normalising its level per segment)
    Overlapping segments of S samples on a regular grid of hop ``H = S - O``, each processed on its
    own (its own statistics, its own level gain), joined with an O-sample linear crossfade centred in
    each overlap. An input of at most S samples is one segment: exactly the per-file result. The
    last segment ends at the end of the input (full length, so its statistics see S samples); the
    crossfades stay disjoint as long as ``O <= S / 3`` (checked).

Both run incrementally (``Enhancer.feed``/``flush``): the file path, ``Denoiser.denoise`` and the
push streamer all go through the same code, so their outputs agree by construction. Items that are
ready together are batched (several chunks or segments per forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from hushnet.audio import AudioError

RunBatch = Callable[[np.ndarray], np.ndarray]  # [batch, samples] float32 -> same shape
# Most samples (batch x length) in one forward: bounds the engine's activation memory
# (64 channels x 2^18 samples x 4 bytes = 64 MB per activation).
MAX_BATCH_SAMPLES = 1 << 18
FEED_SAMPLES = 1 << 18  # samples of a whole signal handed to an Enhancer at a time
# Fixed-statistics models: output samples per chunk (plus the receptive radius of context each side,
# 8192 samples for the 64-channel CAN: 6 % overhead at 16 s).
DEFAULT_CHUNK_SECONDS = 16.0
# Per-input models: the crossfade between segments (4-s segments with a 1-s linear crossfade
# measured best of those tried: PESQ-WB 2.191 vs 2.202 per file and 2.088 whole-file).
CROSSFADE_SECONDS = 1.0
# Segment length when levels are normalised per segment and the model names none.
DEFAULT_SEGMENT_SECONDS = 4.0
# Activation memory of one whole-input per-input forward, per sample (input, conv output, tail copy).
WHOLE_BYTES_PER_SAMPLE = 3 * 64 * 4
# A channel (or segment) whose RMS is below this is silence: -200 dBFS, under the step of any PCM
# format (32-bit integers: -186 dBFS), where a level gain to speech level would overflow float32.
SILENCE_RMS = 1e-10
# The most a level gain may amplify (a channel at SILENCE_RMS brought to 0 dBFS).
MAX_LEVEL_GAIN = 1.0 / SILENCE_RMS


# Input lengths of the fixed-shape engines (OpenVINO compiles once per shape): multiples of
# FIXED_QUANTUM samples with at most three significant bits (4096 x 1..8, 10, 12, 14, 16, 20, ...),
# so padding up to the next one adds at most a quarter and a lifetime of inputs meets few shapes.
FIXED_QUANTUM = 4096


def fixed_length(samples: int) -> int:
    """The smallest fixed input length that holds ``samples`` samples."""
    quanta = max(1, -(-samples // FIXED_QUANTUM))
    shift = max(0, quanta.bit_length() - 3)
    return -(-quanta // (1 << shift)) * (1 << shift) * FIXED_QUANTUM


def fitted_chunk(samples: int, context: int) -> int:
    """The largest chunk of at most ``samples`` output samples whose input (chunk + context on each
    side) is exactly a fixed length, so that every full chunk fills its shape; ``samples`` itself
    where no such chunk is that small."""
    best = samples
    quanta = 1
    while True:
        length = fixed_length(quanta * FIXED_QUANTUM)
        chunk = length - 2 * context
        if chunk > samples:
            break
        if chunk >= 1:
            best = chunk
        quanta = length // FIXED_QUANTUM + 1
    return best


@dataclass(frozen=True)
class Scheme:
    """``chunks`` (length = chunk, context = receptive radius) or ``segments`` (length, overlap, and
    ``fade``: the crossfade length, centred in the overlap; None = the whole overlap)."""

    kind: str
    length: int
    context: int = 0
    overlap: int = 0
    fade: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("chunks", "segments") or self.length < 1:
            raise ValueError(f"invalid scheme {self}")
        if self.kind == "segments" and not 0 <= 3 * self.overlap <= self.length:
            raise ValueError("the crossfade may be at most a third of the segment")
        if self.fade is not None and not 0 <= self.fade <= self.overlap:
            raise ValueError("the crossfade must fit in the overlap")

    @property
    def crossfade(self) -> int:
        return self.overlap if self.fade is None else self.fade

    @property
    def hop(self) -> int:
        return self.length - self.overlap if self.kind == "segments" else self.length

    @property
    def lookahead(self) -> int:
        """Most input samples past an output sample that must be fed before that sample is returned."""
        if self.kind == "chunks":
            return self.length + self.context
        return self.length + self.hop - self.hop // 2


def crossfade_ramp(overlap: int) -> np.ndarray:
    """Weights of the incoming segment across a join (0 -> 1, linear, symmetric: w + reversed w = 1)."""
    return ((np.arange(overlap) + 0.5) / overlap).astype(np.float32)


def junction(next_start: int, previous_stop: int, overlap: int) -> tuple[int, int]:
    """The crossfade ``[left, right)`` between two overlapping segments: O samples centred in the overlap."""
    left = (next_start + previous_stop) // 2 - overlap // 2
    return left, left + overlap


def choose_scheme(
    norm: str,
    sample_rate: int,
    receptive_radius: int,
    segment_seconds: float | None,
    channels: int,
    level_per_segment: bool,
    chunk_seconds: float,
    memory_budget_mb: float,
) -> Scheme:
    """Chunks (fixed statistics, recording level) or crossfaded segments for a model's normalisation."""
    if norm == "batch" and not level_per_segment:
        return Scheme("chunks", max(1, round(chunk_seconds * sample_rate)), context=receptive_radius)
    if segment_seconds:
        length = round(segment_seconds * sample_rate)
    elif norm == "batch":
        length = round(DEFAULT_SEGMENT_SECONDS * sample_rate)
    else:
        # A per-input model without a segment length: the whole input, up to what the memory
        # budget allows in one forward; longer inputs are cut into segments of that length.
        length = max(3, int(memory_budget_mb * 2**20 / (WHOLE_BYTES_PER_SAMPLE * channels / 64)))
    return Scheme("segments", length, overlap=min(round(CROSSFADE_SECONDS * sample_rate), length // 3))


def silent(sum_of_squares: np.ndarray, count: int) -> np.ndarray:
    """Per channel: whether its RMS over ``count`` samples is below SILENCE_RMS (its output is silence)."""
    return np.sqrt(np.asarray(sum_of_squares, dtype=np.float64) / max(count, 1)) < SILENCE_RMS


def gains_from_energy(sum_of_squares: np.ndarray, count: int, target_rms: float) -> np.ndarray:
    """Per-channel gains to ``target_rms`` from each channel's sum of squares over ``count`` samples
    (1 for silence, at most MAX_LEVEL_GAIN)."""
    rms = np.sqrt(np.asarray(sum_of_squares, dtype=np.float64) / max(count, 1))
    quiet = rms < SILENCE_RMS
    return np.where(quiet, 1.0, np.minimum(MAX_LEVEL_GAIN, target_rms / np.where(quiet, 1.0, rms)))


def level_gains(x: np.ndarray, target_rms: float | None) -> np.ndarray:
    """Per-row gains bringing each row of ``x`` [rows, samples] to ``target_rms`` (1 for silent rows)."""
    if target_rms is None:
        return np.ones(x.shape[0], dtype=np.float64)
    return gains_from_energy(np.square(x, dtype=np.float64).sum(axis=1), x.shape[1], target_rms)


class Enhancer:
    """Incremental enhancement of a [channels, samples] signal: ``feed`` blocks, then ``flush``.

    ``gains``: fixed per-channel level gains (level per recording), or ``segment_level``: the target
    RMS each segment (each row of each item) is brought to. ``dry``: fraction of the input mixed back.
    An item whose input is silence on a channel (RMS below SILENCE_RMS) gives silence there; an
    engine output that is not finite is an AudioError, never returned.
    """

    def __init__(
        self,
        run: RunBatch,
        scheme: Scheme,
        channels: int,
        gains: np.ndarray | None = None,
        segment_level: float | None = None,
        dry: float = 0.0,
        max_batch_samples: int = MAX_BATCH_SAMPLES,
    ) -> None:
        self.run, self.scheme, self.channels = run, scheme, channels
        self.gains = np.ones(channels) if gains is None else np.asarray(gains, dtype=np.float64)
        self.segment_level = segment_level
        self.dry = dry
        self.max_batch_samples = max_batch_samples
        self.buffer = np.zeros((channels, 0), dtype=np.float32)
        self._pending: list[np.ndarray] = []  # fed blocks not yet joined to the buffer (cheap 1-sample feeds)
        self.buffer_start = 0  # input position of buffer[:, 0]
        self.received = 0
        self.emitted = 0
        self.next_item = 0
        self.previous: tuple[int, np.ndarray] | None = None  # segments: (start, output) of the last one
        self.flushed = False

    # -- input bookkeeping ----------------------------------------------------------------------
    def _input(self, start: int, stop: int) -> np.ndarray:
        return self.buffer[:, start - self.buffer_start : stop - self.buffer_start]

    def _drop_before(self, position: int) -> None:
        if position > self.buffer_start:
            self.buffer = self.buffer[:, position - self.buffer_start :]
            self.buffer_start = position

    # -- items ----------------------------------------------------------------------------------
    def _ready_items(self, total: int | None) -> list[tuple[int, int, int, int]]:
        """(in_start, in_stop, out_start, out_stop) of the items computable now; ``total`` at flush."""
        s = self.scheme
        items = []
        while True:
            k = self.next_item
            if s.kind == "chunks":
                start, stop = k * s.length, (k + 1) * s.length
                if total is None and self.received < stop + s.context:
                    break
                if total is not None and start >= total:
                    break
                if total is not None:
                    stop = min(stop, total)
                end = stop + s.context if total is None else min(total, stop + s.context)
                items.append((max(0, start - s.context), end, start, stop))
            else:
                start, stop = k * s.hop, k * s.hop + s.length
                if total == 0:  # flushed with nothing fed: no segment at all
                    break
                if total is None:
                    if self.received < stop:
                        break
                elif stop > total:
                    # The input ends inside this segment: a last one ending at the end (or the whole
                    # input when it is at most one segment), unless the previous one reached the end.
                    if k > 0 and (k - 1) * s.hop + s.length >= total:
                        break
                    start, stop = max(0, total - s.length), total
                    items.append((start, stop, start, stop))
                    self.next_item += 1
                    break
                items.append((start, stop, start, stop))
            self.next_item += 1
        return items

    def _compute(self, items: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
        """Outputs [channels, out_len] of ``items``, batching runs of equal input length."""
        outputs: list[np.ndarray] = []
        i = 0
        while i < len(items):
            length = items[i][1] - items[i][0]
            per_batch = max(1, self.max_batch_samples // max(1, length * self.channels))
            j = i + 1
            while j < len(items) and j - i < per_batch and items[j][1] - items[j][0] == length:
                j += 1
            group = items[i:j]
            x = np.stack([self._input(a, b) for a, b, _, _ in group])  # [items, channels, length]
            if self.segment_level is not None:
                gains = np.stack([level_gains(item, self.segment_level) for item in x])
            else:
                gains = np.broadcast_to(self.gains, (len(group), self.channels))
            gains = gains.astype(np.float32)[..., None]
            flat = (x * gains).reshape(-1, length) if length else x.reshape(-1, 0)
            y = (self.run(np.ascontiguousarray(flat, dtype=np.float32)) if length else flat).reshape(x.shape) / gains
            if self.dry:
                y = y + np.float32(self.dry) * (x - y)
            quiet = silent(np.square(x, dtype=np.float64).sum(axis=2), length)[..., None]
            y = np.where(quiet, np.float32(0.0), y)
            if not np.isfinite(y).all():
                raise AudioError("the model's output is not finite (NaN or infinite samples)")
            for (a, _, out_start, out_stop), out in zip(group, y):
                outputs.append(out[:, out_start - a : out_stop - a].astype(np.float32, copy=False))
            i = j
        return outputs

    # -- assembly -------------------------------------------------------------------------------
    def _assemble(self, items, outputs, total: int | None) -> list[np.ndarray]:
        pieces: list[np.ndarray] = []
        s = self.scheme
        if s.kind == "chunks":
            for (_, _, out_start, out_stop), out in zip(items, outputs):
                pieces.append(out)
                self.emitted = out_stop
            self._drop_before(max(0, self.next_item * s.length - s.context))
            return pieces
        ramp = crossfade_ramp(s.crossfade)
        for (start, stop, _, _), out in zip(items, outputs):
            if self.previous is not None:
                previous_start, previous = self.previous
                left, right = junction(start, previous_start + previous.shape[1], s.crossfade)
                pieces.append(previous[:, self.emitted - previous_start : left - previous_start])
                if s.crossfade:
                    fade = previous[:, left - previous_start : right - previous_start]
                    pieces.append(fade * ramp[::-1] + out[:, left - start : right - start] * ramp)
                self.emitted = right
            self.previous = (start, out)
            # What no later join can touch: a join starts at least hop/2 into this segment.
            if total is None:
                safe = start + s.hop // 2
                if safe > self.emitted:
                    pieces.append(out[:, self.emitted - start : safe - start])
                    self.emitted = safe
        if total is not None and self.previous is not None:
            previous_start, previous = self.previous
            pieces.append(previous[:, self.emitted - previous_start : total - previous_start])
            self.emitted = total
        if self.previous is not None:
            self._drop_before(self.previous[0])
        return pieces

    def _step(self, total: int | None) -> np.ndarray:
        items = self._ready_items(total)
        if items and self._pending:
            self.buffer = np.concatenate([self.buffer, *self._pending], axis=1)
            self._pending.clear()
        outputs = self._compute(items)
        pieces = self._assemble(items, outputs, total)
        if not pieces:
            return np.zeros((self.channels, 0), dtype=np.float32)
        return np.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0]

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Append [channels, n] input samples; return the output samples that are now final."""
        if self.flushed:
            raise RuntimeError("feed after flush")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected [{self.channels}, samples] blocks, got shape {block.shape}")
        if block.shape[1]:
            self._pending.append(block.copy())
            self.received += block.shape[1]
        return self._step(None)

    def flush(self) -> np.ndarray:
        """The remaining output (the input has ended)."""
        if self.flushed:
            return np.zeros((self.channels, 0), dtype=np.float32)
        self.flushed = True
        return self._step(self.received)

    def blocks(
        self, signal: np.ndarray, length: int, progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[np.ndarray, int]]:
        """Feed the first ``length`` samples of a whole ``signal`` FEED_SAMPLES at a time (a staged memmap
        is read a block at a time); yields (output ready, input samples consumed), the rest flushed with
        the last block."""
        for start in range(0, length, FEED_SAMPLES):
            stop = min(start + FEED_SAMPLES, length)
            y = self.feed(np.asarray(signal[:, start:stop]))
            if stop == length:
                y = np.concatenate([y, self.flush()], axis=1)
            if progress is not None:
                progress(stop - start)
            yield y, stop - start
