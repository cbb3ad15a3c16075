"""Bad input at volume: seeded random damage to shards, and what reading them must give.

Three properties, 1000 seeded cases each:

* **Framing** (:func:`test_damaged_shard_reads_exactly_up_to_the_damage`): single-byte flips,
  truncations and inserted garbage anywhere in a shard. Reading it yields the intact records
  before the first damaged one, bit for bit, and then a :class:`CorruptRecordError` naming the
  file, that record and its byte offset; never another exception, and no more memory for a
  record than the file's size (plus interpreter overhead). Where the damage is and what it breaks is worked out from the shard's layout
  alone (:func:`expected_damage`), not by asking the reader.
* **Skip accounting** (:func:`test_on_corrupt_skip_loses_exactly_the_damaged_records`): the same
  shards through ``YT8MDataset(on_corrupt="skip")``, the path training and prediction use. The
  videos lost are exactly the damaged records (counted in ``skip_counter``) plus, after a broken
  header, the rest of that file (reported in ``broken_files`` with the record and offset).
* **Decoding** (:func:`test_damaged_payloads_decode_as_tensorflow_would_or_fail_cleanly`): the
  same kinds of damage inside a payload that is then checksummed again, as a faulty writer would
  leave it, for all three schemas. vidistill's decode (zero-copy fast path or protobuf) equals
  what TensorFlow's parsing of the YT8M schema gives (:func:`reference_decode`), or, where that
  parsing fails or the schema is violated, raises :class:`CorruptRecordError` for that record.
"""

from __future__ import annotations

import multiprocessing
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from tfrecord import example_pb2

from protowire import (
    bytes_feature,
    feature_list,
    features,
    field,
    int64_feature,
    sequence_example,
    write_tfrecord,
)
from vidistill.data import (
    CorruptRecordError,
    YT8MDataset,
    encode_frame_example,
    encode_video_example,
    read_records,
)
from vidistill.data.framing import scan_offsets

CASES = 1000
NUM_CLASSES = 3862
HEADER, FOOTER = 12, 4  # length + its checksum; payload checksum


# ---------------------------------------------------------------------------------------------
# Damage
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """One change to a byte string: ``flip`` XORs the byte at ``position`` with ``mask``,
    ``truncate`` keeps the first ``position`` bytes, ``insert`` puts ``garbage`` before
    ``position``."""

    kind: str
    position: int
    mask: int = 0
    garbage: bytes = b""

    def apply(self, data: bytes) -> bytes:
        if self.kind == "flip":
            changed = bytearray(data)
            changed[self.position] ^= self.mask
            return bytes(changed)
        if self.kind == "truncate":
            return data[: self.position]
        return data[: self.position] + self.garbage + data[self.position :]


def random_damage(rng: np.random.Generator, size: int, positions: np.ndarray) -> Damage:
    """A flip (half of them of a single bit, which keeps most protobuf tags' wire type), a
    truncation or 1-24 inserted random bytes; the position drawn from ``positions`` (a flip's
    must be < size, an insertion's may be = size, a truncation's is the new size)."""
    kind = ("flip", "truncate", "insert")[int(rng.integers(3))]
    position = int(rng.choice(positions))
    if kind == "flip":
        position = min(position, size - 1)
        mask = 1 << int(rng.integers(8)) if rng.random() < 0.5 else int(rng.integers(1, 256))
        return Damage(kind, position, mask=mask)
    if kind == "truncate":
        return Damage(kind, min(position, size - 1))
    garbage = rng.integers(0, 256, int(rng.integers(1, 25)), dtype=np.uint8).tobytes()
    return Damage(kind, position, garbage=garbage)


# ---------------------------------------------------------------------------------------------
# Framing: a damaged shard
# ---------------------------------------------------------------------------------------------

SHARD_VIDEOS = 16


@pytest.fixture(scope="module")
def shard(tmp_path_factory) -> dict:
    """A frame-level shard of 16 short videos (1-5 frames, so that headers are not too rare a
    target), its bytes, and every record's offset and payload length."""
    rng = np.random.default_rng(1234)
    videos, encoded = [], []
    for i in range(SHARD_VIDEOS):
        n = int(rng.integers(1, 6))
        video = (
            f"vid{i:02d}",
            [int(x) for x in rng.permutation(NUM_CLASSES)[: rng.integers(0, 4)]],
            rng.integers(0, 256, (n, 1024), dtype=np.uint8),
            rng.integers(0, 256, (n, 128), dtype=np.uint8),
        )
        videos.append(video)
        encoded.append(encode_frame_example(*video))
    path = tmp_path_factory.mktemp("fuzz") / "intact.tfrecord"
    offsets = write_tfrecord(path, encoded)
    return {
        "videos": videos,
        "data": path.read_bytes(),
        "offsets": offsets,
        "lengths": [len(p) for p in encoded],
    }


