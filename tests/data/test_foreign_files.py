"""Files vidistill did not write, and vidistill's files read by another reader.

The frame-level schema is already cross-checked with the ``tfrecord`` package in
``test_framing.py`` (plain layout, context and rgb only). Here every schema is written by writers
that share no code with vidistill (:mod:`protowire`, the protocol buffer wire format encoded by
hand, and the ``tfrecord`` package's ``TFRecordWriter``), with the quirks of the real YouTube-8M
files: labels stored unsorted or empty, videos longer than the 300 frames the official reader
keeps, the ``audio`` and ``rgb`` feature lists in either order, context keys in any order,
unpacked scalar lists, and empty ``segment_*`` lists. Values are compared with what was written,
and dequantized frames with the official formula applied the way TensorFlow applies it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tfrecord import example_pb2
from tfrecord.reader import example_loader, sequence_loader
from tfrecord.writer import TFRecordWriter

from protowire import (
    EMPTY_FEATURE,
    bytes_feature,
    example,
    feature_list,
    field,
    float_feature,
    int64_feature,
    sequence_example,
    write_tfrecord,
)
from vidistill.data import (
    CorruptRecordError,
    RecordWriter,
    YT8MDataset,
    dequantize,
    dequantize_batch,
    encode_frame_example,
    encode_video_example,
    read_records,
)
from vidistill.data.synthetic import RATED_SPLITS, SyntheticConfig, generate

NUM_CLASSES = 3862  # the YT8M vocabulary
MAX_FRAMES = 300  # the official reader's max_frames, vidistill's default
LONG = 307  # a real quirk: a few YT8M videos have more than 300 one-second frames


def official_dequantize(x: np.ndarray) -> np.ndarray:
    """The YT8M starter code's ``Dequantize(feat, 2, -2)`` as TensorFlow runs it: the bytes cast
    to float32, then ``x * scalar + bias`` with scalar = 4/255 and bias = 4/512 - 2 as float32
    constants (a float32 multiply, then a float32 add)."""
    scalar, bias = np.float32(4.0 / 255.0), np.float32(4.0 / 512.0 - 2.0)
    return x.astype(np.float32) * scalar + bias


def make_videos(seed: int) -> list[tuple[str, list[int], np.ndarray, np.ndarray]]:
    """(id, labels as stored, rgb uint8 [n, 1024], audio uint8 [n, 128]) with the real data's
    quirks: unsorted labels, no labels, one frame, and more than 300 frames."""
    rng = np.random.default_rng(seed)
    specs = [("Xb3k", [3861, 17, 4, 250], 12), ("0aZ_", [], 1), ("long", [9, 2], LONG)]
    specs += [(f"v{i:03d}", [int(x) for x in rng.permutation(40)[:3]], 5 + i) for i in range(3)]
    return [
        (
            video_id,
            labels,
            rng.integers(0, 256, (n, 1024), dtype=np.uint8),
            rng.integers(0, 256, (n, 128), dtype=np.uint8),
        )
        for video_id, labels, n in specs
    ]


def frame_payload(video, *, audio_first=False, labels_first=False, packed=True, extra=()):
    """A hand-encoded SequenceExample of ``video`` in the requested entry orders."""
    video_id, labels, rgb, audio = video
    context = [
        ("id", bytes_feature([video_id.encode()])),
        ("labels", int64_feature(labels, packed)),
    ]
    context = (context[::-1] if labels_first else context) + list(extra)
    lists = [("rgb", feature_list(f.tobytes() for f in rgb))]
    lists.append(("audio", feature_list(f.tobytes() for f in audio)))
    return sequence_example(context, lists[::-1] if audio_first else lists)


LAYOUTS = {
    "tensorflow-like": {},
    "audio-list-first": {"audio_first": True},
    "labels-key-first": {"labels_first": True},
    "unpacked-labels": {"packed": False},
    "all-reordered": {"audio_first": True, "labels_first": True, "packed": False},
}


def test_hand_encoded_records_are_what_protobuf_parses():
    """The hand encoder is a correct YT8M writer: protobuf reads back every value written, so
    the files below are valid TensorFlow records, not just something vidistill accepts."""
    video = make_videos(0)[0]
    for layout in LAYOUTS.values():
        parsed = example_pb2.SequenceExample.FromString(frame_payload(video, **layout))
        assert parsed.context.feature["id"].bytes_list.value == [b"Xb3k"]
        assert list(parsed.context.feature["labels"].int64_list.value) == [3861, 17, 4, 250]
        lists = parsed.feature_lists.feature_list
        assert [f.bytes_list.value[0] for f in lists["rgb"].feature] == [
            row.tobytes() for row in video[2]
        ]
        assert [f.bytes_list.value[0] for f in lists["audio"].feature] == [
            row.tobytes() for row in video[3]
        ]
    values = [0.0, -1.5, 3.25]
    for packed in (True, False):
        parsed = example_pb2.Example.FromString(
            example([("f", float_feature(values, packed)), ("i", int64_feature([-1, 7], packed))])
        )
        assert list(parsed.features.feature["f"].float_list.value) == values
        assert list(parsed.features.feature["i"].int64_list.value) == [-1, 7]


# ---------------------------------------------------------------------------------------------
# Frame level
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_foreign_frame_level_file_reads_exactly(tmp_path, layout):
    """Every stored frame and label of a hand-encoded file comes back exactly: labels in their
    stored (unsorted) order, empty labels empty, and all 307 frames of the long video
    (``read_records`` does not truncate; ``num_frames`` is the stored count)."""
    videos = make_videos(1)
    path = tmp_path / "foreign.tfrecord"
    write_tfrecord(path, [frame_payload(v, **LAYOUTS[layout]) for v in videos])
    records = list(read_records(str(path), num_classes=NUM_CLASSES))
    assert [r.id for r in records] == [v[0] for v in videos]
    for record, (_, labels, rgb, audio) in zip(records, videos, strict=True):
        assert record.labels.dtype == np.int64 and record.labels.tolist() == labels
        assert record.num_frames == len(rgb)
        assert record.rgb.dtype == np.uint8 and record.audio.dtype == np.uint8
        np.testing.assert_array_equal(record.rgb, rgb)
        np.testing.assert_array_equal(record.audio, audio)
        np.testing.assert_array_equal(record.frame_indices, np.arange(len(rgb)))
        np.testing.assert_array_equal(dequantize(record.rgb), official_dequantize(rgb))
        np.testing.assert_array_equal(dequantize(record.audio), official_dequantize(audio))


@pytest.mark.parametrize("layout", ["tensorflow-like", "all-reordered"])
def test_dataset_batches_of_a_foreign_file_match_the_official_reader(tmp_path, layout):
    """What a model receives from a foreign file: the first 300 frames (the official
    ``max_frames``), rgb then audio, dequantized exactly as the official formula, padding 0.0,
    ``num_frames = min(n, 300)``, and labels as a multi-hot of the stored labels."""
    videos = make_videos(2)
    path = tmp_path / "foreign.tfrecord"
    write_tfrecord(path, [frame_payload(v, **LAYOUTS[layout]) for v in videos])
    (batch,) = list(YT8MDataset(str(path), num_classes=NUM_CLASSES, batch_size=len(videos)))
    assert batch["ids"] == [v[0] for v in videos]
    assert batch["frames"].shape == (len(videos), MAX_FRAMES, 1024 + 128)
    values = dequantize_batch(dict(batch))["frames"]
    assert values.dtype == torch.float32
    for row, (_, labels, rgb, audio) in enumerate(videos):
        n = min(len(rgb), MAX_FRAMES)
        assert batch["num_frames"][row].item() == n
        assert batch["mask"][row].tolist() == [t < n for t in range(MAX_FRAMES)]
        expected = official_dequantize(np.hstack([rgb[:n], audio[:n]]))
        np.testing.assert_array_equal(values[row, :n].numpy(), expected)
        assert torch.all(values[row, n:] == 0.0)  # padding is 0.0 after dequantization
        hot = np.zeros(NUM_CLASSES, np.float32)
        hot[labels] = 1.0
        np.testing.assert_array_equal(batch["labels"][row].numpy(), hot)


# ---------------------------------------------------------------------------------------------
# Segment-rated (2019) frame level
# ---------------------------------------------------------------------------------------------

SEGMENT_KEYS = ("segment_start_times", "segment_end_times", "segment_labels", "segment_scores")


def make_ratings() -> list[dict[str, list]]:
    """Ratings as the 2019 files hold them: parallel arrays, several classes sharing a start,
    starts not sorted, a rating at the end of the long video (frames 300-304, beyond what the
    official reader's max_frames keeps), and a rated-files video with empty lists."""
    return [
        {"starts": [5, 0, 5, 0], "labels": [17, 4, 4, 250], "scores": [1.0, 0.0, 1.0, 1.0]},
        {"starts": [], "labels": [], "scores": []},
        {"starts": [300, 120], "labels": [9, 2], "scores": [0.0, 1.0]},
    ]


def write_segment_file_with_tfrecord_package(path, videos, ratings) -> None:
    writer = TFRecordWriter(str(path))
    for (video_id, labels, rgb, audio), rating in zip(videos, ratings, strict=True):
        context = {
            "id": (video_id.encode(), "byte"),
            "labels": (labels, "int"),
            "segment_start_times": (rating["starts"], "int"),
            "segment_end_times": ([s + 5 for s in rating["starts"]], "int"),
            "segment_labels": (rating["labels"], "int"),
            "segment_scores": (rating["scores"], "float"),
        }
        writer.write(
            context,
            {
                "rgb": ([f.tobytes() for f in rgb], "byte"),
                "audio": ([f.tobytes() for f in audio], "byte"),
            },
        )
    writer.close()


def write_segment_file_by_hand(path, videos, ratings) -> None:
    """Segment keys before ``id``, audio list first, and a rating-less video whose ``segment_*``
    Features have no kind set at all (TensorFlow reads those as empty lists)."""
    payloads = []
    for video, rating in zip(videos, ratings, strict=True):
        if rating["starts"]:
            segments = [
                ("segment_scores", float_feature(rating["scores"])),
                ("segment_labels", int64_feature(rating["labels"])),
                ("segment_end_times", int64_feature([s + 5 for s in rating["starts"]])),
                ("segment_start_times", int64_feature(rating["starts"])),
            ]
        else:
            segments = [(key, EMPTY_FEATURE) for key in SEGMENT_KEYS]
        payloads.append(frame_payload(video, audio_first=True, labels_first=True, extra=segments))
    write_tfrecord(path, payloads)


@pytest.mark.parametrize(
    "write", [write_segment_file_with_tfrecord_package, write_segment_file_by_hand]
)
def test_foreign_segment_rated_file_reads_exactly(tmp_path, write):
    """The 2019 rating arrays come back in stored order with their types (int64, float32), empty
    lists as empty arrays (whether or not the empty Feature names its type), and frames intact."""
    videos, ratings = make_videos(3)[:3], make_ratings()
    path = tmp_path / "segments.tfrecord"
    write(path, videos, ratings)
    records = list(read_records(str(path), schema="segment", num_classes=NUM_CLASSES))
    assert [r.id for r in records] == [v[0] for v in videos]
    for record, (_, labels, rgb, audio), rating in zip(records, videos, ratings, strict=True):
        assert record.labels.tolist() == labels
        np.testing.assert_array_equal(record.rgb, rgb)
        np.testing.assert_array_equal(record.audio, audio)
        assert record.segment_start_times.dtype == np.int64
        assert record.segment_start_times.tolist() == rating["starts"]
        assert record.segment_end_times.tolist() == [s + 5 for s in rating["starts"]]
        assert record.segment_labels.tolist() == rating["labels"]
        assert record.segment_scores.dtype == np.float32
        assert record.segment_scores.tolist() == rating["scores"]


def test_segment_batches_of_a_foreign_file(tmp_path):
    """In segment mode each distinct rated start of a foreign file is one sample of the five
    frames [start, start + 5), with every class rated there (score as label, weight 1) and no
    other; a video with empty rating lists gives no sample."""
    videos, ratings = make_videos(4)[:3], make_ratings()
    # The long video's ratings kept within its first 300 frames, the frames the official
    # reader has: there vidistill and that reader agree whatever becomes of frames past it.
    ratings = ratings[:2] + [{"starts": [120, 295], "labels": [9, 2], "scores": [0.0, 1.0]}]
    path = tmp_path / "segments.tfrecord"
    write_segment_file_with_tfrecord_package(path, videos, ratings)
    (batch,) = list(YT8MDataset(str(path), num_classes=NUM_CLASSES, mode="segment", batch_size=64))
    expected = {}
    for (video_id, _, rgb, audio), rating in zip(videos, ratings, strict=True):
        for start, label, score in zip(
            rating["starts"], rating["labels"], rating["scores"], strict=True
        ):
            sample = expected.setdefault(
                f"{video_id}:{start}",
                {"frames": np.hstack([rgb, audio])[start : start + 5], "rated": {}},
            )
            sample["rated"][label] = score
    assert sorted(batch["ids"]) == sorted(expected)
    values = dequantize_batch(dict(batch))["frames"]
    for row, segment_id in enumerate(batch["ids"]):
        sample = expected[segment_id]
        assert batch["num_frames"][row].item() == 5
        np.testing.assert_array_equal(values[row].numpy(), official_dequantize(sample["frames"]))
        rated = sorted(sample["rated"])
        assert torch.nonzero(batch["label_weights"][row]).flatten().tolist() == rated
        assert batch["labels"][row, rated].tolist() == [sample["rated"][c] for c in rated]
        assert batch["labels"][row].sum().item() == sum(sample["rated"].values())


# ---------------------------------------------------------------------------------------------
# Video level
# ---------------------------------------------------------------------------------------------


def make_means(seed: int) -> list[tuple[str, list[int], np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (
            f"m{i}",
            labels,
            rng.normal(0, 1, 1024).astype(np.float32),
            rng.normal(0, 1, 128).astype(np.float32),
        )
        for i, labels in enumerate([[77, 3, 3861], [], [0]])
    ]


def write_video_file_with_tfrecord_package(path, means) -> None:
    writer = TFRecordWriter(str(path))
    for video_id, labels, mean_rgb, mean_audio in means:
        writer.write(
            {
                "id": (video_id.encode(), "byte"),
                "labels": (labels, "int"),
                "mean_rgb": (mean_rgb.tolist(), "float"),
                "mean_audio": (mean_audio.tolist(), "float"),
            }
        )
    writer.close()


def write_video_file_by_hand(path, means) -> None:
    """Keys in reverse order and unpacked (one tag per value) float and int64 lists."""
    write_tfrecord(
        path,
        [
            example(
                [
                    ("mean_audio", float_feature(mean_audio, packed=False)),
                    ("mean_rgb", float_feature(mean_rgb, packed=False)),
                    ("labels", int64_feature(labels, packed=False)),
                    ("id", bytes_feature([video_id.encode()])),
                ]
            )
            for video_id, labels, mean_rgb, mean_audio in means
        ],
    )


@pytest.mark.parametrize(
    "write", [write_video_file_with_tfrecord_package, write_video_file_by_hand]
)
def test_foreign_video_level_file_reads_exactly(tmp_path, write):
    """Video-level means come back bit for bit as float32, labels in stored order; in video mode
    a batch holds them as one float frame, rgb then audio."""
    means = make_means(5)
    path = tmp_path / "video.tfrecord"
    write(path, means)
    records = list(read_records(str(path), schema="video", num_classes=NUM_CLASSES))
    assert [r.id for r in records] == [m[0] for m in means]
    for record, (_, labels, mean_rgb, mean_audio) in zip(records, means, strict=True):
        assert record.labels.tolist() == labels
        assert record.mean_rgb.dtype == np.float32 and record.mean_audio.dtype == np.float32
        np.testing.assert_array_equal(record.mean_rgb, mean_rgb)
        np.testing.assert_array_equal(record.mean_audio, mean_audio)
    (batch,) = list(YT8MDataset(str(path), num_classes=NUM_CLASSES, mode="video", batch_size=8))
    for row, (_, labels, mean_rgb, mean_audio) in enumerate(means):
        np.testing.assert_array_equal(
            batch["frames"][row, 0].numpy(), np.hstack([mean_rgb, mean_audio])
        )
        assert torch.nonzero(batch["labels"][row]).flatten().tolist() == sorted(set(labels))


# ---------------------------------------------------------------------------------------------
# Bad foreign records
# ---------------------------------------------------------------------------------------------


def test_a_frame_holding_two_byte_strings_is_rejected(tmp_path):
    """TensorFlow's reader of the frame-level files (a FixedLenSequenceFeature of one string per
    frame) refuses a frame holding two byte strings; so must vidistill, even when the first of
    them has the right size, rather than silently drop the second."""
    _, labels, rgb, audio = make_videos(6)[3]
    frames = [bytes_feature([f.tobytes()]) for f in rgb]
    frames[2] = bytes_feature([rgb[2].tobytes(), b"\x07" * 1024])
    rgb_list = b"".join(field(1, f) for f in frames)  # FeatureList.feature = 1
    payload = sequence_example(
        [("id", bytes_feature([b"two"])), ("labels", int64_feature(labels))],
        [("rgb", rgb_list), ("audio", feature_list(f.tobytes() for f in audio))],
    )
    offsets = write_tfrecord(tmp_path / "two.tfrecord", [frame_payload(make_videos(6)[0]), payload])
    with pytest.raises(CorruptRecordError, match="rgb frame 2 does not hold exactly one") as info:
        list(read_records(str(tmp_path / "two.tfrecord")))
    assert (info.value.index, info.value.offset) == (1, offsets[1])


def test_labels_stored_with_another_type_are_rejected(tmp_path):
    """TensorFlow refuses ``labels`` stored as floats (a type mismatch with the int64 it parses);
    vidistill must not read such a video as one without labels."""
    video_id, _, rgb, audio = make_videos(7)[3]
    payload = sequence_example(
        [("id", bytes_feature([video_id.encode()])), ("labels", float_feature([3.0, 5.0]))],
        [
            ("rgb", feature_list(f.tobytes() for f in rgb)),
            ("audio", feature_list(f.tobytes() for f in audio)),
        ],
    )
    write_tfrecord(tmp_path / "float-labels.tfrecord", [payload])
    with pytest.raises(CorruptRecordError, match="'labels' is a float_list, not the int64_list"):
        list(read_records(str(tmp_path / "float-labels.tfrecord")))


# ---------------------------------------------------------------------------------------------
# The reverse: vidistill's files read by the tfrecord package
# ---------------------------------------------------------------------------------------------

CONTEXT = {"id": "byte", "labels": "int"}
SEGMENT_CONTEXT = {
    **CONTEXT,
    "segment_start_times": "int",
    "segment_end_times": "int",
    "segment_labels": "int",
    "segment_scores": "float",
}
FRAME_LISTS = {"rgb": "byte", "audio": "byte"}
VIDEO_FEATURES = {**CONTEXT, "mean_rgb": "float", "mean_audio": "float"}


def foreign_frames(frames: list) -> np.ndarray:
    """The tfrecord package gives one bytes value per frame; join them as uint8 [n, size]."""
    return np.stack([np.frombuffer(bytes(f), np.uint8) for f in frames])


def test_vidistill_files_read_by_the_tfrecord_package(tmp_path):
    """vidistill's writer produces files another reader reads back exactly, in all three
    schemas, quirks included (unsorted and empty labels, 307 frames, empty rating lists)."""
    videos, ratings = make_videos(8)[:3], make_ratings()
    with RecordWriter(str(tmp_path / "segment.tfrecord")) as writer:
        for (video_id, labels, rgb, audio), rating in zip(videos, ratings, strict=True):
            segments = {
                "segment_start_times": rating["starts"],
                "segment_end_times": [s + 5 for s in rating["starts"]],
                "segment_labels": rating["labels"],
                "segment_scores": rating["scores"],
            }
            writer.write(encode_frame_example(video_id, labels, rgb, audio, segments))
    loaded = list(
        sequence_loader(str(tmp_path / "segment.tfrecord"), None, SEGMENT_CONTEXT, FRAME_LISTS)
    )
    assert len(loaded) == len(videos)
    for (context, lists), (video_id, labels, rgb, audio), rating in zip(
        loaded, videos, ratings, strict=True
    ):
        assert bytes(context["id"]) == video_id.encode()
        assert context["labels"].tolist() == labels
        assert context["segment_start_times"].tolist() == rating["starts"]
        assert context["segment_end_times"].tolist() == [s + 5 for s in rating["starts"]]
        assert context["segment_labels"].tolist() == rating["labels"]
        assert context["segment_scores"].tolist() == rating["scores"]
        np.testing.assert_array_equal(foreign_frames(lists["rgb"]), rgb)
        np.testing.assert_array_equal(foreign_frames(lists["audio"]), audio)

    means = make_means(9)
    with RecordWriter(str(tmp_path / "video.tfrecord")) as writer:
        for mean in means:
            writer.write(encode_video_example(*mean))
    loaded = list(example_loader(str(tmp_path / "video.tfrecord"), None, VIDEO_FEATURES))
    assert len(loaded) == len(means)
    for features, (video_id, labels, mean_rgb, mean_audio) in zip(loaded, means, strict=True):
        assert bytes(features["id"]) == video_id.encode()
        assert features["labels"].tolist() == labels
        np.testing.assert_array_equal(features["mean_rgb"], mean_rgb)
        np.testing.assert_array_equal(features["mean_audio"], mean_audio)


def test_synthetic_dataset_read_by_the_tfrecord_package(tmp_path):
    """Every file of a generated synthetic dataset (the writer behind vidistill's default data)
    reads the same with the tfrecord package as with vidistill, record by record."""
    config = SyntheticConfig(
        num_classes=30,
        num_segment_classes=12,
        num_clusters=6,
        num_train=4,
        num_validate=2,
        num_test=2,
        num_segment=3,
        train_shards=2,
        validate_shards=1,
        test_shards=1,
        segment_shards=1,
        min_frames=12,
        max_frames=40,
        mean_frames=28.0,
        std_frames=10.0,
        seed=11,
    )
    out = generate(tmp_path / "synthetic", config, progress=False, workers=1)
    checked = {"frame": 0, "segment": 0, "video": 0}
    for schema in checked:
        for path in sorted((out / schema).glob("*.tfrecord")):
            ours = list(read_records(str(path), schema=schema, num_classes=config.num_classes))
            if schema == "video":
                theirs = [(f, None) for f in example_loader(str(path), None, VIDEO_FEATURES)]
            else:
                context = SEGMENT_CONTEXT if schema == "segment" else CONTEXT
                theirs = list(sequence_loader(str(path), None, context, FRAME_LISTS))
            assert len(theirs) == len(ours) > 0
            for record, (context, lists) in zip(ours, theirs, strict=True):
                assert bytes(context["id"]).decode() == record.id
                np.testing.assert_array_equal(context["labels"], record.labels)
                checked[schema] += 1
                if schema == "video":
                    np.testing.assert_array_equal(context["mean_rgb"], record.mean_rgb)
                    np.testing.assert_array_equal(context["mean_audio"], record.mean_audio)
                    continue
                np.testing.assert_array_equal(foreign_frames(lists["rgb"]), record.rgb)
                np.testing.assert_array_equal(foreign_frames(lists["audio"]), record.audio)
                if schema == "segment":
                    for key in SEGMENT_CONTEXT:
                        if key.startswith("segment_"):
                            np.testing.assert_array_equal(context[key], getattr(record, key))
    assert checked == {"frame": 8, "segment": 3 * len(RATED_SPLITS), "video": 8}
