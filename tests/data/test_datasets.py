"""Streaming datasets: exact once-per-epoch coverage across workers and ranks, batches, bad input."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from shardtools import random_video, write_shards
from vidistill.data import (
    CorruptRecordError,
    FrameSelection,
    RecordWriter,
    YT8MDataset,
    dequantize_batch,
    encode_frame_example,
)
from vidistill.data.framing import scan_offsets


def ids_seen(dataset: YT8MDataset) -> list[str]:
    loader = DataLoader(dataset, batch_size=None, num_workers=dataset.num_workers)
    batches = list(loader)
    assert len(batches) == len(loader)  # len() is exact
    return [video_id for batch in batches for video_id in batch["ids"]]


@pytest.mark.parametrize("train", [False, True])
def test_two_workers_times_two_ranks_see_every_record_exactly_once(shards, train):
    directory, videos = shards  # 21 records in 3 files
    seen = []
    for rank in range(2):
        dataset = YT8MDataset(
            str(directory / "*.tfrecord"),
            num_classes=10,
            batch_size=4,
            num_workers=2,
            rank=rank,
            world_size=2,
            train=train,
            shuffle_buffer=5,
        )
        seen += ids_seen(dataset)
    counts = Counter(seen)
    assert max(counts.values()) == 1
    if train:  # DDP training equalizes ranks: 21 records over 4 consumers -> 5 each, 1 dropped
        assert len(seen) == 20
    else:
        assert set(seen) == set(videos)


def test_ranks_get_equal_batches_in_ddp_training(shards):
    directory, _ = shards
    lengths = {
        rank: len(
            YT8MDataset(
                str(directory / "*.tfrecord"),
                num_classes=10,
                batch_size=2,
                num_workers=2,
                rank=rank,
                world_size=3,
                train=True,
            )
        )
        for rank in range(3)
    }
    assert len(set(lengths.values())) == 1


def test_training_order_changes_per_epoch_and_repeats_per_seed(shards):
    directory, _ = shards

    def order(epoch, seed=0):
        dataset = YT8MDataset(
            str(directory / "*.tfrecord"),
            num_classes=10,
            batch_size=3,
            train=True,
            frames=FrameSelection(seed=seed),
        )
        dataset.set_epoch(epoch)
        return ids_seen(dataset)

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(order(1))
    assert order(0, seed=1) != order(0, seed=0)


def test_evaluation_order_is_the_file_order(shards):
    directory, videos = shards
    dataset = YT8MDataset(str(directory / "*.tfrecord"), num_classes=10, batch_size=4)
    assert ids_seen(dataset) == sorted(videos)


def test_max_frames_truncates_to_the_first_frames(tmp_path):
    rng = np.random.default_rng(0)
    vid, labels, rgb, audio = random_video(rng, "long", 40)
    with RecordWriter(str(tmp_path / "a.tfrecord")) as writer:
        writer.write(encode_frame_example(vid, labels, rgb, audio))
    frames = FrameSelection(max_frames=25)
    batch = next(iter(YT8MDataset(str(tmp_path / "a.tfrecord"), num_classes=10, frames=frames)))
    assert batch["frames"].shape[1] == 25 and batch["num_frames"].item() == 25
    np.testing.assert_array_equal(batch["frames"][0, :, :1024].numpy(), rgb[:25])
    with pytest.raises(ValueError, match="k=30 .* max_frames=25"):
        FrameSelection("uniform", k=30, max_frames=25)


def test_bad_configuration_and_missing_files(shards, tmp_path):
    directory, _ = shards
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        YT8MDataset(str(tmp_path / "nothing-here*.tfrecord"), num_classes=10)
    with pytest.raises(ValueError, match="unknown data mode"):
        YT8MDataset(str(directory / "*.tfrecord"), num_classes=10, mode="frames")
    with pytest.raises(ValueError, match="on_corrupt"):
        YT8MDataset(str(directory / "*.tfrecord"), num_classes=10, on_corrupt="ignore")
    dataset = YT8MDataset(str(directory / "*.tfrecord"), num_classes=10, num_workers=3)
    batches = iter(DataLoader(dataset, batch_size=None, num_workers=2))
    with pytest.raises(RuntimeError, match="num_workers=3 .* runs 2"):
        next(batches)
    batches._shutdown_workers()


def test_labels_outside_vocabulary_raise_with_location(shards):
    directory, _ = shards
    with pytest.raises(
        CorruptRecordError,
        match=r"train0000.tfrecord: record \d+ .*outside the vocabulary \[0, 2\)",
    ):
        list(YT8MDataset(str(directory / "*.tfrecord"), num_classes=2))


def corrupt_payload(path, offsets, index):
    data = bytearray(path.read_bytes())
    data[offsets[index] + 30] ^= 0xFF
    path.write_bytes(bytes(data))


def test_on_corrupt_skip_counts_and_keeps_the_rest(tmp_path, caplog):
    directory = tmp_path / "d"
    videos = write_shards(directory, num_files=2, per_file=6)
    path = directory / "train0001.tfrecord"
    offsets, _ = scan_offsets(str(path))
    corrupt_payload(path, offsets, 2)
    with pytest.raises(CorruptRecordError, match="record 2 .*payload checksum"):
        list(YT8MDataset(str(directory / "*.tfrecord"), num_classes=10))
    with caplog.at_level(logging.WARNING):
        seen = ids_seen(
            YT8MDataset(
                str(directory / "*.tfrecord"), num_classes=10, on_corrupt="skip", batch_size=4
            )
        )
    assert set(seen) == set(videos) - {"v01002"}
    assert "record 2" in caplog.text and "1 records skipped" in caplog.text

    # A broken length field loses the rest of that file: still counted, never silent.
    data = bytearray(path.read_bytes())
    data[offsets[4] + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match="length checksum"):
        YT8MDataset(str(directory / "*.tfrecord"), num_classes=10)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        seen = ids_seen(
            YT8MDataset(str(directory / "*.tfrecord"), num_classes=10, on_corrupt="skip")
        )
    assert set(seen) == set(videos) - {"v01002", "v01004", "v01005"}
    assert "only the 4 records before a broken header" in caplog.text


@pytest.mark.parametrize("sampler", ["uniform", "random", "first_middle_last"])
def test_teacher_view_holds_all_frames_and_the_student_view_is_unchanged(shards, sampler):
    """One decode, two views: the student's frames are exactly what a single-view dataset with the
    same sampler delivers (random picks included), the teacher's are every frame."""
    directory, videos = shards
    frames = FrameSelection(sampler, k=6, seed=3)
    common = dict(num_classes=10, batch_size=7, frames=frames, train=True)
    single = YT8MDataset(str(directory / "*.tfrecord"), **common)
    teacher = FrameSelection("all", seed=3)
    both = YT8MDataset(str(directory / "*.tfrecord"), teacher_frames=teacher, **common)
    for dataset in (single, both):
        dataset.set_epoch(2)
    for plain, batch in zip(single, both, strict=True):
        assert plain["ids"] == batch["ids"]
        for key in ("frames", "mask", "num_frames", "labels"):
            assert torch.equal(plain[key], batch[key]), key
        assert batch["teacher_frames"].shape[1] == 300  # max_frames, as all-frames batches
        for row, video_id in enumerate(batch["ids"]):
            _, rgb, audio = videos[video_id]
            n = len(rgb)
            assert batch["teacher_num_frames"][row] == n
            assert batch["teacher_mask"][row].sum() == n
            np.testing.assert_array_equal(batch["teacher_frames"][row, :n, :1024].numpy(), rgb)
            np.testing.assert_array_equal(batch["teacher_frames"][row, :n, 1024:].numpy(), audio)
        values = dequantize_batch(dict(batch))
        assert values["teacher_frames"].dtype == torch.float32
        assert torch.all(values["teacher_frames"][~batch["teacher_mask"]] == 0.0)
        assert torch.equal(values["frames"], dequantize_batch(dict(plain))["frames"])


def test_student_cannot_see_more_frames_than_the_teacher(shards):
    directory, _ = shards
    with pytest.raises(ValueError, match="student sees up to 12 .* teacher only 8"):
        YT8MDataset(
            str(directory / "*.tfrecord"),
            num_classes=10,
            frames=FrameSelection("uniform", k=12),
            teacher_frames=FrameSelection("uniform", k=8),
        )
    with pytest.raises(ValueError, match="must have the student's max_frames and seed"):
        YT8MDataset(
            str(directory / "*.tfrecord"),
            num_classes=10,
            frames=FrameSelection("uniform", k=6),
            teacher_frames=FrameSelection("all", seed=1),
        )
    with pytest.raises(ValueError, match="teacher view needs frame mode"):
        YT8MDataset(
            str(directory / "*.tfrecord"),
            num_classes=10,
            mode="video",
            teacher_frames=FrameSelection("all"),
        )