@dataclass
class Expected:
    """What a damaged shard holds: records whose payload checksum fails (their framing intact),
    and where the framing breaks, ``(record index, byte offset, message)``, if it does.
    ``readable`` is the number of records framing still reaches."""

    bad_payloads: list[int]
    framing_break: tuple[int, int, str] | None
    readable: int


def shard_regions(offsets: list[int], lengths: list[int], size: int) -> np.ndarray:
    """Candidate damage positions: each record's length field, length checksum, payload and
    payload checksum equally likely (headers are a tiny share of the bytes), plus every record
    boundary and the end of the file."""
    rng = np.random.default_rng(99)
    positions = []
    for offset, length in zip(offsets, lengths, strict=True):
        start = offset + HEADER
        for low, high in ((offset, offset + 8), (offset + 8, start), (start, start + length)):
            positions += rng.integers(low, high, 40).tolist()
        positions += rng.integers(start + length, start + length + FOOTER, 40).tolist()
        positions += [offset] * 8
    return np.array(positions + [size] * 8)


def expected_damage(
    damage: Damage, data: bytes, offsets: list[int], lengths: list[int]
) -> Expected:
    """The outcome of ``damage`` to the shard ``data`` with these record offsets and payload
    lengths, from TFRecord framing alone."""
    n = len(offsets)
    size = offsets[-1] + HEADER + lengths[-1] + FOOTER
    if damage.kind == "insert":
        damage = _first_change(damage, data)
    ends = [o + HEADER + length + FOOTER for o, length in zip(offsets, lengths, strict=True)]
    p = damage.position
    if damage.kind == "insert" and p == size:  # trailing garbage: a broken header after the end
        short = len(damage.garbage) < HEADER
        return Expected([], (n, size, _header_problem(short)), n)
    if damage.kind == "truncate" and p in offsets:  # a clean cut: a valid, shorter file
        return Expected([], None, offsets.index(p))
    i = max(j for j in range(n) if offsets[j] <= p)
    in_header = p < offsets[i] + HEADER
    if damage.kind == "flip":
        if in_header:
            return Expected([], (i, offsets[i], "length checksum mismatch"), i)
        return Expected([i], None, n)
    if damage.kind == "truncate":
        problem = "truncated inside a record header" if in_header else "runs past the end"
        return Expected([], (i, offsets[i], problem), i)
    if in_header:  # garbage inside (or just before) a header
        return Expected([], (i, offsets[i], "length checksum mismatch"), i)
    # Garbage in a payload or its checksum: that record fails its checksum, and the next header
    # is looked for where it used to be, now inside shifted bytes.
    short = i + 1 == n and len(damage.garbage) < HEADER
    return Expected([i], (i + 1, ends[i], _header_problem(short)), i + 1)


def _first_change(insertion: Damage, data: bytes) -> Damage:
    """The same insertion moved to the first byte it changes: inserting ``g0 g1 .. gk`` before a
    byte equal to ``g0`` gives the file that inserting ``g1 .. gk g0`` after that byte does."""
    position, garbage = insertion.position, insertion.garbage
    while position < len(data) and garbage[0] == data[position]:
        position, garbage = position + 1, garbage[1:] + garbage[:1]
    return Damage("insert", position, garbage=garbage)


def _header_problem(short: bool) -> str:
    return "truncated inside a record header" if short else "length checksum mismatch"


def damages(shard: dict) -> Iterator[tuple[int, Damage, Expected]]:
    """The 1000 seeded cases (the same in every test that uses them)."""
    data, offsets, lengths = shard["data"], shard["offsets"], shard["lengths"]
    positions = shard_regions(offsets, lengths, len(data))
    rng = np.random.default_rng(20240611)
    for case in range(CASES):
        damage = random_damage(rng, len(data), positions)
        yield case, damage, expected_damage(damage, data, offsets, lengths)


