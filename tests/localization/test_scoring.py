"""Localization phases 1-3 on a batch: segment cutting, score combination, candidates and
their recall, and the frames the video model sees."""

from __future__ import annotations

import pytest
import torch

from vidistill.data import FrameSelection, YT8MDataset, dequantize_batch
from vidistill.localization.scoring import (
    VideoFrames,
    candidate_classes,
    candidate_hits,
    combine_scores,
    positive_pairs,
    segments_of,
)

# --------------------------------------------------------------------------------------------
# Segments, scores, candidates
# --------------------------------------------------------------------------------------------


def _batch(lengths: list[int], width: int, dim: int = 3, seed: int = 0) -> tuple:
    """frames [B, width, dim] (0.0 past each length) and mask [B, width]."""
    frames = torch.randn(len(lengths), width, dim, generator=torch.Generator().manual_seed(seed))
    mask = torch.arange(width) < torch.tensor(lengths)[:, None]
    return frames.masked_fill(~mask.unsqueeze(-1), 0.0), mask


@pytest.mark.parametrize("width", [13, 15])  # padded to a multiple of 5, or already one
def test_segments_of_cuts_five_frame_segments_and_a_short_last_one(width):
    frames, mask = _batch([13, 5, 3], width)
    segments = segments_of(frames, mask)
    assert segments.video.tolist() == [0, 0, 0, 1, 2]
    assert segments.number.tolist() == [0, 1, 2, 0, 0]
    assert segments.frames.shape == (5, 5, 3)
    # video 0: [0, 5), [5, 10), then [10, 13) with 3 valid frames and 0.0 padding
    assert torch.equal(segments.frames[1], frames[0, 5:10])
    assert torch.equal(segments.frames[2, :3], frames[0, 10:13])
    assert torch.equal(segments.mask[2], torch.tensor([True, True, True, False, False]))
    assert torch.all(segments.frames[2, 3:] == 0.0)
    # a video of exactly 5 frames has one full segment; one shorter than 5 still has one
    assert segments.mask[3].all()
    assert segments.mask[4].tolist() == [True, True, True, False, False]
    assert torch.equal(segments.frames[4, :3], frames[2, :3])


def test_combine_scores_on_hand_values():
    p_video = torch.tensor([0.8, 0.5, 1.0, 0.0])
    p_segment = torch.tensor([0.5, 0.25, 0.1, 0.9])
    expected = [0.8**0.05 * 0.5**0.95, 0.5**0.05 * 0.25**0.95, 0.1**0.95, 0.0]
    combined = combine_scores(p_video, p_segment, 0.05, 0.95)
    assert combined.tolist() == pytest.approx(expected, rel=1e-6)
    # a = 1, b = 0: every segment inherits its video's score exactly, no segment scores needed
    assert torch.equal(combine_scores(p_video, None, 1.0, 0.0), p_video)
    assert torch.equal(combine_scores(p_video, p_segment, 1.0, 0.0), p_video)
    # a = 0, b = 1: the segment model alone
    assert torch.equal(combine_scores(p_video, p_segment, 0.0, 1.0), p_segment)
    with pytest.raises(ValueError, match="needs segment probabilities"):
        combine_scores(p_video, None, 0.05, 0.95)


def test_candidates_and_their_recall_on_a_hand_made_case():
    p_video = torch.tensor(
        [
            [0.1, 0.9, 0.3, 0.3, 0.0],  # tie at the cut: class 2 before class 3
            [0.7, 0.2, 0.2, 0.6, 0.8],
        ]
    )
    classes, probabilities = candidate_classes(p_video, 2)
    assert classes.tolist() == [[1, 2], [4, 0]]
    assert torch.equal(probabilities, torch.tensor([[0.9, 0.3], [0.8, 0.7]]))
    assert candidate_classes(p_video, 9)[0].shape == (2, 5)  # at most every class

    ratings = [
        ("a:0", 1, 1.0),  # hit
        ("a:5", 1, 1.0),  # same (video, class) pair: counted once
        ("a:5", 3, 1.0),  # miss: class 3 lost the tie
        ("a:10", 4, 0.0),  # negative: not a positive pair
        ("b:0", 0, 1.0),  # hit
        ("b:0", 2, 1.0),  # miss
        ("c:0", 1, 1.0),  # a video never scored: a miss
    ]
    positives = positive_pairs(ratings)
    assert positives == {"a": {1, 3}, "b": {0, 2}, "c": {1}}
    assert candidate_hits(["a", "b"], classes, positives) == 2  # recall 2 / 5


# --------------------------------------------------------------------------------------------
# The video model's frames
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sampler", "k", "max_frames"), [("random", 4, 300), ("uniform", 3, 20), ("all", None, 300)]
)
def test_video_frames_are_those_the_data_layer_picks(shards, sampler, k, max_frames):
    directory, _ = shards
    files = str(directory / "*.tfrecord")

    def batches(frames):
        dataset = YT8MDataset(files, num_classes=10, batch_size=8, frames=frames)
        return [dequantize_batch(batch) for batch in dataset]

    selection = FrameSelection(sampler, k, max_frames, seed=3)
    picked = batches(selection)
    every = batches(FrameSelection("all", seed=3))
    view = VideoFrames(selection)
    for mine, theirs in zip(every, picked, strict=True):
        frames, mask = view(mine["frames"], mine["mask"], mine["ids"])
        assert torch.equal(mask, theirs["mask"])
        assert torch.equal(frames, theirs["frames"])
