"""Writing the synthetic dataset: file format, layout, metadata and byte-for-byte determinism."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_tiny import files_of, tiny, tree_bytes

from vidistill.data import dequantize, read_records
from vidistill.data.synthetic import (
    RATED_SPLITS,
    SPLITS,
    SyntheticConfig,
    build_world,
    config_hash,
    generate,
    sample_video,
)

VOCABULARY_HEADER = (
    "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,"
    "Vertical1,Vertical2,Vertical3,WikiDescription"
)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> tuple[Path, SyntheticConfig]:
    config = tiny(seed=3)
    out = generate(tmp_path_factory.mktemp("synthetic") / "ds", config, progress=False, workers=1)
    return out, config


@pytest.mark.parametrize("split", SPLITS)
def test_files_hold_exactly_the_sampled_videos(tiny_dataset, split):
    out, config = tiny_dataset
    frame_files, video_files = files_of(split, out)
    assert len(frame_files) == min(config.num_shards(split), config.num_videos(split))
    schema = "segment" if split in RATED_SPLITS else "frame"
    records = [
        r
        for f in frame_files
        for r in read_records(str(f), schema=schema, num_classes=config.num_classes)
    ]
    assert len(records) == config.num_videos(split)
    for index, record in enumerate(records):
        video = sample_video(config, split, index)
        rgb, audio = video.quantized()
        assert record.id == video.id
        assert record.labels.tolist() == video.labels.tolist()
        assert record.num_frames == video.num_frames
        assert np.array_equal(record.rgb, rgb) and np.array_equal(record.audio, audio)
        stored = dequantize(np.hstack([record.rgb, record.audio]))
        assert np.abs(stored - np.clip(video.features, -2, 2)).max() <= 2 / 255 + 1e-5
        if split in RATED_SPLITS:
            for key, values in video.segments.items():
                assert np.array_equal(getattr(record, key), values), key
            assert len(record.segment_labels) > 0
    if video_files:
        means = [r for f in video_files for r in read_records(str(f), schema="video")]
        assert [m.id for m in means] == [r.id for r in records]
        for mean, record in zip(means, records, strict=True):
            assert mean.labels.tolist() == record.labels.tolist()
            assert mean.mean_rgb.dtype == np.float32
            np.testing.assert_allclose(mean.mean_rgb, dequantize(record.rgb).mean(0), atol=1e-5)
            np.testing.assert_allclose(mean.mean_audio, dequantize(record.audio).mean(0), atol=1e-5)


def test_layout_csvs_and_json(tiny_dataset):
    out, config = tiny_dataset
    assert sorted(p.name for p in out.iterdir()) == [
        "frame",
        "segment",
        "segment_label_ids.csv",
        "synthetic.json",
        "video",
        "vocabulary.csv",
    ]
    assert sorted(p.name for p in (out / "frame").iterdir()) == [
        *(f"test{i:04d}.tfrecord" for i in range(2)),
        *(f"train{i:04d}.tfrecord" for i in range(3)),
        *(f"validate{i:04d}.tfrecord" for i in range(2)),
    ]
    assert sorted(p.name for p in (out / "segment").iterdir()) == [
        "test0000.tfrecord",
        "test0001.tfrecord",
        "tune0000.tfrecord",
        "tune0001.tfrecord",
        "validate0000.tfrecord",
        "validate0001.tfrecord",
    ]
    assert len(list((out / "video").iterdir())) == 7
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers

    with open(out / "vocabulary.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == VOCABULARY_HEADER.split(",")
    assert [int(r[0]) for r in rows[1:]] == list(range(config.num_classes))
    assert all(len(r) == 9 for r in rows)
    counts = np.zeros(config.num_classes, int)
    for f in files_of("train", out)[0]:
        for record in read_records(str(f)):
            counts[record.labels] += 1
    assert [int(r[1]) for r in rows[1:]] == counts.tolist()
    assert rows[6][3] == "synthetic-class-0005"
    assert (out / "vocabulary.csv").read_text().splitlines()[0] == VOCABULARY_HEADER

    whitelist = (out / "segment_label_ids.csv").read_text().splitlines()
    assert whitelist[0] == "Index"
    indices = [int(x) for x in whitelist[1:]]
    assert indices == sorted(set(indices)) and len(indices) == config.num_segment_classes
    assert indices == build_world(config).whitelist.tolist()

    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["config"] == dataclasses.asdict(config) and meta["seed"] == 3
    assert meta["config_hash"] == config_hash(config) and isinstance(meta["format_version"], int)
    assert SyntheticConfig(**meta["config"]) == config
    for split in SPLITS:
        entry = meta["splits"][split]
        frames = sum(
            sample_video(config, split, i).num_frames for i in range(config.num_videos(split))
        )
        assert (entry["videos"], entry["frames"]) == (config.num_videos(split), frames)


# --------------------------------------------------------------------------------------------
# Determinism and caching
# --------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, tiny_dataset):
    out, config = tiny_dataset
    again = generate(tmp_path / "again", config, progress=False, workers=2)
    assert tree_bytes(again) == tree_bytes(out)
    other = generate(
        tmp_path / "other", dataclasses.replace(config, seed=4), progress=False, workers=1
    )
    a, b = tree_bytes(out), tree_bytes(other)
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith(".tfrecord"))


def test_generate_replaces_an_existing_directory(tmp_path):
    out = tmp_path / "ds"
    generate(out, tiny(num_train=2, seed=1), progress=False)
    (out / "stale.txt").write_text("x")
    generate(out, tiny(num_train=3, seed=1), progress=False)
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "synthetic.json").read_text())["splits"]["train"]["videos"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