def assert_same_video(record, video) -> None:
    video_id, labels, rgb, audio = video
    assert record.id == video_id and record.labels.tolist() == labels
    assert np.array_equal(record.rgb, rgb) and np.array_equal(record.audio, audio)


def case_file(directory: Path, case: int, data: bytes) -> Path:
    """Write one case's file under a new name (rewriting one file in place is slow on ext4,
    which flushes a file truncated and rewritten when it is closed)."""
    path = directory / f"damaged-{case:04d}.tfrecord"
    path.write_bytes(data)
    return path


SLACK = 64 * 1024
"""Bytes of interpreter overhead (objects, an exception and its traceback) allowed on top of
the file's size when measuring what reading one record allocates; a buffer sized from a corrupt
length field would be up to 2**64 bytes."""


def read_measured(path: Path, schema: str = "frame") -> tuple[list, CorruptRecordError | None, int]:
    """The records of ``path`` up to the first CorruptRecordError (any other exception
    propagates), that error, and the most memory (traced by tracemalloc, which sees Python
    objects and numpy arrays) reading any one record allocated beyond what was held before."""
    records, error, peak = [], None, 0
    iterator = read_records(str(path), schema=schema, num_classes=NUM_CLASSES)
    while True:
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        try:
            records.append(next(iterator))
        except StopIteration:
            break
        except CorruptRecordError as e:
            error = e
            break
        finally:
            peak = max(peak, tracemalloc.get_traced_memory()[1] - held)
    return records, error, peak


@pytest.mark.timeout(120)
def test_damaged_shard_reads_exactly_up_to_the_damage(shard, tmp_path):
    """1000 damaged copies of a shard, read with ``read_records`` (which raises at the first
    problem): the records before the first damaged one come back exactly; then a
    CorruptRecordError names the file, the damaged record and its offset, with the problem. The
    header scan agrees on where the framing breaks. No other exception, and reading a record
    allocates no more than the file's size plus SLACK (a corrupt length must not become a
    buffer). The timeout turns a hang into a failure."""
    videos, offsets = shard["videos"], shard["offsets"]
    kinds = {"payload checksum mismatch": 0}
    tracemalloc.start()
    try:
        for case, damage, expected in damages(shard):
            data = damage.apply(shard["data"])
            path = case_file(tmp_path, case, data)
            problems = [(i, offsets[i], "payload checksum mismatch") for i in expected.bad_payloads]
            problems += [expected.framing_break] if expected.framing_break else []
            first = min(problems, default=None)
            limit = first[0] if first else expected.readable

            delivered, error, peak = read_measured(path)
            assert peak <= len(data) + SLACK, f"case {case} {damage}: {peak} bytes allocated"

            assert len(delivered) == limit, f"case {case} {damage}"
            for record, video in zip(delivered, videos, strict=False):
                assert_same_video(record, video)
            if first is None:
                assert error is None, f"case {case} {damage}: {error}"
            else:
                assert error is not None, f"case {case} {damage}"
                assert (error.path, error.index, error.offset) == (str(path), first[0], first[1])
                assert first[2] in error.problem, f"case {case} {damage}: {error}"
                assert f"record {first[0]} (byte offset {first[1]})" in str(error)
                kinds[first[2]] = kinds.get(first[2], 0) + 1

            found, scan_error = scan_offsets(str(path))
            if expected.framing_break:
                index, offset, problem = expected.framing_break
                assert found.tolist() == offsets[:index]
                assert (scan_error.index, scan_error.offset) == (index, offset)
                assert problem in scan_error.problem
            else:
                assert found.tolist() == offsets[: expected.readable] and scan_error is None
            path.unlink()
    finally:
        tracemalloc.stop()
    # The cases reach every kind of framing failure.
    assert set(kinds) == {
        "payload checksum mismatch",
        "length checksum mismatch",
        "truncated inside a record header",
        "runs past the end",
    }
    assert min(kinds.values()) >= 20, kinds


