"""Bootstrap intervals of GAP: how much a score moves with the sample of test videos.

A test split is one draw of videos. Resampling its videos with replacement and scoring each
resample gives the spread that draw alone causes, which a difference between two models should
exceed before it means anything. The resamples never re-run the model: each video's kept top-k
entries are ranked once, and a resample only reweights them by how often it drew their video.

Exactness: a video drawn ``w`` times contributes ``w`` copies of each of its entries. Copies of
an entry tie with each other and carry its label, so under the pooled ranking's tie rule
(negatives first) they sit together at the entry's place, and a positive entry with cumulative
weight ``W`` and cumulative positive weight ``P`` (itself included) adds
``sum_{j=1..w} (P - w + j) / (W - w + j)``: GAP of the resample, as :func:`~vidistill.metrics.
functional.gap` computes it on the duplicated videos.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vidistill.metrics._common import ArrayLike, chunk_slices, positive_mask, rank_order
from vidistill.metrics.functional import _check_inputs, top_k_per_video

__all__ = ["gap_bootstrap_interval", "resampled_gaps"]

# Weighted entries per resample chunk: resamples are scored in chunks of about this many
# [resamples x entries] cells, so memory stays bounded for a YT8M-sized test set.
_CHUNK_CELLS = 1 << 23


def gap_bootstrap_interval(
    predictions: ArrayLike,
    labels: ArrayLike,
    top_k: int = 20,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of GAP@k over resamples of the videos.

    Args:
        predictions: ``[N, C]`` float scores; labels: ``[N, C]``, ``> 0`` is positive.
        top_k: classes kept per video (official: 20).
        resamples: number of resamples of the ``N`` videos, drawn with replacement.
        level: coverage of the interval (0.95: the 2.5% and 97.5% quantiles).
        seed: seeds the resamples, so one test set gets the same resamples for every model.

    Returns:
        ``(low, high)``.
    """
    preds, target = _check_inputs(predictions, labels)
    scores, kept, _ = top_k_per_video(preds, target, top_k)
    positives = positive_mask(target).sum(1)
    return resampled_interval(scores, kept, positives, resamples, level, seed)


def resampled_interval(
    scores: Tensor, kept: Tensor, positives: Tensor, resamples: int, level: float, seed: int
) -> tuple[float, float]:
    """The interval of :func:`gap_bootstrap_interval` from each video's kept scores and labels
    ``[N, k]`` and positive count ``[N]``. The videos are first put in a canonical order (by
    their values), so the resample a seed draws does not depend on the order they were scored in
    (DDP ranks and loader workers interleave them differently)."""
    order = canonical_order(scores, kept, positives)
    counts = draw_counts(len(positives), resamples, seed)
    return interval(resampled_gaps(scores[order], kept[order], positives[order], counts), level)


def canonical_order(scores: Tensor, kept: Tensor, positives: Tensor) -> Tensor:
    """``[N]`` int64: the videos sorted by (positives, kept labels, scores), a permutation that
    depends only on the set of videos; equal videos are interchangeable, so their ties do not
    matter."""
    columns = [scores.double().cpu().numpy(), kept.to(torch.int8).cpu().numpy()]
    keys = [column for block in columns for column in block.T[::-1]]
    keys.append(positives.cpu().numpy())
    return torch.from_numpy(np.lexsort(keys)).to(scores.device)


def draw_counts(num_videos: int, resamples: int, seed: int) -> Tensor:
    """``[R, N]`` int64: how often each of the ``R`` resamples draws each of the ``N`` videos."""
    if resamples < 1 or num_videos < 1:
        raise ValueError(f"need resamples >= 1 and videos >= 1, got {resamples} and {num_videos}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_videos, size=(resamples, num_videos))
    counts = np.zeros((resamples, num_videos), dtype=np.int64)
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1)
    return torch.from_numpy(counts)


def interval(values: Tensor, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``values`` [R]."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1 - level) / 2
    low, high = torch.quantile(values.double(), torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(low), float(high)


def resampled_gaps(scores: Tensor, kept: Tensor, positives: Tensor, counts: Tensor) -> Tensor:
    """GAP of each resample of the videos.

    Args:
        scores: ``[N, k]`` each video's kept scores; kept: ``[N, k]`` bool, their labels.
        positives: ``[N]`` each video's number of positive classes (the AP denominator counts
            positives outside the top k too).
        counts: ``[R, N]`` how often each resample draws each video.

    Returns:
        ``[R]`` float64.
    """
    num_videos, k = scores.shape
    flat_labels = kept.flatten()
    order = rank_order(scores.flatten(), flat_labels)
    ranked_video = torch.arange(num_videos, device=scores.device).repeat_interleave(k)[order]
    ranked_positive = flat_labels[order]
    counts = counts.to(scores.device, torch.float64)
    totals = counts @ positives.to(counts)
    sums = torch.cat(
        [
            _positive_precision_sums(counts[rows], ranked_video, ranked_positive)
            for rows in chunk_slices(len(counts), ranked_video.numel(), _CHUNK_CELLS)
        ]
    )
    return torch.where(totals > 0, sums / totals.clamp_min(1), torch.zeros_like(sums))


def _positive_precision_sums(
    counts: Tensor, ranked_video: Tensor, ranked_positive: Tensor
) -> Tensor:
    """``[r]`` sum over the copies of every ranked positive of (positives so far / rank)."""
    weights = counts[:, ranked_video]  # [r, M]
    seen = weights.cumsum(1)
    seen_positive = (weights * ranked_positive).cumsum(1)
    w, total, hits = (x[:, ranked_positive] for x in (weights, seen, seen_positive))
    result = torch.zeros(len(counts), dtype=torch.float64, device=counts.device)
    for copy in range(1, int(w.max().item()) + 1 if w.numel() else 1):
        # The copy-th of an entry's w copies sits at rank total - w + copy.
        term = (hits - w + copy) / (total - w + copy).clamp_min(1)
        result += torch.where(w >= copy, term, torch.zeros_like(term)).sum(1)
    return result
