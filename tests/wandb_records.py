"""Reading what an offline W&B run wrote: its ``run-<id>.wandb`` transaction log.

An offline run keeps everything (config, history rows, summary updates) in that one file, which
``wandb sync`` uploads later; wandb ships no Python reader for it. The format: a 7-byte header
(``:W&B``, magic 0xBEE1, version 0), then LevelDB-log framing in 32 KiB blocks (per chunk a
CRC-32 of type byte and payload, a 2-byte length, a type: full, first, middle, last), and each
record a ``wandb_internal_pb2.Record`` protobuf.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Any]:
    """Every record of a ``.wandb`` file, in order; AssertionError on a bad header or CRC."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert HEADER.unpack_from(data) == (b":W&B", 0xBEE1, 0), f"{path}: not a W&B log"
    records, pieces, position = [], [], HEADER.size
    while position + CHUNK.size <= len(data):
        left = BLOCK - position % BLOCK
        if left < CHUNK.size:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        crc, length, kind = CHUNK.unpack_from(data, position)
        if kind == 0:  # zero padding after the last record
            break
        payload = data[position + CHUNK.size : position + CHUNK.size + length]
        assert zlib.crc32(bytes([kind]) + payload) == crc, f"{path}: CRC mismatch at {position}"
        position += CHUNK.size + length
        pieces.append(payload)
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            records.append(record)
            pieces = []
    return records


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def history(records: list[Any]) -> list[dict[str, Any]]:
    """The history rows (one per ``log`` call), as ``{name: value}``."""
    return [
        {_key(item): json.loads(item.value_json) for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]


def summary(records: list[Any]) -> dict[str, Any]:
    """The run's summary: its updates applied in order."""
    values: dict[str, Any] = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                values[_key(item)] = json.loads(item.value_json)
    return values


def config(records: list[Any]) -> dict[str, Any]:
    """The run's config: its updates applied in order."""
    values: dict[str, Any] = {}
    for record in records:
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                values[_key(item)] = json.loads(item.value_json)
    return values