@pytest.mark.timeout(300)
def test_on_corrupt_skip_loses_exactly_the_damaged_records(shard, tmp_path):
    """The same 1000 damaged shards, each read beside an intact one by
    ``YT8MDataset(on_corrupt="skip")``: the videos delivered are all the intact file's and the
    damaged file's undamaged records before any framing break, in order; ``skip_counter`` counts
    the records skipped for a bad payload; a framing break is reported in ``broken_files``
    naming its record and offset. So the videos lost are exactly the skipped records plus the
    rest of a file after a reported break. The only silent loss is a cut exactly between two
    records, which leaves a valid, shorter TFRecord file (the format has no record count)."""
    videos = shard["videos"]
    ids = [v[0] for v in videos]
    intact = tmp_path / "z-intact.tfrecord"
    intact.write_bytes(shard["data"])
    for case, damage, expected in damages(shard):
        # (A new name per case also matters here: the record index cache is keyed by path, size
        # and mtime, and two equal-sized files written within a clock tick share an mtime.)
        path = case_file(tmp_path, case, damage.apply(shard["data"]))
        counter = multiprocessing.Value("q", 0)
        dataset = YT8MDataset(
            [str(path), str(intact)],
            num_classes=NUM_CLASSES,
            batch_size=64,
            on_corrupt="skip",
            skip_counter=counter,
            index_cache=tmp_path / "index",
        )
        seen = [video_id for batch in dataset for video_id in batch["ids"]]
        path.unlink()

        survivors = [ids[i] for i in range(expected.readable) if i not in expected.bad_payloads]
        assert seen == survivors + ids, f"case {case} {damage}"
        assert counter.value == len(expected.bad_payloads), f"case {case} {damage}"
        if expected.framing_break:
            index, offset, problem = expected.framing_break
            (report,) = dataset.broken_files.values()
            assert list(dataset.broken_files) == [str(path)]
            assert f"record {index} (byte offset {offset})" in report and problem in report
            after_break = SHARD_VIDEOS - index
        else:
            assert dataset.broken_files == {}, f"case {case} {damage}"
            after_break = 0
        # The accounting: every video lost is a reported one, but for a cut between records.
        lost = 2 * SHARD_VIDEOS - len(seen)
        unreported = lost - counter.value - after_break
        clean_cut = damage.kind == "truncate" and damage.position in shard["offsets"]
        assert unreported == (SHARD_VIDEOS - expected.readable if clean_cut else 0), case


# ---------------------------------------------------------------------------------------------
# Decoding: damaged payloads with valid checksums
# ---------------------------------------------------------------------------------------------


class Invalid(Exception):
    """The payload is not a valid record of its schema for TensorFlow's parsing."""


def _values(context, key: str, kind: str) -> list:
    """A context feature's values as TensorFlow parses a VarLenFeature: none if absent or of no
    type, an error if of another type."""
    stored = context[key].WhichOneof("kind") if key in context else None
    if stored is None:
        return []
    if stored != kind:
        raise Invalid(f"{key} is a {stored}")
    return list(getattr(context[key], kind).value)


def _frames(lists, name: str, size: int) -> np.ndarray:
    """A FixedLenSequenceFeature of one string of ``size`` bytes per frame."""
    if name not in lists:
        raise Invalid(f"no {name}")
    rows = []
    for frame in lists[name].feature:
        values = frame.bytes_list.value
        if frame.WhichOneof("kind") != "bytes_list" or len(values) != 1 or len(values[0]) != size:
            raise Invalid(f"bad {name} frame")
        rows.append(np.frombuffer(values[0], np.uint8))
    return np.stack(rows) if rows else np.zeros((0, size), np.uint8)


