"""Bootstrap intervals of GAP over resamples of the test videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidistill.metrics import GlobalAveragePrecision
from vidistill.metrics.bootstrap import (
    draw_counts,
    gap_bootstrap_interval,
    resampled_gaps,
)
from vidistill.metrics.functional import gap, top_k_per_video


def make_data(seed: int, videos: int = 60, classes: int = 25, tied: bool = True):
    rng = np.random.default_rng(seed)
    labels = rng.random((videos, classes)) < 0.12
    scores = rng.random((videos, classes)) + 0.6 * labels
    if tied:  # coarse scores: many ties inside and across videos
        scores = np.round(scores, 1)
    return scores.astype(np.float32), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_resample_is_the_gap_of_the_duplicated_videos(seed):
    """The reweighting equals GAP computed on the resample written out video by video (ties
    included), so the interval is of the official metric, not an approximation."""
    scores, labels = make_data(seed)
    counts = draw_counts(len(scores), resamples=8, seed=seed)
    kept_scores, kept, _ = top_k_per_video(torch.tensor(scores), torch.tensor(labels), 10)
    got = resampled_gaps(kept_scores, kept, torch.tensor(labels).sum(1), counts)
    for r in range(len(counts)):
        drawn = counts[r].numpy()
        expected = gap(np.repeat(scores, drawn, 0), np.repeat(labels, drawn, 0), 10)
        assert got[r].item() == pytest.approx(expected, abs=1e-12)


def test_counts_are_draws_with_replacement_and_seeded():
    counts = draw_counts(40, resamples=500, seed=7)
    assert counts.shape == (500, 40) and (counts.sum(1) == 40).all()
    assert counts.float().mean().item() == pytest.approx(1.0)
    # Poisson(1)-like: about e^-1 of the cells are 0.
    assert (counts == 0).float().mean().item() == pytest.approx(np.exp(-1), abs=0.02)
    assert torch.equal(counts, draw_counts(40, 500, seed=7))
    assert not torch.equal(counts, draw_counts(40, 500, seed=8))


def test_interval_brackets_the_gap_and_narrows_with_more_videos():
    small, small_labels = make_data(0, videos=60, tied=False)
    large, large_labels = make_data(0, videos=1500, tied=False)
    low, high = gap_bootstrap_interval(small, small_labels, resamples=400)
    assert low < gap(small, small_labels) < high
    wide = high - low
    low, high = gap_bootstrap_interval(large, large_labels, resamples=400)
    assert low < gap(large, large_labels) < high
    # The width shrinks like 1 / sqrt(N): 25x the videos, about a fifth of the width.
    assert 0.1 * wide < high - low < 0.4 * wide


def test_metric_class_matches_the_function_over_any_batching():
    scores, labels = make_data(4, videos=83)
    metric = GlobalAveragePrecision(top_k=20)
    for start in range(0, len(scores), 13):
        metric.update(
            torch.tensor(scores[start : start + 13]), torch.tensor(labels[start : start + 13])
        )
    expected = gap_bootstrap_interval(scores, labels, 20, resamples=300, seed=5)
    assert metric.bootstrap_interval(300, seed=5) == expected
    assert metric.bootstrap_interval(300, seed=6) != expected
    metric.reset()
    assert all(np.isnan(metric.bootstrap_interval(10)))


@pytest.mark.parametrize("tied", [False, True])
def test_interval_does_not_depend_on_the_order_the_videos_were_scored_in(tied):
    """DDP ranks and loader workers hand the videos to the metric in different orders; the
    resamples a seed draws must not follow that order."""
    scores, labels = make_data(2, videos=97, tied=tied)
    shuffled = np.random.default_rng(0).permutation(len(scores))
    expected = gap_bootstrap_interval(scores, labels, resamples=300, seed=3)
    assert gap_bootstrap_interval(scores[shuffled], labels[shuffled], resamples=300, seed=3) == (
        expected
    )
    metric = GlobalAveragePrecision(top_k=20)
    for part in np.array_split(shuffled, 5):
        metric.update(torch.tensor(scores[part]), torch.tensor(labels[part]))
    assert metric.bootstrap_interval(300, seed=3) == expected


def test_bad_arguments():
    scores, labels = make_data(0)
    with pytest.raises(ValueError, match="resamples >= 1"):
        gap_bootstrap_interval(scores, labels, resamples=0)
    with pytest.raises(ValueError, match="level must be in"):
        gap_bootstrap_interval(scores, labels, level=1.5)
