"""Turning decoded records into padded batches, and batches of bytes into batches of floats.

A batch is a dict of tensors. Frame views (``FRAME_VIEWS``) hold ``frames`` [B, T, D] with
D = FEATURE_SIZE (rgb then audio), ``mask`` bool [B, T] and ``num_frames`` int64 [B]; valid
frames come first in every row. Frames stay uint8 through collation, which keeps the batches a
worker sends small; :func:`dequantize_batch` turns them into float32 in one tensor operation,
ideally on the accelerator.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from vidistill.data.quantization import (
    dequantize,
    dequantize_coefficients,
    dequantize_into,
    empty_float32,
)
from vidistill.data.records import FrameRecord, SegmentRecord, VideoRecord
from vidistill.features import FEATURE_SIZE, RGB_SIZE, SEGMENT_LENGTH

Batch = dict[str, torch.Tensor | list[str]]

FRAME_VIEWS = (
    ("frames", "mask", "num_frames"),
    ("teacher_frames", "teacher_mask", "teacher_num_frames"),
)
"""The frame tensors a batch may carry, each with its mask and lengths: what the (student) model
sees, and the teacher's view of the same videos in teacher-student training."""


def collate_frames(records: Sequence[FrameRecord], num_classes: int, num_frames: int) -> Batch:
    """Pad B records to a batch of ``num_frames`` (T) frames; frames stay uint8.

    Returns ``frames`` uint8 [B, T, D] (padding bytes are 0, to be zeroed again after
    dequantization), ``mask`` bool [B, T], ``num_frames`` int64 [B] (frames actually present),
    ``labels`` float32 multi-hot [B, C], ``ids`` list of B strings.
    """
    batch = len(records)
    frames = np.zeros((batch, num_frames, FEATURE_SIZE), np.uint8)
    labels = np.zeros((batch, num_classes), np.float32)
    lengths = np.zeros(batch, np.int64)
    for i, record in enumerate(records):
        n = min(len(record.rgb), num_frames)
        frames[i, :n, :RGB_SIZE] = record.rgb[:n]
        frames[i, :n, RGB_SIZE:] = record.audio[:n]
        labels[i, record.labels] = 1.0
        lengths[i] = n
    return _batch(frames, lengths, labels, [record.id for record in records])


def collate_frame_views(
    pairs: Sequence[tuple[FrameRecord, FrameRecord]],
    num_classes: int,
    num_frames: int,
    teacher_num_frames: int,
) -> Batch:
    """Batch of (student, teacher) views of B videos: :func:`collate_frames` of the student
    views, plus the teacher views' frame tensors under the second ``FRAME_VIEWS`` keys
    (``teacher_frames`` uint8 [B, teacher_num_frames, D], its mask and lengths)."""
    batch = collate_frames([student for student, _ in pairs], num_classes, num_frames)
    teacher = collate_frames([t for _, t in pairs], num_classes, teacher_num_frames)
    (student_keys, teacher_keys) = FRAME_VIEWS
    for student_key, teacher_key in zip(student_keys, teacher_keys, strict=True):
        batch[teacher_key] = teacher[student_key]
    return batch


def segment_samples(record: SegmentRecord) -> Iterator[dict]:
    """One sample per rated segment start: its SEGMENT_LENGTH frames, uint8 [n, D] (fewer at the
    end of the video), and the rated classes with their 0/1 scores."""
    starts = record.segment_start_times
    for start in np.unique(starts):
        rated = starts == start
        frames = np.concatenate(
            [
                record.rgb[start : start + SEGMENT_LENGTH],
                record.audio[start : start + SEGMENT_LENGTH],
            ],
            axis=1,
        )
        yield {
            "id": f"{record.id}:{int(start)}",
            "frames": frames,
            "classes": record.segment_labels[rated],
            "scores": record.segment_scores[rated],
        }


def collate_segments(samples: Sequence[dict], num_classes: int) -> Batch:
    """Batch of B rated segments (from :func:`segment_samples`): like :func:`collate_frames`
    with T = SEGMENT_LENGTH, plus ``label_weights`` float32 [B, C], 1 where the (segment, class)
    pair is rated, so that the loss can ignore unrated pairs."""
    batch = len(samples)
    frames = np.zeros((batch, SEGMENT_LENGTH, FEATURE_SIZE), np.uint8)
    labels = np.zeros((batch, num_classes), np.float32)
    weights = np.zeros((batch, num_classes), np.float32)
    lengths = np.zeros(batch, np.int64)
    for i, s in enumerate(samples):
        n = len(s["frames"])
        frames[i, :n] = s["frames"]
        labels[i, s["classes"]] = s["scores"]
        weights[i, s["classes"]] = 1.0
        lengths[i] = n
    batch = _batch(frames, lengths, labels, [s["id"] for s in samples])
    batch["label_weights"] = torch.from_numpy(weights)
    return batch