def reference_decode(payload: bytes, schema: str) -> dict:
    """The values TensorFlow's parsing of the YT8M schema gives ``payload``, checked as the
    schema requires (one id, labels in the vocabulary; frames: equal, non-zero counts of 1024-
    and 128-byte strings; segments: parallel arrays, end = start + 5, start >= 0, scores 0 or 1;
    video: 1024 and 128 floats), or :class:`Invalid`. Like vidistill, an id holding several
    strings is read as its first."""
    message = example_pb2.Example if schema == "video" else example_pb2.SequenceExample
    try:
        parsed = message.FromString(payload)
    except DecodeError as e:
        raise Invalid(str(e)) from None
    context = parsed.features.feature if schema == "video" else parsed.context.feature
    ids = _values(context, "id", "bytes_list")
    if not ids:
        raise Invalid("no id")
    labels = _values(context, "labels", "int64_list")
    if any(not 0 <= label < NUM_CLASSES for label in labels):
        raise Invalid("label outside the vocabulary")
    out = {"id": ids[0].decode("utf-8", errors="replace"), "labels": labels}
    if schema == "video":
        for key, size in (("mean_rgb", 1024), ("mean_audio", 128)):
            if key not in context:
                raise Invalid(f"no {key}")
            out[key] = np.array(_values(context, key, "float_list"), np.float32)
            if out[key].shape != (size,):
                raise Invalid(f"{key} of {out[key].size} values")
        return out
    lists = parsed.feature_lists.feature_list
    out["rgb"], out["audio"] = _frames(lists, "rgb", 1024), _frames(lists, "audio", 128)
    if len(out["rgb"]) != len(out["audio"]) or len(out["rgb"]) == 0:
        raise Invalid("frame counts")
    if schema == "segment":
        if "segment_labels" not in context:
            raise Invalid("no segment_labels")
        starts = _values(context, "segment_start_times", "int64_list")
        ends = _values(context, "segment_end_times", "int64_list")
        rated = _values(context, "segment_labels", "int64_list")
        scores = _values(context, "segment_scores", "float_list")
        if len({len(starts), len(ends), len(rated), len(scores)}) != 1:
            raise Invalid("segment arrays differ in length")
        if any(s < 0 or e != s + 5 for s, e in zip(starts, ends, strict=True)):
            raise Invalid("segment bounds")
        if any(score not in (0.0, 1.0) for score in scores):
            raise Invalid("segment scores")
        if any(not 0 <= label < NUM_CLASSES for label in rated):
            raise Invalid("segment label outside the vocabulary")
        out |= {
            "segment_start_times": starts,
            "segment_end_times": ends,
            "segment_labels": rated,
            "segment_scores": scores,
        }
    return out


def assert_matches_reference(record, reference: dict, schema: str) -> None:
    assert record.id == reference["id"]
    assert record.labels.tolist() == reference["labels"]
    if schema == "video":
        np.testing.assert_array_equal(record.mean_rgb, reference["mean_rgb"])
        np.testing.assert_array_equal(record.mean_audio, reference["mean_audio"])
        return
    assert record.num_frames == len(reference["rgb"])
    np.testing.assert_array_equal(record.rgb, reference["rgb"])
    np.testing.assert_array_equal(record.audio, reference["audio"])
    if schema == "segment":
        for key in ("segment_start_times", "segment_end_times", "segment_labels"):
            assert getattr(record, key).tolist() == reference[key]
        np.testing.assert_array_equal(
            record.segment_scores, np.array(reference["segment_scores"], np.float32)
        )


@dataclass
class Payload:
    """An intact payload, its schema, and where its structure is: the bytes that do not change
    when the feature values do (tags, lengths, names, labels, ids)."""

    schema: str
    data: bytes
    structure: np.ndarray


def _encode(variant: int, video_id: str, labels: list[int], rgb, audio) -> bytes:
    """Payload ``variant`` (0-6) of a video: vidistill's frame-level (0, 1) and segment-rated
    (2, 3) encodings, a hand encoding with the audio list first and unpacked labels (4, 5),
    which vidistill reads with protobuf rather than its fast path, and a video-level Example (6,
    the means of the frames' first rows)."""
    if variant in (0, 1):
        return encode_frame_example(video_id, labels, rgb, audio)
    if variant in (2, 3):
        starts = [0, 0, len(rgb) - 1]
        segments = {
            "segment_start_times": starts,
            "segment_end_times": [s + 5 for s in starts],
            "segment_labels": labels,
            "segment_scores": [1.0, 0.0, 1.0],
        }
        return encode_frame_example(video_id, labels, rgb, audio, segments)
    if variant in (4, 5):
        return sequence_example(
            [
                ("labels", int64_feature(labels, packed=False)),
                ("id", bytes_feature([video_id.encode()])),
            ],
            [
                ("audio", feature_list(f.tobytes() for f in audio)),
                ("rgb", feature_list(f.tobytes() for f in rgb)),
            ],
        )
    return encode_video_example(video_id, labels, rgb[0] / 7.0 - 1.0, audio[0] / 3.0)


def payloads() -> list[Payload]:
    """One payload of each variant of :func:`_encode` (1-4 frames, random values). Its
    structure is found by encoding it again with all-0 and all-0xA5 values: the bytes that stay
    the same."""
    rng = np.random.default_rng(77)
    made = []
    for variant in range(7):
        n = 1 + variant % 4
        video_id = f"p{variant}"
        labels = [int(x) for x in rng.permutation(NUM_CLASSES)[:3]]
        rgb = rng.integers(0, 256, (n, 1024), dtype=np.uint8)
        audio = rng.integers(0, 256, (n, 128), dtype=np.uint8)
        low, high = (
            _encode(variant, video_id, labels, np.full_like(rgb, fill), np.full_like(audio, fill))
            for fill in (0, 0xA5)
        )
        assert len(low) == len(high)
        same = np.frombuffer(low, np.uint8) == np.frombuffer(high, np.uint8)
        schema = ("frame", "frame", "segment", "segment", "frame", "frame", "video")[variant]
        made.append(
            Payload(schema, _encode(variant, video_id, labels, rgb, audio), np.flatnonzero(same))
        )
    return made


