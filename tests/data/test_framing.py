"""TFRecord framing: checksums, offsets, and bad framing reported with file, record and offset."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tfrecord.reader import sequence_loader
from tfrecord.writer import TFRecordWriter

from shardtools import random_video, write_payloads
from vidistill.data import CorruptRecordError, encode_frame_example, read_records
from vidistill.data.framing import masked_crc32c, scan_offsets


def test_checksums_and_framing_match_the_tfrecord_package(tmp_path):
    payload = b"vidistill"
    assert struct.pack("<I", masked_crc32c(payload)) == TFRecordWriter.masked_crc(payload)
    # our files read with the tfrecord package, and the package's files read with ours
    rng = np.random.default_rng(5)
    vid, labels, rgb, audio = random_video(rng, "compat", 6)
    write_payloads(tmp_path / "ours.tfrecord", [encode_frame_example(vid, labels, rgb, audio)])
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


@pytest.fixture
def three_records(tmp_path):
    rng = np.random.default_rng(6)
    payloads = [encode_frame_example(*random_video(rng, f"r{i}", 5)) for i in range(3)]
    path = tmp_path / "three.tfrecord"
    offsets = write_payloads(path, payloads)
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
