"""A writer of YouTube-8M records that shares no code with vidistill: the protocol buffer wire
format of ``tf.train.Example`` / ``tf.train.SequenceExample`` encoded byte by byte, and TFRecord
framing with the ``tfrecord`` package's checksum.

Field numbers are those of TensorFlow's ``example.proto`` and ``feature.proto``::

    Example          { Features features = 1; }
    SequenceExample  { Features context = 1; FeatureLists feature_lists = 2; }
    Features         { map<string, Feature> feature = 1; }
    FeatureLists     { map<string, FeatureList> feature_list = 1; }
    FeatureList      { repeated Feature feature = 1; }
    Feature          { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                                    Int64List int64_list = 3; } }
    BytesList        { repeated bytes value = 1; }
    FloatList        { repeated float value = 1 [packed = true]; }
    Int64List        { repeated int64 value = 1 [packed = true]; }

A map entry is a message ``{ key = 1; value = 2 }``. Because entries are written in the order
given, tests choose orders TensorFlow may produce but vidistill's own writer never does (``audio``
before ``rgb``, ``labels`` before ``id``), and the unpacked encoding of scalar lists that every
protobuf parser must also accept.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from tfrecord.writer import TFRecordWriter

_VARINT, _FIXED32, _LENGTH_DELIMITED = 0, 5, 2


def varint(value: int) -> bytes:
    """Base-128 varint; negative int64 values take ten bytes (two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def field(number: int, body: bytes) -> bytes:
    """A length-delimited field (bytes, string or sub-message)."""
    return tag(number, _LENGTH_DELIMITED) + varint(len(body)) + body


# -- Feature -----------------------------------------------------------------------------------


def bytes_feature(values: Iterable[bytes]) -> bytes:
    return field(1, b"".join(field(1, bytes(v)) for v in values))


def int64_feature(values: Iterable[int], packed: bool = True) -> bytes:
    values = [int(v) for v in values]
    if packed:
        body = field(1, b"".join(varint(v) for v in values)) if values else b""
    else:
        body = b"".join(tag(1, _VARINT) + varint(v) for v in values)
    return field(3, body)


def float_feature(values: Iterable[float], packed: bool = True) -> bytes:
    values = [float(v) for v in values]
    if packed:
        body = field(1, struct.pack(f"<{len(values)}f", *values)) if values else b""
    else:
        body = b"".join(tag(1, _FIXED32) + struct.pack("<f", v) for v in values)
    return field(2, body)


EMPTY_FEATURE = b""
"""A Feature with no kind set: TensorFlow reads it as an empty list of any type."""


# -- Messages ----------------------------------------------------------------------------------


def _map(entries: Sequence[tuple[str, bytes]]) -> bytes:
    return b"".join(field(1, field(1, key.encode()) + field(2, value)) for key, value in entries)


def features(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """A ``Features`` message; ``entries`` are (name, Feature bytes) in the order to write."""
    return _map(entries)


def feature_list(frames: Iterable[bytes]) -> bytes:
    """A ``FeatureList`` of one single-bytes-value Feature per frame."""
    return b"".join(field(1, bytes_feature([frame])) for frame in frames)


def example(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """A serialized ``tf.train.Example``."""
    return field(1, features(entries))


def sequence_example(
    context: Sequence[tuple[str, bytes]],
    lists: Sequence[tuple[str, bytes]],
    context_first: bool = True,
) -> bytes:
    """A serialized ``tf.train.SequenceExample``; ``lists`` are (name, FeatureList bytes)."""
    parts = [field(1, features(context)), field(2, _map(lists))]
    return b"".join(parts if context_first else parts[::-1])


# -- Framing -----------------------------------------------------------------------------------


def frame_record(payload: bytes) -> bytes:
    """One TFRecord record: length, masked CRC32C of the length, payload, masked CRC32C of the
    payload, the checksums computed by the ``tfrecord`` package."""
    length = struct.pack("<Q", len(payload))
    return length + TFRecordWriter.masked_crc(length) + payload + TFRecordWriter.masked_crc(payload)


def write_tfrecord(path: str | Path, payloads: Iterable[bytes]) -> list[int]:
    """Write ``payloads`` as one TFRecord file; returns each record's byte offset."""
    offsets, data = [], bytearray()
    for payload in payloads:
        offsets.append(len(data))
        data += frame_record(payload)
    Path(path).write_bytes(bytes(data))
    return offsets