@pytest.mark.timeout(120)
def test_damaged_payloads_decode_as_tensorflow_would_or_fail_cleanly(tmp_path):
    """1000 payloads damaged (half the time in their structure) and checksummed again, each
    read as the middle record of a three-record file: either vidistill decodes it to exactly
    the values TensorFlow's parsing gives, or it raises CorruptRecordError for record 1 at its
    offset, the record before it delivered intact, and only when that parsing fails or the
    schema is violated. No other exception, and no allocation beyond the file's size plus
    SLACK."""
    made = payloads()
    intact = [reference_decode(payload.data, payload.schema) for payload in made]
    rng = np.random.default_rng(4321)
    outcomes = {"decoded": 0, "rejected": 0}
    tracemalloc.start()
    try:
        for case in range(CASES):
            which = int(rng.integers(len(made)))
            payload = made[which]
            everywhere = np.arange(len(payload.data) + 1)
            positions = payload.structure if rng.random() < 0.5 else everywhere
            damage = random_damage(rng, len(payload.data), positions)
            damaged = damage.apply(payload.data)
            path = tmp_path / f"payload-{case:04d}.tfrecord"
            offsets = write_tfrecord(path, [payload.data, damaged, payload.data])
            try:
                reference = reference_decode(damaged, payload.schema)
            except Invalid:
                reference = None

            records, error, peak = read_measured(path, payload.schema)
            size = path.stat().st_size
            path.unlink()
            where = f"case {case} (payload {which}, {damage})"
            assert peak <= size + SLACK, f"{where}: {peak} bytes allocated"

            assert len(records) >= 1, f"{where}: {error}"
            assert_matches_reference(records[0], intact[which], payload.schema)
            if reference is None:
                assert error is not None, f"{where}: decoded what TensorFlow would not"
                assert (error.path, error.index, error.offset) == (str(path), 1, offsets[1])
                assert len(records) == 1, where
                outcomes["rejected"] += 1
            else:
                assert error is None, f"{where}: {error}"
                assert len(records) == 3, where
                assert_matches_reference(records[1], reference, payload.schema)
                assert_matches_reference(records[2], intact[which], payload.schema)
                outcomes["decoded"] += 1
    finally:
        tracemalloc.stop()
    assert min(outcomes.values()) >= 100, outcomes


def test_a_feature_list_under_another_field_number_is_not_read(tmp_path):
    """Found by the payload fuzz (a bit flip turning the tag 0x0a of the ``audio`` entry of
    ``feature_lists`` into 0x4a, field 9): protobuf skips such an entry as an unknown field, so
    TensorFlow sees a video without audio; vidistill's zero-copy path used to read it anyway."""
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (3, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (3, 128), dtype=np.uint8)
    context = features([("id", bytes_feature([b"moved"])), ("labels", int64_feature([1]))])
    rgb_entry = field(1, b"rgb") + field(2, feature_list(f.tobytes() for f in rgb))
    audio_entry = field(1, b"audio") + field(2, feature_list(f.tobytes() for f in audio))
    payload = field(1, context) + field(2, field(1, rgb_entry) + field(9, audio_entry))
    with pytest.raises(Invalid, match="no audio"):
        reference_decode(payload, "frame")
    write_tfrecord(tmp_path / "moved.tfrecord", [payload])
    with pytest.raises(CorruptRecordError, match="record 0 .*'moved' has no feature list 'audio'"):
        list(read_records(str(tmp_path / "moved.tfrecord")))
    # The same bytes with the entry under field 1 are a regular record.
    payload = field(1, context) + field(2, field(1, rgb_entry) + field(1, audio_entry))
    write_tfrecord(tmp_path / "regular.tfrecord", [payload])
    (record,) = read_records(str(tmp_path / "regular.tfrecord"))
    assert np.array_equal(record.rgb, rgb) and np.array_equal(record.audio, audio)
