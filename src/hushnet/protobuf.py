"""The protobuf wire format, read by hand: enough to walk a message's top-level fields.

Two readers need it without a protobuf package: the light runtime checks ``model.onnx``'s metadata
(it has onnxruntime, not onnx), and the authors' TensorFlow checkpoint is imported without
TensorFlow. Both need only field numbers and raw values, a few lines that no maintained package
offers apart from a full protobuf runtime and its generated classes.
"""

from __future__ import annotations

import struct


def varint(buffer: bytes, position: int) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at ``position``; ValueError when cut short."""
    result = shift = 0
    while True:
        if position >= len(buffer):
            raise ValueError("truncated varint")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a serialized message's top level: varints and fixed-width values as
    ints, length-delimited ones as bytes; ValueError for a message that is cut short or not protobuf."""
    out: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(message):
        tag, position = varint(message, position)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, position = varint(message, position)
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            if position + width > len(message):
                raise ValueError("truncated fixed-width field")
            value = struct.unpack_from("<Q" if wire_type == 1 else "<I", message, position)[0]
            position += width
        elif wire_type == 2:
            length, position = varint(message, position)
            if position + length > len(message):
                raise ValueError("truncated length-delimited field")
            value = message[position : position + length]
            position += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        out.append((number, value))
    return out
