"""YT8M schema decoding and encoding, and the checks that keep bad records from becoming tensors."""

from __future__ import annotations

import numpy as np
import pytest
from tfrecord import example_pb2

from shardtools import random_video, write_payloads, write_shards
from vidistill.data import (
    CorruptRecordError,
    encode_frame_example,
    encode_video_example,
    read_records,
)
from vidistill.data.records import InvalidPayloadError, RecordDecoder


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
    write_payloads(tmp_path / "a.tfrecord", [encode_frame_example(vid, labels, rgb, audio)])
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
    write_payloads(
        tmp_path / "s.tfrecord", [encode_frame_example(vid, labels, rgb, audio, segments)]
    )
    (record,) = read_records(str(tmp_path / "s.tfrecord"), schema="segment", num_classes=10)
    np.testing.assert_array_equal(record.segment_start_times, [0, 10, 10])
    np.testing.assert_array_equal(record.segment_end_times, [5, 15, 15])
    np.testing.assert_array_equal(record.segment_labels, [3, 3, 7])
    np.testing.assert_array_equal(record.segment_scores, np.array([1, 0, 1], np.float32))
    np.testing.assert_array_equal(record.rgb, rgb)

    mean_rgb = rng.normal(size=1024).astype(np.float32)
    mean_audio = rng.normal(size=128).astype(np.float32)
    write_payloads(
        tmp_path / "v.tfrecord", [encode_video_example("vid", [1, 2], mean_rgb, mean_audio)]
    )
    (video,) = read_records(str(tmp_path / "v.tfrecord"), schema="video")
    assert video.id == "vid"
    np.testing.assert_array_equal(video.labels, [1, 2])
    np.testing.assert_array_equal(video.mean_rgb, mean_rgb)
    np.testing.assert_array_equal(video.mean_audio, mean_audio)


# ---------------------------------------------------------------------------------------------
# Bad records: every problem names the file, the record and what is wrong.
# ---------------------------------------------------------------------------------------------


def test_record_of_another_schema(tmp_path):
    write_payloads(
        tmp_path / "v.tfrecord", [encode_video_example("vv", [1], np.zeros(1024), np.zeros(128))]
    )
    with pytest.raises(CorruptRecordError, match="video-level Example .* schema='video'"):
        list(read_records(str(tmp_path / "v.tfrecord"), schema="frame"))
    rng = np.random.default_rng(7)
    write_payloads(tmp_path / "f.tfrecord", [encode_frame_example(*random_video(rng, "ff", 3))])
    with pytest.raises(CorruptRecordError, match="not a video-level Example"):
        list(read_records(str(tmp_path / "f.tfrecord"), schema="video"))
    with pytest.raises(CorruptRecordError, match="not a segment-rated record"):
        list(read_records(str(tmp_path / "f.tfrecord"), schema="segment"))
    write_payloads(tmp_path / "junk.tfrecord", [b"\xff\xff\xff not a protocol buffer"])
    with pytest.raises(CorruptRecordError, match="not a SequenceExample"):
        list(read_records(str(tmp_path / "junk.tfrecord")))


def test_rgb_frame_of_wrong_size_is_named(tmp_path):
    rng = np.random.default_rng(8)
    vid, labels, rgb, audio = random_video(rng, "odd", 4)
    example = example_pb2.SequenceExample.FromString(encode_frame_example(vid, labels, rgb, audio))
    example.feature_lists.feature_list["rgb"].feature[2].bytes_list.value[0] = bytes(1000)
    write_payloads(tmp_path / "odd.tfrecord", [example.SerializeToString()])
    with pytest.raises(CorruptRecordError, match="rgb frame 2 has 1000 bytes, expected 1024"):
        list(read_records(str(tmp_path / "odd.tfrecord")))


def test_empty_video_and_unequal_modalities(tmp_path):
    empty = np.zeros((0, 1024), np.uint8)
    write_payloads(
        tmp_path / "e.tfrecord",
        [encode_frame_example("empty", [1], empty, np.zeros((0, 128), np.uint8))],
    )
    with pytest.raises(CorruptRecordError, match="'empty' has zero frames"):
        list(read_records(str(tmp_path / "e.tfrecord")))
    rgb = np.zeros((3, 1024), np.uint8)
    write_payloads(
        tmp_path / "u.tfrecord",
        [encode_frame_example("uneq", [1], rgb, np.zeros((2, 128), np.uint8))],
    )
    with pytest.raises(CorruptRecordError, match="3 rgb frames but 2 audio frames"):
        list(read_records(str(tmp_path / "u.tfrecord")))


def test_labels_outside_the_vocabulary(tmp_path):
    rng = np.random.default_rng(9)
    vid, _, rgb, audio = random_video(rng, "lab", 3)
    write_payloads(tmp_path / "l.tfrecord", [encode_frame_example(vid, [2, 12], rgb, audio)])
    with pytest.raises(CorruptRecordError, match=r"labels \[12\] outside the vocabulary \[0, 10\)"):
        list(read_records(str(tmp_path / "l.tfrecord"), num_classes=10))
    assert len(list(read_records(str(tmp_path / "l.tfrecord"), num_classes=13))) == 1
    write_payloads(tmp_path / "n.tfrecord", [encode_frame_example(vid, [-1], rgb, audio)])
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
    write_payloads(tmp_path / "a.tfrecord", [encode_frame_example(vid, labels, rgb, audio, bad)])
    with pytest.raises(CorruptRecordError, match="segment arrays differ in length"):
        list(read_records(str(tmp_path / "a.tfrecord"), schema="segment"))
    bad = {
        "segment_start_times": [0],
        "segment_end_times": [6],
        "segment_labels": [1],
        "segment_scores": [1.0],
    }
    write_payloads(tmp_path / "b.tfrecord", [encode_frame_example(vid, labels, rgb, audio, bad)])
    with pytest.raises(CorruptRecordError, match="end = start \\+ 5"):
        list(read_records(str(tmp_path / "b.tfrecord"), schema="segment"))


def test_missing_file_and_unknown_schema(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tfrecord"):
        list(read_records(str(tmp_path / "nope.tfrecord")))
    write_shards(tmp_path, 1, 1)
    with pytest.raises(ValueError, match="unknown schema 'frames'"):
        list(read_records(str(tmp_path / "train0000.tfrecord"), schema="frames"))


def test_decoder_errors_are_plain_descriptions():
    with pytest.raises(InvalidPayloadError):
        RecordDecoder("video").decode(b"\x0a\x02\x08")
