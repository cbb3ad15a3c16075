"""Phases 1-3 of the localization pipeline on one batch: candidates, segments and their scores.

Which frames each model sees: the data are read once, all frames of every video. The video
model's own frame selection (the :class:`~vidistill.data.frames.FrameSelection` stored in its
checkpoint) is applied to those frames here (:class:`VideoFrames`), giving exactly the frames its
evaluation would give, so a k-frame student sees its k frames. The segment model sees each
5-frame segment alone (:func:`segments_of`): frames ``[0, 5), [5, 10), ...``; the last segment of
a video whose length is not a multiple of 5 has fewer frames, and its padding frames are 0.0 *and
masked out*. That is how segment finetuning batches present a short segment, so the segment model
sees the last segment as it saw such segments in training (the MOD paper zero-pads it instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vidistill.data.frames import FrameSelection
from vidistill.data.samplers import AllFrames, video_rng
from vidistill.features import SEGMENT_LENGTH
from vidistill.metrics.segment_ids import video_of

__all__ = [
    "Segments",
    "VideoFrames",
    "candidate_classes",
    "candidate_hits",
    "combine_scores",
    "positive_pairs",
    "segment_index",
    "segment_probabilities",
    "segments_of",
]


# --------------------------------------------------------------------------------------------
# Candidates (phase 1)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoFrames:
    """The frames the video-level model was trained on, picked from all-frames batches.

    Applies the checkpoint's frame ``selection`` exactly as the data layer does at evaluation:
    the sampler over ``min(n, max_frames)`` frames, random samplers seeded by (seed, video id),
    and the selection padded to its fixed width (``frames_per_video``).
    """

    selection: FrameSelection

    def __call__(
        self, frames: torch.Tensor, mask: torch.Tensor, ids: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, T, D], mask [B, T] (valid first) -> the model's view [B, W, D], [B, W]."""
        sampler, max_frames = self.selection.build_sampler(), self.selection.max_frames
        width = sampler.output_frames(max_frames)
        if isinstance(sampler, AllFrames) and frames.shape[1] == width:
            return frames, mask  # every frame, already padded to the model's width
        batch = frames.shape[0]
        index = torch.zeros(batch, width, dtype=torch.long)
        valid = torch.zeros(batch, width, dtype=torch.bool)
        for row, (n, video_id) in enumerate(zip(mask.sum(1).tolist(), ids, strict=True)):
            rng = video_rng(self.selection.seed, video_id) if sampler.is_random else None
            picks = torch.from_numpy(sampler(min(n, max_frames), rng))
            index[row, : len(picks)] = picks
            valid[row, : len(picks)] = True
        index, valid = index.to(frames.device), valid.to(frames.device)
        rows = torch.arange(batch, device=frames.device)[:, None]
        return frames[rows, index].masked_fill_(~valid.unsqueeze(-1), 0.0), valid


def candidate_classes(p_video: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``top`` most probable classes of each video: ``(classes int64 [B, m], probabilities
    [B, m])`` best first, ``m = min(top, C)``; equal probabilities in class index order."""
    order = torch.sort(p_video, dim=1, descending=True, stable=True)
    m = min(top, p_video.shape[1])
    return order.indices[:, :m], order.values[:, :m]


def positive_pairs(ratings: Iterable[tuple[str, int, float]]) -> dict[str, set[int]]:
    """video id -> classes rated positive in at least one of its segments."""
    positives: dict[str, set[int]] = {}
    for rated_id, label, score in ratings:
        if score > 0:
            positives.setdefault(video_of(rated_id), set()).add(label)
    return positives


def candidate_hits(
    ids: Sequence[str], classes: torch.Tensor, positives: Mapping[str, set[int]]
) -> int:
    """How many positively rated (video, class) pairs have their class among the video's
    candidates (``classes`` [B, m] for the videos ``ids``); the candidate recall's numerator."""
    hits = 0
    for video_id, candidates in zip(ids, classes.tolist(), strict=True):
        rated = positives.get(video_id)
        if rated:
            hits += len(rated.intersection(candidates))
    return hits


# --------------------------------------------------------------------------------------------
# Segments (phase 2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segments:
    """The 5-frame segments of a batch of videos, segments with at least one frame only.

    Attributes:
        frames: float [N, 5, D]; frames past the end of a video are 0.0 (the batch's padding).
        mask: bool [N, 5], True for the frames the video has.
        video: int64 [N], the batch row each segment comes from.
        number: int64 [N], the segment's position in its video (start frame = 5 * number).
    """

    frames: torch.Tensor
    mask: torch.Tensor
    video: torch.Tensor
    number: torch.Tensor


def segment_index(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which segments exist: ``(video [N], number [N])`` for a frame mask [B, T] whose valid
    frames come first; a video of n frames has ``ceil(n / 5)`` segments, in order."""
    lengths = mask.sum(1)
    count = (lengths + SEGMENT_LENGTH - 1) // SEGMENT_LENGTH
    width = -(-mask.shape[1] // SEGMENT_LENGTH)
    present = torch.arange(width, device=mask.device) < count[:, None]  # [B, S]
    video, number = present.nonzero(as_tuple=True)
    return video, number


def segments_of(frames: torch.Tensor, mask: torch.Tensor) -> Segments:
    """Cut a batch (frames [B, T, D], mask [B, T], valid frames first) into its segments.

    A short last segment keeps only its real frames valid in the mask (its padding is 0.0),
    as segment-mode batches present a video's last segment; a video shorter than 5 frames gives
    one such segment.
    """
    batch, length, dim = frames.shape
    width = -(-length // SEGMENT_LENGTH)
    pad = width * SEGMENT_LENGTH - length
    if pad:
        frames = torch.nn.functional.pad(frames, (0, 0, 0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad))
    video, number = segment_index(mask)
    by_segment = frames.reshape(batch, width, SEGMENT_LENGTH, dim)
    return Segments(
        frames=by_segment[video, number],
        mask=mask.reshape(batch, width, SEGMENT_LENGTH)[video, number],
        video=video,
        number=number,
    )


def segment_probabilities(
    model: nn.Module, segments: Segments, classes: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """The segment model's probabilities of each segment's candidate classes: [N, m] for
    ``classes`` int64 [N, m], ``batch_size`` segments per forward pass."""
    chunks = []
    for start in range(0, segments.video.numel(), batch_size):
        part = slice(start, start + batch_size)
        logits = model(segments.frames[part], segments.mask[part]).logits
        chunks.append(torch.sigmoid(logits).gather(1, classes[part]))
    return torch.cat(chunks) if chunks else classes.new_zeros(classes.shape, dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# Combination (phase 3)
# --------------------------------------------------------------------------------------------


def combine_scores(
    p_video: torch.Tensor,
    p_segment: torch.Tensor | None,
    video_exponent: float,
    segment_exponent: float,
) -> torch.Tensor:
    """``p_video ** a * p_segment ** b`` elementwise (shapes broadcast).

    ``p_segment`` may be None when ``segment_exponent`` is 0: the result is then ``p_video ** a``
    (``p_video`` itself for a = 1).
    """
    if segment_exponent == 0:
        return p_video.pow(video_exponent)
    if p_segment is None:
        raise ValueError(f"segment_exponent={segment_exponent} needs segment probabilities")
    return p_video.pow(video_exponent) * p_segment.pow(segment_exponent)
