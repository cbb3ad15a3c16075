"""TFRecord framing, schema decoding and the checks that keep bad input from becoming tensors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from tfrecord import example_pb2
from tfrecord.reader import sequence_loader
from tfrecord.writer import TFRecordWriter

from shardtools import random_video, write_shards
from vidistill.data import (
    CorruptRecordError,
    RecordWriter,
    dequantize,
    encode_frame_example,
    encode_video_example,
    read_records,
)
from vidistill.data.records import RecordDecoder, _InvalidPayload, masked_crc32c, scan_offsets


def write(path, payloads):
    with RecordWriter(str(path)) as writer:
        for payload in payloads:
            writer.write(payload)
    return writer.offsets


def test_frame_records_round_trip_exactly(shards):
    directory, videos = shards
    seen = 0
    for path in sorted(directory.glob("*.tfrecord")):
        for record in read_records(str(path), num_classes=10):
            labels, rgb, audio = videos[record.id]
            np.testing.assert_array_equal(record.labels, labels)
            np.testing.assert_array_equal(record.rgb, rgb)
            np.testing.assert_array_equal(record.audio, audio)
            assert record.num_frames == len(rgb)
            assert record.rgb.dtype == np.uint8 and record.audio.shape == (len(rgb), 128)
            seen += 1
    assert seen == len(videos)


def test_selection_decodes_only_selected_frames(tmp_path):
    rng = np.random.default_rng(1)
    vid, labels, rgb, audio = random_video(rng, "abc", 50)
    write(tmp_path / "a.tfrecord", [encode_frame_example(vid, labels, rgb, audio)])
    calls = []

    def select(n, video_id):
        calls.append((n, video_id))
        return np.array([0, 7, 49])

    (record,) = read_records(str(tmp_path / "a.tfrecord"), select=select)
    assert calls == [(50, "abc")]
    np.testing.assert_array_equal(record.rgb, rgb[[0, 7, 49]])
    np.testing.assert_array_equal(record.audio, audio[[0, 7, 49]])
    np.testing.assert_array_equal(record.frame_indices, [0, 7, 49])
    assert record.num_frames == 50


def test_fast_layout_agrees_with_protobuf_layout():
    rng = np.random.default_rng(2)
    decoder = RecordDecoder("frame")
    for n in (1, 2, 17, 300):
        vid, labels, rgb, audio = random_video(rng, f"id{n}", n)
        payload = encode_frame_example(vid, labels, rgb, audio)
        fast = decoder._regular_layout(payload)
        slow = decoder._protobuf_layout(payload)
        assert fast is not None
        assert fast[1] == slow[1] == vid and fast[2] == slow[2] == n
        picks = np.unique(rng.integers(0, n, size=5))
        for a, b in zip(fast[3](picks), slow[3](picks), strict=True):
            np.testing.assert_array_equal(a, b)


def test_feature_lists_before_context_still_decode():
    # Protobuf allows any field order; TensorFlow writes context first. Both must decode.
    rng = np.random.default_rng(3)
    vid, labels, rgb, audio = random_video(rng, "swap", 4)
    example = example_pb2.SequenceExample.FromString(encode_frame_example(vid, labels, rgb, audio))
    context = example_pb2.SequenceExample(context=example.context).SerializeToString()
    lists = example_pb2.SequenceExample(feature_lists=example.feature_lists).SerializeToString()
    record = RecordDecoder("frame").decode(lists + context)
    assert record.id == "swap"
    np.testing.assert_array_equal(record.rgb, rgb)


def test_segment_and_video_schemas_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    vid, labels, rgb, audio = random_video(rng, "seg", 23)
    segments = {
        "segment_start_times": [0, 10, 10],
        "segment_end_times": [5, 15, 15],
        "segment_labels": [3, 3, 7],
        "segment_scores": [1.0, 0.0, 1.0],
    }
    write(tmp_path / "s.tfrecord", [encode_frame_example(vid, labels, rgb, audio, segments)])
    (record,) = read_records(str(tmp_path / "s.tfrecord"), schema="segment", num_classes=10)
    np.testing.assert_array_equal(record.segment_start_times, [0, 10, 10])
    np.testing.assert_array_equal(record.segment_end_times, [5, 15, 15])
    np.testing.assert_array_equal(record.segment_labels, [3, 3, 7])
    np.testing.assert_array_equal(record.segment_scores, np.array([1, 0, 1], np.float32))
    np.testing.assert_array_equal(record.rgb, rgb)

    mean_rgb = rng.normal(size=1024).astype(np.float32)
    mean_audio = rng.normal(size=128).astype(np.float32)
    write(tmp_path / "v.tfrecord", [encode_video_example("vid", [1, 2], mean_rgb, mean_audio)])
    (video,) = read_records(str(tmp_path / "v.tfrecord"), schema="video")
    assert video.id == "vid"
    np.testing.assert_array_equal(video.labels, [1, 2])
    np.testing.assert_array_equal(video.mean_rgb, mean_rgb)
    np.testing.assert_array_equal(video.mean_audio, mean_audio)


def test_dequantize_matches_the_official_formula():
    x = np.arange(256, dtype=np.uint8)
    expected = x.astype(np.float64) * 4.0 / 255.0 + 4.0 / 512.0 - 2.0
    np.testing.assert_allclose(dequantize(x), expected, rtol=0, atol=1e-6)
    assert dequantize(x).dtype == np.float32
    assert dequantize(np.uint8(0)) == pytest.approx(-1.9921875)
    np.testing.assert_allclose(dequantize(torch.from_numpy(x)).numpy(), expected, atol=1e-6)
    # the tensor path rounds exactly like TensorFlow's float32 `x * scale + bias`, bit for bit
    float32_formula = x.astype(np.float32) * np.float32(4 / 255) + np.float32(4 / 512 - 2)
    assert np.array_equal(dequantize(torch.from_numpy(x)).numpy(), float32_formula)
    assert np.array_equal(dequantize(x), float32_formula)
    # other ranges follow the same formula
    custom = x.astype(np.float64) * 6.0 / 255.0 + 6.0 / 512.0 - 1.0
    np.testing.assert_allclose(dequantize(x, 5.0, -1.0), custom, atol=1e-5)


def test_checksums_and_framing_match_the_tfrecord_package(tmp_path):
    payload = b"vidistill"
    assert struct.pack("<I", masked_crc32c(payload)) == TFRecordWriter.masked_crc(payload)
    # our files read with the tfrecord package, and the package's files read with ours
    rng = np.random.default_rng(5)
    vid, labels, rgb, audio = random_video(rng, "compat", 6)
    write(tmp_path / "ours.tfrecord", [encode_frame_example(vid, labels, rgb, audio)])
    ((context, features),) = list(
        sequence_loader(
            str(tmp_path / "ours.tfrecord"), None, {"id": "byte", "labels": "int"}, {"rgb": "byte"}
        )
    )
    assert bytes(context["id"]).decode() == "compat"
    frames = [np.frombuffer(f, np.uint8) for f in features["rgb"]]  # one bytes value per frame
    assert np.array_equal(np.stack(frames), rgb)
    writer = TFRecordWriter(str(tmp_path / "theirs.tfrecord"))
    writer.write(
        {"id": (b"theirs", "byte"), "labels": ([4], "int")},
        {
            "rgb": ([frame.tobytes() for frame in rgb], "byte"),
            "audio": ([frame.tobytes() for frame in audio], "byte"),
        },
    )
    writer.close()
    (record,) = read_records(str(tmp_path / "theirs.tfrecord"))
    assert record.id == "theirs" and record.labels.tolist() == [4]
    np.testing.assert_array_equal(record.rgb, rgb)


# ---------------------------------------------------------------------------------------------
# Bad input: every problem names the file, the record and what is wrong.
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def three_records(tmp_path):
    rng = np.random.default_rng(6)
    payloads = [encode_frame_example(*random_video(rng, f"r{i}", 5)) for i in range(3)]
    path = tmp_path / "three.tfrecord"
    offsets = write(path, payloads)
    return path, offsets, payloads


def corrupt(path, position, value=None):
    data = bytearray(path.read_bytes())
    data[position] = (data[position] ^ 0xFF) if value is None else value
    path.write_bytes(bytes(data))


def test_payload_checksum_mismatch_names_file_record_and_offset(three_records):
    path, offsets, _ = three_records
    corrupt(path, offsets[1] + 12 + 40)
    with pytest.raises(CorruptRecordError) as info:
        list(read_records(str(path)))
    error = info.value
    assert (error.path, error.index, error.offset) == (str(path), 1, offsets[1])
    assert "payload checksum" in str(error) and str(path) in str(error) and "record 1" in str(error)


def test_corrupt_length_is_caught_before_allocation(three_records):
    path, offsets, _ = three_records
    corrupt(path, offsets[2] + 7, 0x7F)  # the length's most significant byte: ~2**62 bytes
    with pytest.raises(CorruptRecordError, match="length checksum") as info:
        list(read_records(str(path)))
    assert info.value.index == 2
    found, error = scan_offsets(str(path))
    assert found.tolist() == offsets[:2] and error.index == 2


def test_truncated_file(three_records):
    path, offsets, _ = three_records
    path.write_bytes(path.read_bytes()[: offsets[2] + 20])
    with pytest.raises(CorruptRecordError, match="truncated") as info:
        list(read_records(str(path)))
    assert info.value.index == 2
    path.write_bytes(path.read_bytes()[: offsets[2] + 5])
    with pytest.raises(CorruptRecordError, match="truncated inside a record header"):
        list(read_records(str(path)))


def test_record_of_another_schema(tmp_path):
    write(tmp_path / "v.tfrecord", [encode_video_example("vv", [1], np.zeros(1024), np.zeros(128))])
    with pytest.raises(CorruptRecordError, match="video-level Example .* schema='video'"):
        list(read_records(str(tmp_path / "v.tfrecord"), schema="frame"))
    rng = np.random.default_rng(7)
    write(tmp_path / "f.tfrecord", [encode_frame_example(*random_video(rng, "ff", 3))])
    with pytest.raises(CorruptRecordError, match="not a video-level Example"):
        list(read_records(str(tmp_path / "f.tfrecord"), schema="video"))
    with pytest.raises(CorruptRecordError, match="not a segment-rated record"):
        list(read_records(str(tmp_path / "f.tfrecord"), schema="segment"))
    write(tmp_path / "junk.tfrecord", [b"\xff\xff\xff not a protocol buffer"])
    with pytest.raises(CorruptRecordError, match="not a SequenceExample"):
        list(read_records(str(tmp_path / "junk.tfrecord")))


def test_rgb_frame_of_wrong_size_is_named(tmp_path):
    rng = np.random.default_rng(8)
    vid, labels, rgb, audio = random_video(rng, "odd", 4)
    example = example_pb2.SequenceExample.FromString(encode_frame_example(vid, labels, rgb, audio))
    example.feature_lists.feature_list["rgb"].feature[2].bytes_list.value[0] = bytes(1000)
    write(tmp_path / "odd.tfrecord", [example.SerializeToString()])
    with pytest.raises(CorruptRecordError, match="rgb frame 2 has 1000 bytes, expected 1024"):
        list(read_records(str(tmp_path / "odd.tfrecord")))


def test_empty_video_and_unequal_modalities(tmp_path):
    empty = np.zeros((0, 1024), np.uint8)
    write(
        tmp_path / "e.tfrecord",
        [encode_frame_example("empty", [1], empty, np.zeros((0, 128), np.uint8))],
    )
    with pytest.raises(CorruptRecordError, match="'empty' has zero frames"):
        list(read_records(str(tmp_path / "e.tfrecord")))
    rgb = np.zeros((3, 1024), np.uint8)
    write(
        tmp_path / "u.tfrecord",
        [encode_frame_example("uneq", [1], rgb, np.zeros((2, 128), np.uint8))],
    )
    with pytest.raises(CorruptRecordError, match="3 rgb frames but 2 audio frames"):
        list(read_records(str(tmp_path / "u.tfrecord")))


def test_labels_outside_the_vocabulary(tmp_path):
    rng = np.random.default_rng(9)
    vid, _, rgb, audio = random_video(rng, "lab", 3)
    write(tmp_path / "l.tfrecord", [encode_frame_example(vid, [2, 12], rgb, audio)])
    with pytest.raises(CorruptRecordError, match=r"labels \[12\] outside the vocabulary \[0, 10\)"):
        list(read_records(str(tmp_path / "l.tfrecord"), num_classes=10))
    assert len(list(read_records(str(tmp_path / "l.tfrecord"), num_classes=13))) == 1
    write(tmp_path / "n.tfrecord", [encode_frame_example(vid, [-1], rgb, audio)])
    with pytest.raises(CorruptRecordError, match="outside the vocabulary"):
        list(read_records(str(tmp_path / "n.tfrecord")))


def test_segment_arrays_must_be_parallel_and_five_frames_long(tmp_path):
    rng = np.random.default_rng(10)
    vid, labels, rgb, audio = random_video(rng, "bad", 12)
    bad = {
        "segment_start_times": [0, 5],
        "segment_end_times": [5, 10],
        "segment_labels": [1],
        "segment_scores": [1.0, 0.0],
    }
    write(tmp_path / "a.tfrecord", [encode_frame_example(vid, labels, rgb, audio, bad)])
    with pytest.raises(CorruptRecordError, match="segment arrays differ in length"):
        list(read_records(str(tmp_path / "a.tfrecord"), schema="segment"))
    bad = {
        "segment_start_times": [0],
        "segment_end_times": [6],
        "segment_labels": [1],
        "segment_scores": [1.0],
    }
    write(tmp_path / "b.tfrecord", [encode_frame_example(vid, labels, rgb, audio, bad)])
    with pytest.raises(CorruptRecordError, match="end = start \\+ 5"):
        list(read_records(str(tmp_path / "b.tfrecord"), schema="segment"))


def test_missing_file_and_unknown_schema(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tfrecord"):
        list(read_records(str(tmp_path / "nope.tfrecord")))
    write_shards(tmp_path, 1, 1)
    with pytest.raises(ValueError, match="unknown schema 'frames'"):
        list(read_records(str(tmp_path / "train0000.tfrecord"), schema="frames"))


def test_decoder_errors_are_plain_descriptions():
    with pytest.raises(_InvalidPayload):
        RecordDecoder("video").decode(b"\x0a\x02\x08")
