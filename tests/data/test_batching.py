"""Batch layouts of the three data modes, padding masks, and dequantization of whole batches."""

from __future__ import annotations

import numpy as np
import torch

from shardtools import random_video
from vidistill.data import (
    FrameSelection,
    RecordWriter,
    YT8MDataset,
    dequantize,
    dequantize_batch,
    encode_frame_example,
    encode_video_example,
)


def test_frame_batches_pad_mask_and_dequantize(shards):
    directory, videos = shards
    dataset = YT8MDataset(
        str(directory / "*.tfrecord"),
        num_classes=10,
        batch_size=5,
        frames=FrameSelection("uniform", k=8),
    )
    batch = next(iter(dataset))
    assert batch["frames"].shape == (5, 8, 1152) and batch["frames"].dtype == torch.uint8
    for row, video_id in enumerate(batch["ids"]):
        labels, rgb, audio = videos[video_id]
        n = min(8, len(rgb))
        picks = ((np.arange(8) + 0.5) * len(rgb) / 8).astype(int) if len(rgb) > 8 else np.arange(n)
        assert batch["num_frames"][row] == n
        assert batch["mask"][row].tolist() == [True] * n + [False] * (8 - n)
        np.testing.assert_array_equal(batch["frames"][row, :n, :1024].numpy(), rgb[picks])
        np.testing.assert_array_equal(batch["frames"][row, :n, 1024:].numpy(), audio[picks])
        assert torch.nonzero(batch["labels"][row]).flatten().tolist() == sorted(labels.tolist())
    assert not batch["mask"].all()  # the check below needs padding in the batch
    for per_row in (None, True, False):
        values = dequantize_batch(dict(batch), per_row=per_row)["frames"]
        assert values.dtype == torch.float32
        np.testing.assert_allclose(
            values[batch["mask"]].numpy(), dequantize(batch["frames"][batch["mask"]].numpy())
        )
        assert torch.all(values[~batch["mask"]] == 0.0)  # padding is 0.0 after dequantization


def test_segment_mode_yields_rated_segments_with_weights(tmp_path):
    rng = np.random.default_rng(1)
    vid, labels, rgb, audio = random_video(rng, "seg", 13)
    segments = {
        "segment_start_times": [10, 0, 10],
        "segment_end_times": [15, 5, 15],
        "segment_labels": [3, 3, 7],
        "segment_scores": [1.0, 0.0, 0.0],
    }
    with RecordWriter(str(tmp_path / "s.tfrecord")) as writer:
        writer.write(encode_frame_example(vid, labels, rgb, audio, segments))
    batch = next(iter(YT8MDataset(str(tmp_path / "s.tfrecord"), num_classes=10, mode="segment")))
    assert batch["ids"] == ["seg:0", "seg:10"]
    assert batch["frames"].shape == (2, 5, 1152)
    np.testing.assert_array_equal(batch["frames"][0, :, :1024].numpy(), rgb[0:5])
    np.testing.assert_array_equal(batch["frames"][1, :3, 1024:].numpy(), audio[10:13])
    assert batch["mask"][1].tolist() == [True, True, True, False, False]  # the video ends at 13
    assert batch["label_weights"][0].nonzero().flatten().tolist() == [3]
    assert batch["label_weights"][1].nonzero().flatten().tolist() == [3, 7]
    assert (
        batch["labels"][1, 3] == 1.0
        and batch["labels"][1, 7] == 0.0
        and batch["labels"][0].sum() == 0
    )


def test_video_mode_is_a_one_frame_video(tmp_path):
    mean_rgb = np.linspace(-1, 1, 1024, dtype=np.float32)
    mean_audio = np.linspace(0, 1, 128, dtype=np.float32)
    with RecordWriter(str(tmp_path / "v.tfrecord")) as writer:
        writer.write(encode_video_example("v", [2], mean_rgb, mean_audio))
    batch = dequantize_batch(
        next(iter(YT8MDataset(str(tmp_path / "v.tfrecord"), num_classes=10, mode="video")))
    )
    assert batch["frames"].shape == (1, 1, 1152) and batch["mask"].all()
    np.testing.assert_array_equal(
        batch["frames"][0, 0].numpy(), np.concatenate([mean_rgb, mean_audio])
    )
