"""Zero-copy reading of the regular frame-level ``SequenceExample`` layout TensorFlow writes.

Parsing a frame-level record with protobuf copies every frame into a Python ``bytes`` object. In
the layout TensorFlow writes, though, all frames of a feature list are framed by identical bytes
(every frame has the same size), so the frames can be viewed in place as a strided uint8 array
after checking those framing bytes once per frame. This module finds that layout on the protobuf
wire format and returns ``None`` for anything else; the caller then falls back to protobuf, which
also produces every error message.
"""

from __future__ import annotations

import numpy as np
from tfrecord import example_pb2

from vidistill.features import AUDIO_SIZE, RGB_SIZE

_LENGTH_DELIMITED = 2  # the protobuf wire type of bytes, strings and sub-messages


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a protobuf varint at ``pos``; returns (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise IndexError("varint runs past the buffer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _length_delimited_fields(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]] | None:
    """``(field number, start, end)`` of the length-delimited fields in ``buf[start:end]``, or
    ``None`` if any field is of another wire type or overruns the span."""
    fields = []
    pos = start
    while pos < end:
        # Tags and most lengths here fit in one byte: skip the general decoder for those.
        tag = buf[pos]
        tag, pos = (tag, pos + 1) if tag < 0x80 else _varint(buf, pos)
        if tag & 7 != _LENGTH_DELIMITED:
            return None
        length = buf[pos]
        length, pos = (length, pos + 1) if length < 0x80 else _varint(buf, pos)
        if pos + length > end:
            return None
        fields.append((tag >> 3, pos, pos + length))
        pos += length
    return fields


def _frame_prefix(size: int) -> bytes:
    """The bytes that precede each frame's ``size`` values inside a serialized FeatureList:
    the Feature tag and length, the BytesList tag and length, the bytes tag and length."""
    feature = example_pb2.Feature(bytes_list=example_pb2.BytesList(value=[bytes(size)]))
    body = feature.SerializeToString()
    header = bytearray(b"\x0a")
    length = len(body)
    while length >= 0x80:
        header.append((length & 0x7F) | 0x80)
        length >>= 7
    header.append(length)
    return bytes(header) + body[: len(body) - size]


_FRAME_PREFIX = {  # as numpy void scalars, so a strided view compares them all in one operation
    size: np.frombuffer(prefix, f"V{len(prefix)}")[0]
    for size, prefix in ((s, _frame_prefix(s)) for s in (RGB_SIZE, AUDIO_SIZE))
}


def split_sequence_example(payload: bytes) -> tuple[bytes, dict[str, tuple[int, int]]] | None:
    """Locate the context and each feature list of a serialized SequenceExample without parsing
    the frames. Returns (context bytes, {name: (start, end) of its FeatureList}) or ``None`` when
    the layout is anything but the plain one TensorFlow writes."""
    try:
        top = _length_delimited_fields(payload, 0, len(payload))
        if top is None or [f for f, _, _ in top] not in ([1, 2], [2, 1], [2]):
            return None
        context = b""
        lists: dict[str, tuple[int, int]] = {}
        for number, start, end in top:
            if number == 1:
                context = payload[start:end]
                continue
            entries = _length_delimited_fields(payload, start, end)
            if entries is None:
                return None
            for number, entry_start, entry_end in entries:
                # Map entries are field 1; protobuf skips any other field number as unknown, so
                # that is no feature list (the protobuf path says which one is missing).
                if number != 1:
                    return None
                parts = _length_delimited_fields(payload, entry_start, entry_end)
                if parts is None or [f for f, _, _ in parts] != [1, 2]:
                    return None
                name = bytes(payload[parts[0][1] : parts[0][2]]).decode("utf-8")
                if name in lists:
                    return None
                lists[name] = parts[1][1], parts[1][2]
        return context, lists
    except (IndexError, UnicodeDecodeError):
        return None


def regular_frames(payload: bytes, span: tuple[int, int], size: int) -> np.ndarray | None:
    """View a FeatureList whose every frame holds exactly ``size`` bytes as uint8 [n, size]
    (zero copy), or ``None`` if it is not that regular. ``size`` is RGB_SIZE or AUDIO_SIZE."""
    prefix = _FRAME_PREFIX[size]
    stride = prefix.dtype.itemsize + size
    start, end = span
    rows, extra = divmod(end - start, stride)
    if extra or not rows:
        return None
    # Every frame's framing bytes as one fixed-size value per row: one comparison checks them all.
    framing = np.ndarray((rows,), prefix.dtype, payload, start, (stride,))
    if not (framing == prefix).all():
        return None
    return np.ndarray((rows, size), np.uint8, payload, start + prefix.dtype.itemsize, (stride, 1))
