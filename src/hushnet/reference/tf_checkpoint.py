"""Read TensorFlow checkpoints (the "tensor bundle" format) without TensorFlow.

Written by hand because no maintained PyPI package reads this format short of installing TensorFlow.
A checkpoint ``PREFIX`` is ``PREFIX.index`` (a LevelDB-style sorted table mapping each variable name
to a serialized ``BundleEntryProto``: dtype, shape, shard, offset, size, CRC32C) and one or more
``PREFIX.data-NNNNN-of-MMMMM`` shards holding the raw little-endian tensor bytes. Only uncompressed
tables and unsliced tensors occur in checkpoints written by ``tf.train.Saver``; anything else is
reported as an error rather than guessed at.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

import numpy as np

from hushnet import protobuf

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LENGTH = 48
# TensorFlow DataType enum values -> numpy dtypes (the ones a float model can hold).
_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    19: np.float16,
}


class CheckpointError(ValueError):
    """The files are not a readable TensorFlow checkpoint."""


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    try:
        return protobuf.varint(buffer, position)
    except ValueError as error:
        raise CheckpointError(str(error)) from None


def _protobuf_fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a serialized protobuf message; enough for BundleEntryProto."""
    try:
        return protobuf.fields(message)
    except ValueError as error:
        raise CheckpointError(str(error)) from None


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (keys are prefix-compressed against the previous key)."""
    if len(block) < 4:
        raise CheckpointError("table block too short")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    entries = []
    key = b""
    position = 0
    while position < end:
        shared, position = _varint(block, position)
        unshared, position = _varint(block, position)
        value_length, position = _varint(block, position)
        key = key[:shared] + block[position : position + unshared]
        position += unshared
        entries.append((key, block[position : position + value_length]))
        position += value_length
    return entries


def _read_block(table: bytes, handle: bytes) -> bytes:
    offset, position = _varint(handle, 0)
    size, _ = _varint(handle, position)
    if offset + size + 5 > len(table):
        raise CheckpointError("table block handle points past the end of the index file")
    if table[offset + size] != 0:
        raise CheckpointError("compressed index blocks are not supported")
    return table[offset : offset + size]


def _masked_crc32c(data: bytes) -> int:
    import crc32c

    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def checkpoint_prefix(path: str | Path, name: str | None = None) -> Path:
    """Resolve a checkpoint given as its prefix, its .index file or a folder holding one.

    In a folder with several checkpoints, ``name`` picks the one whose prefix starts with it.
    """
    path = Path(path)
    if path.is_dir():
        candidates = sorted(p.with_suffix("") for p in path.glob("*.index"))
        if name is not None:
            candidates = [c for c in candidates if c.name.startswith(name)]
        if len(candidates) != 1:
            found = ", ".join(c.name for c in candidates) or "none"
            raise CheckpointError(f"expected one checkpoint{' ' + name if name else ''} in {path}, found: {found}")
        return candidates[0]
    if path.suffix == ".index":
        return path.with_suffix("")
    if path.name.startswith(path.stem) and ".data-" in path.name:
        return path.with_name(path.name.split(".data-")[0])
    return path


def read_checkpoint(
    prefix: str | Path, verify: bool = True, keep: Callable[[str], bool] | None = None
) -> dict[str, np.ndarray]:
    """Variables of a TensorFlow checkpoint as numpy arrays, keyed by their TF names.

    ``keep`` selects variables by name (default: all). With ``verify`` every selected tensor's CRC32C
    is checked against the one the index records.
    """
    prefix = checkpoint_prefix(prefix)
    index_path = prefix.with_name(prefix.name + ".index")
    if not index_path.is_file():
        raise CheckpointError(f"no checkpoint index at {index_path}")
    table = index_path.read_bytes()
    if len(table) < _FOOTER_LENGTH or struct.unpack_from("<Q", table, len(table) - 8)[0] != _TABLE_MAGIC:
        raise CheckpointError(f"{index_path} is not a TensorFlow checkpoint index")
    footer = table[-_FOOTER_LENGTH:]
    _, position = _varint(footer, 0)  # metaindex handle: offset
    _, position = _varint(footer, position)  # metaindex handle: size
    index_handle = footer[position:]

    entries: dict[str, bytes] = {}
    for _, data_handle in _block_entries(_read_block(table, index_handle)):
        for key, value in _block_entries(_read_block(table, data_handle)):
            entries[key.decode("utf-8")] = value

    header = dict(_protobuf_fields(entries.pop("", b"")))
    num_shards = int(header.get(1, 1))
    if header.get(2, 0) != 0:
        raise CheckpointError("big-endian checkpoints are not supported")
    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for name, value in sorted(entries.items()):
        if keep is not None and not keep(name):
            continue
        fields = _protobuf_fields(value)
        info = {number: v for number, v in fields if number != 2}
        if any(number == 7 for number, _ in fields):
            raise CheckpointError(f"{name}: sliced (partitioned) variables are not supported")
        dtype_code = int(info.get(1, 0))
        if dtype_code not in _DTYPES:
            raise CheckpointError(f"{name}: unsupported TensorFlow dtype {dtype_code}")
        shape_message = next((v for number, v in fields if number == 2), b"")
        shape = []
        for number, dim in _protobuf_fields(shape_message):
            if number == 2:
                size = dict(_protobuf_fields(dim)).get(1, 0)
                shape.append(int(size))
        shard_id, offset, size = int(info.get(3, 0)), int(info.get(4, 0)), int(info.get(5, 0))
        if shard_id not in shards:
            shard_path = prefix.with_name(f"{prefix.name}.data-{shard_id:05d}-of-{num_shards:05d}")
            if not shard_path.is_file():
                raise CheckpointError(f"missing checkpoint data file {shard_path}")
            shards[shard_id] = shard_path.read_bytes()
        raw = shards[shard_id][offset : offset + size]
        if len(raw) != size:
            raise CheckpointError(f"{name}: data file is truncated")
        if verify and 6 in info and _masked_crc32c(raw) != info[6]:
            raise CheckpointError(f"{name}: CRC32C mismatch, the checkpoint data file is corrupt")
        tensors[name] = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype_code]).newbyteorder("<")).reshape(shape).copy()
    return tensors
