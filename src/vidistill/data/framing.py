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

import gzip
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterator

import crc32c
import numpy as np

from vidistill.atomic import publish, temporary_beside
from vidistill.data.shards import BLOCK_SIZE, is_mappable, local_path, open_shard, shard_size

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
    compression: str | None = None,
) -> Iterator[tuple[int, int, memoryview]]:
    """Yield ``(record index, byte offset, payload)`` for the records of one shard.

    ``path`` is a local path or an fsspec URL, gzip-compressed when it ends in ``.gz`` or
    ``compression="gzip"`` (offsets are then positions in the decompressed stream; see
    :mod:`vidistill.data.shards`). Reading starts at ``start_offset``, which must be the offset
    of record ``start_index`` (see :func:`scan_offsets`), and ends before ``stop_index``. Both
    checksums are verified. Raises :class:`CorruptRecordError`, except that a payload checksum
    mismatch is handed to ``on_bad_payload`` when one is given: the framing around it is intact,
    so reading goes on.
    """
    if is_mappable(path, compression):
        records = _mapped_records(local_path(path), start_offset, start_index, stop_index)
    else:
        records = _streamed_records(path, compression, start_offset, start_index, stop_index)
    for index, offset, payload, stored in records:
        if stored == masked_crc32c(payload):
            yield index, offset, payload
        else:
            error = CorruptRecordError(path, index, offset, "payload checksum mismatch")
            if on_bad_payload is None:
                raise error
            on_bad_payload(error)


def _mapped_records(
    path: str, offset: int, index: int, stop_index: int | None
) -> Iterator[tuple[int, int, memoryview, int]]:
    """``(index, offset, payload, stored payload checksum)`` of a local file, mapped."""
    size = os.path.getsize(path)
    if size == 0:
        return
    with open(path, "rb") as f:
        # Payloads are zero-copy views of the mapped file: a sampler that keeps k frames then
        # copies only those, and checksumming copies nothing. The mapping is not closed here; it
        # lives as long as some decoded record still views it.
        data = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    while (stop_index is None or index < stop_index) and offset < size:
        header = data[offset : offset + _HEADER.size]
        length = _checked_length(path, index, offset, header, size)
        start = offset + _HEADER.size
        (stored,) = _FOOTER.unpack_from(data, start + length)
        yield index, offset, data[start : start + length], stored
        index += 1
        offset = start + length + _FOOTER.size


def _streamed_records(
    path: str, compression: str | None, offset: int, index: int, stop_index: int | None
) -> Iterator[tuple[int, int, memoryview, int]]:
    """``(index, offset, payload, stored payload checksum)`` of a URL or compressed shard, read
    front to back in large blocks."""
    size = shard_size(path, compression)
    with open_shard(path, compression) as f:
        try:
            if offset and f.seek(offset) != offset:
                raise CorruptRecordError(path, index, offset, "the shard ends before this record")
            while stop_index is None or index < stop_index:
                header = f.read(_HEADER.size)
                if not header:
                    return
                length = _checked_length(path, index, offset, header, size)
                body = _read(f, length + _FOOTER.size)
                if len(body) != length + _FOOTER.size:
                    raise _truncated(path, index, offset, length)
                (stored,) = _FOOTER.unpack_from(body, length)
                yield index, offset, memoryview(body)[:length], stored
                index += 1
                offset += _HEADER.size + length + _FOOTER.size
        except _STREAM_ERRORS as error:
            raise _broken_stream(path, index, offset, error) from None


def scan_offsets(
    path: str, compression: str | None = None
) -> tuple[np.ndarray, CorruptRecordError | None]:
    """Byte offsets of the records of a shard (int64 [n]), reading only the 12-byte headers.

    Lengths are checksum-verified and payloads skipped: a local file costs one small read per
    record; a URL is read in large sequential blocks; a gzip shard is decompressed once, whole.
    A broken header ends the scan: the offsets before it are returned together with the error,
    because where the later records start can no longer be known.
    """
    size = shard_size(path, compression)
    offsets: list[int] = []
    offset = 0
    with open_shard(path, compression) as f:
        try:
            while header := f.read(_HEADER.size):
                length = _checked_length(path, len(offsets), offset, header, size)
                end = offset + _HEADER.size + length + _FOOTER.size
                if f.seek(end) != end:  # a compressed stream ended inside the record
                    raise _truncated(path, len(offsets), offset, length)
                offsets.append(offset)
                offset = end
        except _STREAM_ERRORS as error:
            return np.asarray(offsets, dtype=np.int64), _broken_stream(
                path, len(offsets), offset, error
            )
        except CorruptRecordError as error:
            return np.asarray(offsets, dtype=np.int64), error
    return np.asarray(offsets, dtype=np.int64), None


def _read(f, size: int) -> bytes:
    """Up to ``size`` bytes of ``f``, in blocks: a length of a compressed stream (whose size is
    not known up front) never becomes one huge allocation."""
    if size <= BLOCK_SIZE:
        return f.read(size)
    chunks = []
    while size > 0 and (chunk := f.read(min(size, BLOCK_SIZE))):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# What a damaged gzip stream raises while it is decompressed.
_STREAM_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def _broken_stream(path: str, index: int, offset: int, error: Exception) -> CorruptRecordError:
    return CorruptRecordError(
        path, index, offset, f"broken gzip stream ({error or type(error).__name__})"
    )


def _truncated(path: str, index: int, offset: int, length: int) -> CorruptRecordError:
    return CorruptRecordError(
        path, index, offset, f"file truncated: record of {length} bytes runs past the end"
    )


def _checked_length(path: str, index: int, offset: int, header: bytes, size: int | None) -> int:
    """The payload length in a record header, once its checksum and the file size (when known:
    a compressed stream's is not) allow it."""
    if len(header) != _HEADER.size:
        raise CorruptRecordError(path, index, offset, "file truncated inside a record header")
    length, length_crc = _HEADER.unpack(header)
    if length_crc != masked_crc32c(header[:8]):
        raise CorruptRecordError(path, index, offset, "length checksum mismatch")
    if size is not None and offset + _HEADER.size + length + _FOOTER.size > size:
        raise _truncated(path, index, offset, length)
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
