"""The YouTube-8M record schemas: decoding payloads into checked records, and encoding them.

Payloads (see :mod:`vidistill.data.framing` for how they are framed) are protocol buffers of
one of three schemas:

* ``"frame"``: ``tf.train.SequenceExample``; context ``id`` (bytes) and ``labels`` (int64 list);
  feature lists ``rgb`` (one RGB_SIZE-byte value per one-second frame) and ``audio``
  (AUDIO_SIZE bytes).
* ``"segment"``: the 2019 segment-rated frame-level files; the context also carries the parallel
  arrays ``segment_start_times``, ``segment_end_times``, ``segment_labels``, ``segment_scores``.
* ``"video"``: ``tf.train.Example`` with ``id``, ``labels``, ``mean_rgb`` (RGB_SIZE floats) and
  ``mean_audio`` (AUDIO_SIZE floats).

Frames stay uint8 as stored (:mod:`vidistill.data.quantization` turns them into floats).
Frame-level decoding takes an optional frame selection so that frames a sampler does not pick
are never copied.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import DecodeError
from tfrecord import example_pb2

from vidistill.data.framing import CorruptRecordError, iter_payloads
from vidistill.data.shards import is_url, local_path
from vidistill.data.wire import regular_frames, split_sequence_example
from vidistill.features import AUDIO_SIZE, RGB_SIZE, SEGMENT_LENGTH

SCHEMAS = ("frame", "segment", "video")

FrameSelector = Callable[[int, str], "np.ndarray | None"]
"""Maps (number of frames in the record, video id) to the sorted frame indices to decode."""


class InvalidPayloadError(Exception):
    """A payload that does not hold what its schema promises; raised by :class:`RecordDecoder`
    with a plain description, to which callers add the file, record index and offset."""


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
    ``[start, start + SEGMENT_LENGTH)``; scores are 1.0 (positive) or 0.0 (negative)."""

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
        """Decode one payload; raises :class:`InvalidPayloadError` saying what is wrong."""
        if self.schema == "video":
            return self._decode_video(payload)
        return self._decode_frames(payload)

    def decode_record(self, path: str, index: int, offset: int, payload: bytes) -> Record:
        """Decode record ``index`` (at byte ``offset``) of the file ``path``; a problem raises
        :class:`CorruptRecordError` naming that record."""
        try:
            return self.decode(payload)
        except InvalidPayloadError as e:
            raise CorruptRecordError(path, index, offset, str(e)) from None

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
        split = split_sequence_example(payload)
        if split is None or "rgb" not in split[1] or "audio" not in split[1]:
            return None
        context_bytes, lists = split
        rgb = regular_frames(payload, lists["rgb"], RGB_SIZE)
        audio = regular_frames(payload, lists["audio"], AUDIO_SIZE)
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
        example = _parse(example_pb2.SequenceExample, payload)
        context = example.context.feature
        video_id = _video_id(context)
        lists = example.feature_lists.feature_list
        if "rgb" not in lists or "audio" not in lists:
            if "mean_rgb" in context:
                raise InvalidPayloadError(
                    f"video {video_id!r} is a video-level Example (it has 'mean_rgb'), not a "
                    "frame-level SequenceExample: read it with schema='video'"
                )
            missing = [name for name in ("rgb", "audio") if name not in lists]
            raise InvalidPayloadError(f"video {video_id!r} has no feature list {missing[0]!r}")
        rgb_frames = lists["rgb"].feature
        audio_frames = lists["audio"].feature
        n = len(rgb_frames)
        if n == 0:
            raise InvalidPayloadError(f"video {video_id!r} has zero frames")
        if len(audio_frames) != n:
            raise InvalidPayloadError(
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
            raise InvalidPayloadError(
                f"video {video_id!r} has no 'segment_labels': not a segment-rated record "
                "(read plain frame-level files with schema='frame')"
            )
        starts = _values(context, "segment_start_times", video_id)
        ends = _values(context, "segment_end_times", video_id)
        labels = self._labels(context, "segment_labels", video_id)
        scores = _values(context, "segment_scores", video_id, "float_list")
        sizes = {len(starts), len(ends), len(labels), len(scores)}
        if len(sizes) != 1:
            raise InvalidPayloadError(
                f"video {video_id!r}: segment arrays differ in length (start_times {len(starts)}, "
                f"end_times {len(ends)}, labels {len(labels)}, scores {len(scores)})"
            )
        if np.any(starts < 0) or np.any(ends != starts + SEGMENT_LENGTH):
            raise InvalidPayloadError(
                f"video {video_id!r}: segments must satisfy end = start + {SEGMENT_LENGTH}, start >= 0"
            )
        if not np.all(np.isin(scores, (0.0, 1.0))):
            raise InvalidPayloadError(f"video {video_id!r}: segment scores must be 1.0 or 0.0")
        return starts, ends, labels, scores

    def _decode_video(self, payload: bytes) -> VideoRecord:
        example = _parse(example_pb2.Example, payload)
        features = example.features.feature
        video_id = _video_id(features)
        if "mean_rgb" not in features or "mean_audio" not in features:
            raise InvalidPayloadError(
                f"video {video_id!r} has no 'mean_rgb'/'mean_audio': not a video-level Example "
                "(frame-level records are read with schema='frame')"
            )
        mean_rgb = _values(features, "mean_rgb", video_id, "float_list")
        mean_audio = _values(features, "mean_audio", video_id, "float_list")
        for name, values, size in (
            ("mean_rgb", mean_rgb, RGB_SIZE),
            ("mean_audio", mean_audio, AUDIO_SIZE),
        ):
            if values.shape != (size,):
                raise InvalidPayloadError(
                    f"video {video_id!r}: {name} has {values.size} values, expected {size}"
                )
        return VideoRecord(
            video_id, self._labels(features, "labels", video_id), mean_rgb, mean_audio
        )

    def _labels(self, features, key: str, video_id: str) -> np.ndarray:
        labels = _values(features, key, video_id)
        limit = self.num_classes or _NO_LIMIT
        # Labels are a handful of ints: plain Python beats array operations here.
        bad = [label for label in labels.tolist() if label < 0 or label >= limit]
        if bad:
            vocabulary = f"[0, {self.num_classes})" if self.num_classes else "non-negative indices"
            raise InvalidPayloadError(
                f"video {video_id!r}: {key} {bad} outside the vocabulary {vocabulary}"
            )
        return labels


def _video_id(features) -> str:
    if "id" not in features or not features["id"].bytes_list.value:
        raise InvalidPayloadError("record has no 'id' bytes feature")
    return features["id"].bytes_list.value[0].decode("utf-8", errors="replace")


_LIST_DTYPES = {"int64_list": np.int64, "float_list": np.float32}
# Labels are checked against this without a vocabulary (looked up once: it runs per record).
_NO_LIMIT = int(np.iinfo(np.int64).max)


def _values(features, key: str, video_id: str, kind: str = "int64_list") -> np.ndarray:
    """The values of a context feature of type ``kind`` (``int64_list`` or ``float_list``); an
    absent feature, or one of no type, holds no values (as TensorFlow reads them). A feature of
    another type is an error, not an empty list: labels stored as floats must not read as a
    video without labels."""
    dtype = _LIST_DTYPES[kind]
    if key not in features:
        return np.zeros(0, dtype)
    feature = features[key]
    stored = feature.WhichOneof("kind")
    if stored is None:
        return np.zeros(0, dtype)
    if stored != kind:
        raise InvalidPayloadError(
            f"video {video_id!r}: {key!r} is a {stored}, not the {kind} of its schema"
        )
    values = getattr(feature, kind).value
    return (
        np.array(list(values), dtype=dtype) if kind == "int64_list" else np.asarray(values, dtype)
    )


def _rows(frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Selected rows of a frame view: a view for a contiguous run, else a compact copy."""
    if len(indices) and indices[-1] - indices[0] + 1 == len(indices):
        return frames[indices[0] : indices[-1] + 1]
    return frames[indices]


def _frame_bytes(frames, indices: np.ndarray, size: int, name: str, video_id: str) -> np.ndarray:
    """Join the selected frames' bytes into uint8 [len(indices), size], checking that each holds
    exactly one bytes value (as TensorFlow's one-string-per-frame parsing does) of ``size``."""
    try:
        values = [frames[i].bytes_list.value for i in indices.tolist()]
        joined = b"".join([value[0] for value in values])
        # No frame is empty (that raised IndexError), so equal totals mean one value each.
        one_each = sum(map(len, values)) == len(values)
    except IndexError:
        one_each = False
    if not one_each:
        for i in indices.tolist():
            if i >= len(frames) or len(frames[i].bytes_list.value) != 1:
                raise InvalidPayloadError(
                    f"video {video_id!r}: {name} frame {i} does not hold exactly one bytes value"
                )
    if len(joined) != len(indices) * size:
        for i in indices.tolist():
            got = len(frames[i].bytes_list.value[0])
            if got != size:
                raise InvalidPayloadError(
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
    if not is_url(path) and not os.path.isfile(local_path(path)):
        raise FileNotFoundError(f"no such TFRecord file: {path}")
    decoder = RecordDecoder(schema, num_classes, select)
    for index, offset, payload in iter_payloads(path):
        yield decoder.decode_record(path, index, offset, payload)


# --------------------------------------------------------------------------------------------
# Encoding (for writing test fixtures and synthetic data in the official schemas)
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


def _parse(message: type, payload: bytes):
    """``payload`` parsed as ``message`` (a protobuf class), or InvalidPayloadError naming it."""
    try:
        return message.FromString(payload)
    except DecodeError as e:
        article = "an" if message.__name__[0] in "AEIOU" else "a"
        raise InvalidPayloadError(
            f"not {article} {message.__name__} protocol buffer ({e})"
        ) from None
