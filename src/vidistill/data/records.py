"""YouTube-8M TFRecord files: checked framing, the three official schemas, and writing.

A TFRecord file is a plain sequence of records, each framed as (little endian)::

    uint64 length | uint32 masked_crc32c(length) | payload | uint32 masked_crc32c(payload)

Both checksums are verified for every record read here: a flipped byte is reported with the file,
the record index and its byte offset, never decoded into a silently wrong tensor, and a corrupt
length field is caught before anything is allocated for it.

Payloads are protocol buffers of one of three schemas:

* ``"frame"``: ``tf.train.SequenceExample``; context ``id`` (bytes) and ``labels`` (int64 list);
  feature lists ``rgb`` (one 1024-byte value per one-second frame) and ``audio`` (128 bytes).
* ``"segment"``: the 2019 segment-rated frame-level files; the context also carries the parallel
  arrays ``segment_start_times``, ``segment_end_times``, ``segment_labels``, ``segment_scores``.
* ``"video"``: ``tf.train.Example`` with ``id``, ``labels``, ``mean_rgb`` (1024 floats) and
  ``mean_audio`` (128 floats).

Frames stay uint8 as stored; :func:`dequantize` applies the official formula. Frame-level decoding
takes an optional frame selection so that frames a sampler does not pick are never copied.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import crc32c
import numpy as np
import torch
from google.protobuf.message import DecodeError
from tfrecord import example_pb2

RGB_SIZE = 1024
AUDIO_SIZE = 128
FEATURE_SIZE = RGB_SIZE + AUDIO_SIZE
SEGMENT_LENGTH = 5
SCHEMAS = ("frame", "segment", "video")

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_CRC_MASK_DELTA = 0xA282EAD8

FrameSelector = Callable[[int, str], "np.ndarray | None"]
"""Maps (number of frames in the record, video id) to the sorted frame indices to decode."""


class CorruptRecordError(ValueError):
    """A record that cannot be read as its schema says: bad checksum, truncation, wrong schema,
    wrong feature size, empty video, label outside the vocabulary."""

    def __init__(
        self, path: str, index: int | None = None, offset: int | None = None, problem: str = ""
    ):
        if index is None:
            # A DataLoader re-raises a worker's exception as its type built from one message
            # (the worker's traceback, which names file and record): keep the type.
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


class _InvalidPayload(Exception):
    """Raised by the decoders; the reader adds file, record index and offset."""


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC32C rotated right by 15 bits plus a constant, modulo 2**32."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def dequantize(
    x: np.ndarray | torch.Tensor,
    max_quantized_value: float = 2.0,
    min_quantized_value: float = -2.0,
) -> np.ndarray | torch.Tensor:
    """Official YT8M dequantization: ``x * (max - min) / 255 + (max - min) / 512 + min``.

    With the defaults a byte ``x`` maps to ``x * 4/255 - 1.9921875``. Returns float32 for numpy
    and floating tensors for torch; padding must be zeroed after this call, not before.
    """
    scale, bias = dequantize_coefficients(max_quantized_value, min_quantized_value)
    if isinstance(x, torch.Tensor):
        # One conversion, then in place: this runs on every batch and is memory bound (a
        # uint8 * float multiply is several times slower than the conversion on CPU).
        return empty_float32(x.shape, x.device).copy_(x).mul_(scale).add_(bias)
    return np.asarray(x, dtype=np.float32) * np.float32(scale) + np.float32(bias)


def dequantize_coefficients(
    max_quantized_value: float = 2.0, min_quantized_value: float = -2.0
) -> tuple[float, float]:
    """``(scale, bias)`` of the official formula: ``value = byte * scale + bias``."""
    span = max_quantized_value - min_quantized_value
    return span / 255.0, span / 512.0 + min_quantized_value


def empty_float32(shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """An uninitialized float32 tensor; on CPU its memory comes from numpy.

    A batch of frames is tens of MB allocated anew every step. Torch's CPU allocator maps such
    blocks fresh each time and the kernel faults them in 4 KB at a time, while numpy keeps a
    cache and asks for huge pages: converting a uint8 [64, 300, 1152] batch to float32 into
    numpy-allocated memory measured about 4x faster than ``.to(torch.float32)`` on this 2-core
    machine, and about 3.9x for [64, 30, 1152].
    """
    if torch.device(device).type == "cpu":
        return torch.from_numpy(np.empty(tuple(shape), np.float32))
    return torch.empty(tuple(shape), dtype=torch.float32, device=device)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class FrameRecord:
    """One video of a frame-level file.

    ``rgb`` [n, 1024] and ``audio`` [n, 128] are uint8 and hold the frames listed in
    ``frame_indices`` (all frames when nothing was selected); ``num_frames`` is the number of
    frames stored in the record.
    """

    id: str
    labels: np.ndarray
    rgb: np.ndarray
    audio: np.ndarray
    num_frames: int
    frame_indices: np.ndarray


@dataclass(slots=True)
class SegmentRecord(FrameRecord):
    """A 2019 segment-rated video: one entry per rated (segment, class) pair, segments being frames
    ``[start, start + 5)``; scores are 1.0 (positive) or 0.0 (negative)."""

    segment_start_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    segment_end_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    segment_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    segment_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


@dataclass(slots=True)
class VideoRecord:
    """One video of a video-level file: mean features as float32 (not quantized)."""

    id: str
    labels: np.ndarray
    mean_rgb: np.ndarray
    mean_audio: np.ndarray


Record = FrameRecord | SegmentRecord | VideoRecord


# --------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------


def iter_payloads(
    path: str,
    start_offset: int = 0,
    start_index: int = 0,
    stop_index: int | None = None,
    on_bad_payload: Callable[[CorruptRecordError], None] | None = None,
) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(record index, byte offset, payload)`` for the records of one file.

    Reading starts at ``start_offset``, which must be the offset of record ``start_index`` (see
    :func:`scan_offsets`), and ends before ``stop_index``. Both checksums are verified; a length
    whose checksum fails is reported before it is used, so a corrupt length cannot cause a huge
    allocation. Raises :class:`CorruptRecordError`, except that a payload checksum mismatch is
    handed to ``on_bad_payload`` when given: the framing is intact, so reading goes on.
    """
    size = os.path.getsize(path)
    if size == 0:
        return
    with open(path, "rb") as f:
        # Payloads are zero-copy views of the mapped file: a k-frame sampler then copies only the
        # frames it picks, and nothing is copied to be checksummed. The mapping is never closed
        # explicitly; it lives as long as some decoded record still views it.
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

    Lengths are checksum-verified; payloads are skipped, so this costs one small read per record.
    A broken header ends the scan: the offsets before it are returned with the error, since the
    framing of everything after it is lost.
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


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


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
    ``None`` if any field is of another wire type or overruns (callers then use protobuf)."""
    fields = []
    pos = start
    while pos < end:
        # Tags and most lengths here fit in one byte; the general decoder handles the rest.
        tag = buf[pos]
        tag, pos = (tag, pos + 1) if tag < 0x80 else _varint(buf, pos)
        if tag & 7 != 2:
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


_FRAME_PREFIX = {  # as numpy void scalars, compared with a strided view in one operation
    size: np.frombuffer(prefix, f"V{len(prefix)}")[0]
    for size, prefix in ((s, _frame_prefix(s)) for s in (RGB_SIZE, AUDIO_SIZE))
}


def _split_sequence_example(payload: bytes) -> tuple[bytes, dict[str, tuple[int, int]]] | None:
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
            for _, entry_start, entry_end in entries:
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


def _regular_frames(payload: bytes, span: tuple[int, int], size: int) -> np.ndarray | None:
    """View a FeatureList whose every frame holds exactly ``size`` bytes as uint8 [n, size]
    (zero copy), or ``None`` if it is not that regular."""
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


class RecordDecoder:
    """Decodes payloads of one schema, checking what the schema promises.

    ``num_classes`` enables the vocabulary check on labels; ``select`` picks the frames to copy
    out of frame-level records (only those frames' bytes are touched).
    """

    def __init__(
        self,
        schema: str = "frame",
        num_classes: int | None = None,
        select: FrameSelector | None = None,
    ):
        if schema not in SCHEMAS:
            raise ValueError(f"unknown schema {schema!r}; expected one of {', '.join(SCHEMAS)}")
        self.schema = schema
        self.num_classes = num_classes
        self.select = select

    def decode(self, payload: bytes) -> Record:
        """Decode one payload; raises ``_InvalidPayload`` with a description of what is wrong."""
        if self.schema == "video":
            return self._decode_video(payload)
        return self._decode_frames(payload)

    def _decode_frames(self, payload: bytes) -> FrameRecord | SegmentRecord:
        # The fast path reads TensorFlow's regular layout with array views; anything else, and
        # every error message, comes from the protobuf path.
        context, video_id, n, take = self._regular_layout(payload) or self._protobuf_layout(payload)
        indices = self.select(n, video_id) if self.select is not None else None
        if indices is None:
            indices = np.arange(n)
        rgb, audio = take(indices)
        labels = self._labels(context, "labels", video_id)
        if self.schema == "frame":
            return FrameRecord(video_id, labels, rgb, audio, n, indices)
        return SegmentRecord(
            video_id, labels, rgb, audio, n, indices, *self._segments(context, video_id)
        )

    def _regular_layout(self, payload: bytes):
        split = _split_sequence_example(payload)
        if split is None or "rgb" not in split[1] or "audio" not in split[1]:
            return None
        context_bytes, lists = split
        rgb = _regular_frames(payload, lists["rgb"], RGB_SIZE)
        audio = _regular_frames(payload, lists["audio"], AUDIO_SIZE)
        if rgb is None or audio is None or len(rgb) != len(audio) or len(rgb) == 0:
            return None
        try:
            context = example_pb2.Features.FromString(context_bytes).feature
        except DecodeError:
            return None
        return (
            context,
            _video_id(context),
            len(rgb),
            lambda indices: (_rows(rgb, indices), _rows(audio, indices)),
        )

    def _protobuf_layout(self, payload: bytes):
        try:
            example = example_pb2.SequenceExample.FromString(payload)
        except DecodeError as e:
            raise _InvalidPayload(f"not a SequenceExample protocol buffer ({e})") from None
        context = example.context.feature
        video_id = _video_id(context)
        lists = example.feature_lists.feature_list
        if "rgb" not in lists or "audio" not in lists:
            if "mean_rgb" in context:
                raise _InvalidPayload(
                    f"video {video_id!r} is a video-level Example (it has 'mean_rgb'), not a "
                    "frame-level SequenceExample: read it with schema='video'"
                )
            missing = [name for name in ("rgb", "audio") if name not in lists]
            raise _InvalidPayload(f"video {video_id!r} has no feature list {missing[0]!r}")
        rgb_frames = lists["rgb"].feature
        audio_frames = lists["audio"].feature
        n = len(rgb_frames)
        if n == 0:
            raise _InvalidPayload(f"video {video_id!r} has zero frames")
        if len(audio_frames) != n:
            raise _InvalidPayload(
                f"video {video_id!r} has {n} rgb frames but {len(audio_frames)} audio frames"
            )

        def take(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return (
                _frame_bytes(rgb_frames, indices, RGB_SIZE, "rgb", video_id),
                _frame_bytes(audio_frames, indices, AUDIO_SIZE, "audio", video_id),
            )

        return context, video_id, n, take

    def _segments(self, context, video_id: str) -> tuple[np.ndarray, ...]:
        if "segment_labels" not in context:
            raise _InvalidPayload(
                f"video {video_id!r} has no 'segment_labels': not a segment-rated record "
                "(read plain frame-level files with schema='frame')"
            )
        starts = _int64s(context, "segment_start_times")
        ends = _int64s(context, "segment_end_times")
        labels = self._labels(context, "segment_labels", video_id)
        scores = (
            np.asarray(context["segment_scores"].float_list.value, dtype=np.float32)
            if ("segment_scores" in context)
            else np.zeros(0, np.float32)
        )
        sizes = {len(starts), len(ends), len(labels), len(scores)}
        if len(sizes) != 1:
            raise _InvalidPayload(
                f"video {video_id!r}: segment arrays differ in length (start_times {len(starts)}, "
                f"end_times {len(ends)}, labels {len(labels)}, scores {len(scores)})"
            )
        if np.any(starts < 0) or np.any(ends != starts + SEGMENT_LENGTH):
            raise _InvalidPayload(
                f"video {video_id!r}: segments must satisfy end = start + {SEGMENT_LENGTH}, start >= 0"
            )
        if not np.all(np.isin(scores, (0.0, 1.0))):
            raise _InvalidPayload(f"video {video_id!r}: segment scores must be 1.0 or 0.0")
        return starts, ends, labels, scores

    def _decode_video(self, payload: bytes) -> VideoRecord:
        try:
            example = example_pb2.Example.FromString(payload)
        except DecodeError as e:
            raise _InvalidPayload(f"not an Example protocol buffer ({e})") from None
        features = example.features.feature
        video_id = _video_id(features)
        if "mean_rgb" not in features or "mean_audio" not in features:
            raise _InvalidPayload(
                f"video {video_id!r} has no 'mean_rgb'/'mean_audio': not a video-level Example "
                "(frame-level records are read with schema='frame')"
            )
        mean_rgb = np.asarray(features["mean_rgb"].float_list.value, dtype=np.float32)
        mean_audio = np.asarray(features["mean_audio"].float_list.value, dtype=np.float32)
        for name, values, size in (
            ("mean_rgb", mean_rgb, RGB_SIZE),
            ("mean_audio", mean_audio, AUDIO_SIZE),
        ):
            if values.shape != (size,):
                raise _InvalidPayload(
                    f"video {video_id!r}: {name} has {values.size} values, expected {size}"
                )
        return VideoRecord(
            video_id, self._labels(features, "labels", video_id), mean_rgb, mean_audio
        )

    def _labels(self, features, key: str, video_id: str) -> np.ndarray:
        labels = _int64s(features, key)
        limit = self.num_classes or np.iinfo(np.int64).max
        # Labels are a handful of ints: plain Python beats array operations here.
        bad = [label for label in labels.tolist() if label < 0 or label >= limit]
        if bad:
            vocabulary = f"[0, {self.num_classes})" if self.num_classes else "non-negative indices"
            raise _InvalidPayload(
                f"video {video_id!r}: {key} {bad} outside the vocabulary {vocabulary}"
            )
        return labels


def _video_id(features) -> str:
    if "id" not in features or not features["id"].bytes_list.value:
        raise _InvalidPayload("record has no 'id' bytes feature")
    return features["id"].bytes_list.value[0].decode("utf-8", errors="replace")


def _int64s(features, key: str) -> np.ndarray:
    if key not in features:
        return np.zeros(0, np.int64)
    return np.array(list(features[key].int64_list.value), dtype=np.int64)


def _rows(frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Selected rows of a frame view: a view for a contiguous run, else a compact copy."""
    if len(indices) and indices[-1] - indices[0] + 1 == len(indices):
        return frames[indices[0] : indices[-1] + 1]
    return frames[indices]


def _frame_bytes(frames, indices: np.ndarray, size: int, name: str, video_id: str) -> np.ndarray:
    """Join the selected frames' bytes into uint8 [len(indices), size], checking every size."""
    try:
        joined = b"".join([frames[i].bytes_list.value[0] for i in indices.tolist()])
    except IndexError:
        for i in indices.tolist():
            if i >= len(frames) or len(frames[i].bytes_list.value) != 1:
                raise _InvalidPayload(
                    f"video {video_id!r}: {name} frame {i} does not hold exactly one bytes value"
                ) from None
        raise
    if len(joined) != len(indices) * size:
        for i in indices.tolist():
            got = len(frames[i].bytes_list.value[0])
            if got != size:
                raise _InvalidPayload(
                    f"video {video_id!r}: {name} frame {i} has {got} bytes, expected {size}"
                )
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(indices), size)