def collate_videos(records: Sequence[VideoRecord], num_classes: int) -> Batch:
    """Video-level records as one-frame videos: ``frames`` float32 [B, 1, D] holds the mean
    features (already floats), so every frame model also runs on video-level data."""
    batch = len(records)
    features = np.zeros((batch, 1, FEATURE_SIZE), np.float32)
    labels = np.zeros((batch, num_classes), np.float32)
    for i, record in enumerate(records):
        features[i, 0, :RGB_SIZE] = record.mean_rgb
        features[i, 0, RGB_SIZE:] = record.mean_audio
        labels[i, record.labels] = 1.0
    return {
        "frames": torch.from_numpy(features),
        "mask": torch.ones(batch, 1, dtype=torch.bool),
        "num_frames": torch.ones(batch, dtype=torch.int64),
        "labels": torch.from_numpy(labels),
        "ids": [record.id for record in records],
    }


def dequantize_batch(
    batch: dict,
    max_quantized_value: float = 2.0,
    min_quantized_value: float = -2.0,
    per_row: bool | None = None,
) -> dict:
    """Turn every uint8 frame view of the batch (``frames`` [B, T, D], and ``teacher_frames``
    when present) into float32 in place, padding frames set to 0.0; float views are left alone.

    When padding is a large share of the batch (as in all-frames batches of videos much shorter
    than the longest) each row's valid frames are converted on their own and only the padding is
    zeroed; otherwise, and on accelerators, the whole tensor goes through the formula at once,
    which avoids B small operations (``per_row`` forces either way).
    """
    for frames_key, mask_key, lengths_key in FRAME_VIEWS:
        frames = batch.get(frames_key)
        if frames is not None and frames.dtype == torch.uint8:
            batch[frames_key] = _dequantize_view(
                frames,
                batch[mask_key],
                batch[lengths_key],
                max_quantized_value,
                min_quantized_value,
                per_row,
            )
    return batch


def _dequantize_view(
    frames: torch.Tensor,
    mask: torch.Tensor,
    num_frames: torch.Tensor,
    max_quantized_value: float,
    min_quantized_value: float,
    per_row: bool | None,
) -> torch.Tensor:
    """float32 [B, T, D] of one uint8 frame view, padding 0.0 (see :func:`dequantize_batch`)."""
    if frames.device.type != "cpu" and not per_row:
        # One masked fill, and no look at the lengths, which would wait for the device.
        values = dequantize(frames, max_quantized_value, min_quantized_value)
        return values.masked_fill_(~mask.unsqueeze(-1), 0.0)
    lengths = num_frames.tolist()
    batch, steps = frames.shape[0], frames.shape[1]
    padding = batch * steps - sum(lengths)
    if frames.device.type == "cpu":
        return _dequantize_on_cpu(
            frames, mask, lengths, padding, max_quantized_value, min_quantized_value, per_row
        )
    if per_row is None:
        per_row = padding * 4 > batch * steps
    if per_row:
        scale, bias = dequantize_coefficients(max_quantized_value, min_quantized_value)
        values = empty_float32(frames.shape, frames.device)
        for row, n in enumerate(lengths):
            values[row, :n].copy_(frames[row, :n]).mul_(scale).add_(bias)
            values[row, n:] = 0.0
        return values
    values = dequantize(frames, max_quantized_value, min_quantized_value)
    if padding:
        values.masked_fill_(~mask.unsqueeze(-1), 0.0)
    return values


def _dequantize_on_cpu(
    frames: torch.Tensor,
    mask: torch.Tensor,
    lengths: list[int],
    padding: int,
    max_quantized_value: float,
    min_quantized_value: float,
    per_row: bool | None,
) -> torch.Tensor:
    """:func:`_dequantize_view` on CPU, through numpy views: row by row, only each row's valid
    frames are converted when padding is a large share (or ``per_row``); otherwise the whole
    batch is, and only the masked frames are then zeroed (not a pass over the whole batch)."""
    scale, bias = dequantize_coefficients(max_quantized_value, min_quantized_value)
    values = empty_float32(frames.shape)
    out, source = values.numpy(), frames.numpy()
    steps = frames.shape[1]
    if per_row is None:
        per_row = padding * 4 > frames.shape[0] * steps
    if not per_row:
        dequantize_into(out, source, scale, bias)
        if padding:
            out[~mask.numpy()] = 0.0
        return values
    for row, n in enumerate(lengths):
        dequantize_into(out[row, :n], source[row, :n], scale, bias)
        out[row, n:] = 0.0
    return values


def _batch(frames: np.ndarray, lengths: np.ndarray, labels: np.ndarray, ids: list[str]) -> dict:
    """The batch dict from padded frames [B, T, D], lengths [B], labels [B, C] and ids: valid
    frames first, so the mask [B, T] is ``t < length``."""
    lengths_t = torch.from_numpy(lengths)
    return {
        "frames": torch.from_numpy(frames),
        "mask": torch.arange(frames.shape[1]) < lengths_t[:, None],
        "num_frames": lengths_t,
        "labels": torch.from_numpy(labels),
        "ids": ids,
    }
