"""TFRecord framing: checksummed reading and writing of raw record payloads.

A TFRecord file is a plain sequence of records, each framed as (little endian)::

    uint64 length | uint32 masked_crc32c(length) | payload | uint32 masked_crc32c(payload)

Every record read here has both checksums verified, so a flipped byte surfaces as a
:class:`CorruptRecordError` naming the file, record index and byte offset instead of a silently
wrong tensor further down. The length checksum is verified before the length is trusted, so a
corrupt length never turns into a huge allocation. What the payloads mean is the business of
:mod:`vidistill.data.records`.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterator

import crc32c
import numpy as np

from vidistill.atomic import publish, temporary_beside

_HEADER = struct.Struct("<QI")  # length, masked CRC of the length
_FOOTER = struct.Struct("<I")  # masked CRC of the payload
_CRC_MASK_DELTA = 0xA282EAD8


class CorruptRecordError(ValueError):
    """A record that cannot be read as its schema says: bad checksum, truncation, wrong schema,
    wrong feature size, empty video, label outside the vocabulary."""

    def __init__(
        self, path: str, index: int | None = None, offset: int | None = None, problem: str = ""
    ):
        if index is None:
            # A DataLoader re-raises a worker's exception by calling its type with one message
            # (the worker's traceback, which already names file and record): accept that form so
            # the caller still sees a CorruptRecordError.
            self.path = self.index = self.offset = None
            self.problem = path
            super().__init__(path)
            return
        self.path = path
        self.index = index
        self.offset = offset
        self.problem = problem
        super().__init__(f"{path}: record {index} (byte offset {offset}): {problem}")

    def __reduce__(self):  # keeps the structured fields across DataLoader worker processes
        return type(self), (self.path, self.index, self.offset, self.problem)


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC32C rotated right by 15 bits plus a constant, modulo 2**32."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def iter_payloads(
    path: str,
    start_offset: int = 0,
    start_index: int = 0,
    stop_index: int | None = None,
    on_bad_payload: Callable[[CorruptRecordError], None] | None = None,
) -> Iterator[tuple[int, int, memoryview]]:
    """Yield ``(record index, byte offset, payload)`` for the records of one file.

    Reading starts at ``start_offset``, which must be the offset of record ``start_index`` (see
    :func:`scan_offsets`), and ends before ``stop_index``. Both checksums are verified. Raises
    :class:`CorruptRecordError`, except that a payload checksum mismatch is handed to
    ``on_bad_payload`` when one is given: the framing around it is intact, so reading goes on.
    """
    size = os.path.getsize(path)
    if size == 0:
        return
    with open(path, "rb") as f:
        # Payloads are zero-copy views of the mapped file: a sampler that keeps k frames then
        # copies only those, and checksumming copies nothing. The mapping is not closed here; it
        # lives as long as some decoded record still views it.
        data = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    index, offset = start_index, start_offset
    while (stop_index is None or index < stop_index) and offset < size:
        header = data[offset : offset + _HEADER.size]
        length = _checked_length(path, index, offset, header, size)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        (stored,) = _FOOTER.unpack_from(data, start + length)
        if stored == masked_crc32c(payload):
            yield index, offset, payload
        else:
            error = CorruptRecordError(path, index, offset, "payload checksum mismatch")
            if on_bad_payload is None:
                raise error
            on_bad_payload(error)
        index += 1
        offset = start + length + _FOOTER.size


def scan_offsets(path: str) -> tuple[np.ndarray, CorruptRecordError | None]:
    """Byte offsets of the records of a file (int64 [n]), reading only the 12-byte headers.

    Lengths are checksum-verified and payloads skipped, so this costs one small read per record.
    A broken header ends the scan: the offsets before it are returned together with the error,
    because where the later records start can no longer be known.
    """
    size = os.path.getsize(path)
    offsets = []
    offset = 0
    error = None
    with open(path, "rb") as f:
        while True:
            header = f.read(_HEADER.size)
            if not header:
                break
            try:
                length = _checked_length(path, len(offsets), offset, header, size)
            except CorruptRecordError as e:
                error = e
                break
            offsets.append(offset)
            offset += _HEADER.size + length + _FOOTER.size
            f.seek(offset)
    return np.asarray(offsets, dtype=np.int64), error


def _checked_length(path: str, index: int, offset: int, header: bytes, size: int) -> int:
    """The payload length in a record header, once its checksum and the file size allow it."""
    if len(header) != _HEADER.size:
        raise CorruptRecordError(path, index, offset, "file truncated inside a record header")
    length, length_crc = _HEADER.unpack(header)
    if length_crc != masked_crc32c(header[:8]):
        raise CorruptRecordError(path, index, offset, "length checksum mismatch")
    if offset + _HEADER.size + length + _FOOTER.size > size:
        raise CorruptRecordError(
            path, index, offset, f"file truncated: record of {length} bytes runs past the end"
        )
    return length


class RecordWriter:
    """Writes framed, checksummed records to a TFRecord file; use as a context manager.

    The records go to a temporary file beside ``path`` that replaces it on :meth:`close` (the
    context manager's normal exit): a writer that dies or raises midway leaves no shard that
    looks complete but is not. ``offsets`` lists the byte offset of every record written, the
    same as :func:`scan_offsets` would find.
    """

    def __init__(self, path: str):
        self.path = path
        self.offsets: list[int] = []
        self._temporary = temporary_beside(path)
        self._file = open(self._temporary, "wb")  # noqa: SIM115 - closed by close() / abort()
        self._position = 0

    def write(self, payload: bytes) -> None:
        length = struct.pack("<Q", len(payload))
        self._file.write(length)
        self._file.write(_FOOTER.pack(masked_crc32c(length)))
        self._file.write(payload)
        self._file.write(_FOOTER.pack(masked_crc32c(payload)))
        self.offsets.append(self._position)
        self._position += _HEADER.size + len(payload) + _FOOTER.size

    def close(self) -> None:
        """Finish the file: it appears at ``path``."""
        if not self._file.closed:
            self._file.close()
            publish(self._temporary, self.path)

    def abort(self) -> None:
        """Drop what was written: ``path`` keeps its previous content (or stays absent)."""
        if not self._file.closed:
            self._file.close()
            self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