def read_records(
    path: str,
    schema: str = "frame",
    *,
    num_classes: int | None = None,
    select: FrameSelector | None = None,
) -> Iterator[Record]:
    """Yield the decoded records of one TFRecord file, verifying every checksum.

    Records have attributes ``id`` (str) and ``labels`` (int64, stored order), plus ``rgb``
    (uint8 [n, 1024]) and ``audio`` (uint8 [n, 128]) for ``"frame"`` and ``"segment"``,
    ``segment_start_times``/``segment_end_times``/``segment_labels`` (int64) and
    ``segment_scores`` (float32) for ``"segment"``, ``mean_rgb`` (float32 [1024]) and
    ``mean_audio`` (float32 [128]) for ``"video"``. Any problem raises
    :class:`CorruptRecordError` naming the file, the record and what is wrong.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such TFRecord file: {path}")
    decoder = RecordDecoder(schema, num_classes, select)
    for index, offset, payload in iter_payloads(path):
        try:
            yield decoder.decode(payload)
        except _InvalidPayload as e:
            raise CorruptRecordError(path, index, offset, str(e)) from None


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _bytes_feature(feature, value: bytes) -> None:
    feature.bytes_list.value.append(value)


def encode_frame_example(
    video_id: str,
    labels: Sequence[int],
    rgb: np.ndarray,
    audio: np.ndarray,
    segments: dict[str, Sequence] | None = None,
) -> bytes:
    """Serialize one frame-level ``SequenceExample`` (uint8 rgb [n, 1024], audio [n, 128]).

    ``segments``, when given, holds the 2019 rating arrays ``segment_start_times``,
    ``segment_end_times``, ``segment_labels`` and ``segment_scores``.
    """
    example = example_pb2.SequenceExample()
    context = example.context.feature
    _bytes_feature(context["id"], video_id.encode("utf-8"))
    context["labels"].int64_list.value.extend(int(x) for x in labels)
    if segments is not None:
        for key in ("segment_start_times", "segment_end_times", "segment_labels"):
            context[key].int64_list.value.extend(int(x) for x in segments[key])
        context["segment_scores"].float_list.value.extend(
            float(x) for x in segments["segment_scores"]
        )
    lists = example.feature_lists.feature_list
    for name, frames in (("rgb", rgb), ("audio", audio)):
        frame_list = lists[name].feature
        for frame in np.ascontiguousarray(frames, dtype=np.uint8):
            frame_list.add().bytes_list.value.append(frame.tobytes())
    return example.SerializeToString()


def encode_video_example(
    video_id: str, labels: Sequence[int], mean_rgb: np.ndarray, mean_audio: np.ndarray
) -> bytes:
    """Serialize one video-level ``Example`` (float mean_rgb [1024], mean_audio [128])."""
    example = example_pb2.Example()
    features = example.features.feature
    _bytes_feature(features["id"], video_id.encode("utf-8"))
    features["labels"].int64_list.value.extend(int(x) for x in labels)
    features["mean_rgb"].float_list.value.extend(np.asarray(mean_rgb, np.float32).tolist())
    features["mean_audio"].float_list.value.extend(np.asarray(mean_audio, np.float32).tolist())
    return example.SerializeToString()


class RecordWriter:
    """Writes framed, checksummed records to a TFRecord file; use as a context manager.

    ``offsets`` lists the byte offset of every record written, the same as :func:`scan_offsets`
    would find.
    """

    def __init__(self, path: str):
        self.path = path
        self.offsets: list[int] = []
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close() / the context manager
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
        self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
