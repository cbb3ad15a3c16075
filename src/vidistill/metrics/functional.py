"""The official YouTube-8M video-level metrics: GAP@k, mAP, Hit@1 and PERR.

Every function takes ``predictions`` (float scores, shape ``[N, C]``) and ``labels`` (shape
``[N, C]``, any numeric or bool dtype, an entry ``> 0`` is a positive) as numpy arrays or torch
tensors, and returns a Python float. The definitions follow the official ``eval_util.py`` and
``average_precision_calculator.py`` of the YouTube-8M starter code (github.com/google/youtube-8m):

* **GAP@k**: each video keeps its ``k`` highest-scoring classes; the ``N * k`` kept
  (score, label) pairs are pooled and ranked by score; AP is the sum, over the ranks ``i`` holding
  a positive, of ``positives up to i / i``, divided by the total number of positives in
  ``labels`` (positives that fell outside a video's top ``k`` still count in the denominator).
* **mAP**: the same top-``k`` entries, grouped by class; per class the AP of its kept entries,
  divided by that class's total positives. Classes without positives are skipped, classes with
  positives of which none was kept count as 0, and the result is the unweighted mean.
* **Hit@1**: the fraction of videos whose highest-scoring class is a positive.
* **PERR**: for a video with ``m`` positives, the share of its ``m`` highest-scoring classes
  that are positive with a score ``> 0``; averaged over all videos (``m = 0`` gives 0).

``k`` larger than ``C`` is clipped to ``C``.

Tie convention
--------------
The official calculator shuffles tied scores before ranking them, so its numbers can move with
batch composition and order. Here ties are broken deterministically and never by the position of
a video in the batch, so one-shot evaluation, any batching and DDP gather agree exactly:

* Within a video (top-``k`` cut, Hit@1, the ``m`` classes of PERR) equal scores are ordered by
  class index, lower first.
* In the pooled GAP ranking and in each class's mAP ranking, entries with equal scores are
  ordered negatives first, positives after. This is the pessimistic reading of a tie, and it only
  depends on the multiset of (score, label) pairs, not on their order.

With continuous scores ties are rare and every convention gives the same value; they matter for
quantised or saturated outputs (e.g. many sigmoid outputs at exactly 1.0 or 0.0).

Implementation: all work is tensor ops on the input's device. Only the ``[N, k]`` kept entries
are ever materialised; the ``[N, C]`` matrix is walked in row chunks of about ``2**24``
elements, so temporaries stay bounded (of the order of 100 MB) whatever ``N`` is.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from vidistill.metrics._common import (
    ArrayLike,
    as_tensor,
    check_positive_int,
    chunk_slices,
    positive_mask,
    rank_order,
    reject_nan,
    zero_score,
)

__all__ = ["gap", "hit_at_one", "mean_average_precision", "perr", "top_k_per_video"]

# Elements per row chunk when scanning the [N, C] matrix. Large enough that the fixed cost of each
# kernel launch (milliseconds on a busy CPU thread pool) does not dominate, small enough that the
# per-chunk temporaries (16 MB masks, 64 MB int32 keys and row copies in the tie repair) stay
# bounded.
_CHUNK_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _check_inputs(predictions: ArrayLike, labels: ArrayLike) -> tuple[Tensor, Tensor]:
    """Validated ``(predictions [N, C] float, labels [N, C])`` on the predictions' device."""
    preds = as_tensor(predictions)
    target = as_tensor(labels)
    if preds.ndim != 2 or target.ndim != 2:
        raise ValueError(
            f"predictions and labels must be 2-D [N, C], got {tuple(preds.shape)} and "
            f"{tuple(target.shape)}"
        )
    if preds.shape != target.shape:
        raise ValueError(
            f"predictions {tuple(preds.shape)} and labels {tuple(target.shape)} differ in shape"
        )
    if preds.shape[1] == 0:
        raise ValueError("predictions have no classes (C = 0)")
    if not preds.is_floating_point():
        preds = preds.float()
    return preds, target.to(preds.device)


def _row_chunks(x: Tensor) -> Iterator[slice]:
    """Row slices covering ``x`` ``[N, C]``, each about ``_CHUNK_ELEMENTS`` elements."""
    return chunk_slices(x.shape[0], x.shape[1], _CHUNK_ELEMENTS)


def _reject_nan(best: Tensor) -> None:
    """Raise if any row's best score ``best`` ``[n]`` is NaN.

    torch's topk and argmax rank NaN above every number, so a row holding a NaN has it as its
    best score; checking that one column is far cheaper than scanning the whole matrix.
    """
    reject_nan(best, "predictions")


# --------------------------------------------------------------------------------------------
# Per-video top k
# --------------------------------------------------------------------------------------------


def _video_top_k(preds: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` best classes of each row, ties at the cut going to the lower class index.

    Args:
        preds: ``[n, C]`` scores, no NaN; ``1 <= k <= C``.

    Returns:
        ``(scores [n, k], classes [n, k] int64)``, each row ordered by score descending, then
        class index ascending.
    """
    num_classes = preds.shape[1]
    # One extra place shows whether a tie straddles the cut: the (k+1)-th best score equals the
    # k-th exactly when more than k classes reach the k-th best score.
    values, classes = torch.topk(preds, min(k + 1, num_classes), dim=1, sorted=True)
    _reject_nan(values[:, 0])
    if k < num_classes:
        crowded = values[:, k] == values[:, k - 1]
        values, classes = values[:, :k], classes[:, :k]
        # topk keeps an arbitrary subset of the classes tied at the cut. On continuous scores
        # such rows are rare, so only they are repaired.
        if bool(crowded.any()):
            rows = crowded.nonzero().squeeze(1)
            classes[rows] = _lowest_index_at_cut(preds, rows, values[rows], classes[rows])
    # topk orders equal scores arbitrarily too; only rows holding a tie need the index order.
    # (Repaired rows keep the same sorted values, so `values` is still right for them.)
    tied = (values[:, 1:] == values[:, :-1]).any(dim=1)
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        # Index ascending, then a stable sort by score descending.
        by_index = classes[rows].sort(dim=1).values
        # Advanced indexing reads just the [r, k] kept scores, not whole rows.
        scores = preds[rows[:, None], by_index]
        scores, perm = scores.sort(dim=1, descending=True, stable=True)
        classes[rows] = by_index.gather(1, perm)
        values[rows] = scores
    return values, classes


def _lowest_index_at_cut(preds: Tensor, rows: Tensor, values: Tensor, classes: Tensor) -> Tensor:
    """Top-k classes of ``rows`` with the tie at the cut resolved towards lower class indices.

    Args:
        preds: ``[n, C]`` scores.
        rows: ``[r]`` rows of ``preds`` where more than k classes reach the k-th best score.
        values, classes: ``[r, k]`` the topk result of those rows (values sorted descending).

    Returns:
        ``[r, k]`` classes: those above the cut (in topk's order), then the tied ones by index.
    """
    k = values.shape[1]
    num_classes = preds.shape[1]
    sub = preds if rows.numel() == preds.shape[0] else preds[rows]  # skip the copy if all tie
    cut = values[:, k - 1 :]  # [r, 1]
    # Everything strictly above the cut is already in topk's result, in its first positions.
    n_above = (values > cut).sum(dim=1, keepdim=True)  # [r, 1]
    # Rank tied classes by a key that is larger for lower indices (0 for untied ones); a topk of
    # that key is much cheaper than a cumulative count along the row.
    reverse_index = torch.arange(num_classes, 0, -1, dtype=torch.int32, device=preds.device)
    key = torch.where(sub == cut, reverse_index, 0)
    lowest_tied = torch.topk(key, k, dim=1, sorted=True).indices  # [r, k]
    # More than k - n_above classes are tied, so the first k - n_above picks are all tied ones.
    slot = torch.arange(k, device=preds.device)
    from_tied = lowest_tied.gather(1, (slot - n_above).clamp(min=0))
    return torch.where(slot < n_above, classes, from_tied)


def top_k_per_video(
    predictions: ArrayLike, labels: ArrayLike, k: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Each video's ``min(k, C)`` best classes with their scores and labels.

    Ties at the cut go to the lower class index, so the result of a row depends on that row only.

    Args:
        predictions: ``[N, C]`` float scores (numpy or torch).
        labels: ``[N, C]`` labels of any numeric/bool dtype; ``> 0`` is positive.
        k: number of classes to keep per video (clipped to ``C``).

    Returns:
        ``(scores [N, k'], labels [N, k'] bool, classes [N, k'] int64)`` with ``k' = min(k, C)``,
        each row ordered by score descending, then class index ascending. Scores keep the
        predictions' dtype; everything lives on the predictions' device.
    """
    preds, target = _check_inputs(predictions, labels)
    k = min(check_positive_int(k, "top_k"), preds.shape[1])
    scores, classes = [], []
    for rows in _row_chunks(preds):
        s, c = _video_top_k(preds[rows], k)
        scores.append(s)
        classes.append(c)
    if scores:
        top_scores, top_classes = torch.cat(scores), torch.cat(classes)
    else:  # N = 0
        top_scores = preds.new_empty((0, k))
        top_classes = torch.empty((0, k), dtype=torch.long, device=preds.device)
    return top_scores, positive_mask(target.gather(1, top_classes)), top_classes


def _positives_per_class(labels: Tensor) -> Tensor:
    """``[C]`` int64 count of positives of each class in ``labels`` ``[N, C]``."""
    counts = torch.zeros(labels.shape[1], dtype=torch.long, device=labels.device)
    for rows in _row_chunks(labels):
        # Chunked so that float labels never spawn an [N, C] mask. A uint8 view summed into int32
        # is several times faster than summing bool columns (which widens every element to
        # int64), and a chunk has far fewer than 2**31 rows.
        pos = positive_mask(labels[rows]).view(torch.uint8)
        counts += pos.sum(dim=0, dtype=torch.int32)
    return counts


# --------------------------------------------------------------------------------------------
# Ranking of the kept entries (shared with the torchmetrics classes)
# --------------------------------------------------------------------------------------------


def _gap_from_top_k(scores: Tensor, labels: Tensor, num_positives: Tensor | int) -> Tensor:
    """GAP of pooled kept entries.

    Args:
        scores: ``[M]`` float, the pooled per-video top-k scores.
        labels: ``[M]`` bool.
        num_positives: total positives in the full label matrix (the AP denominator).

    Returns:
        0-d float64 tensor.
    """
    total = int(num_positives)
    if total == 0:
        return zero_score(scores.device)
    ranked = labels[rank_order(scores, labels)]
    rank = ranked.nonzero().squeeze(1).double() + 1  # 1-based rank of each kept positive
    seen = torch.arange(1, rank.numel() + 1, dtype=torch.float64, device=rank.device)
    return (seen / rank).sum() / total


def _map_from_top_k(
    scores: Tensor, labels: Tensor, classes: Tensor, positives_per_class: Tensor
) -> Tensor:
    """Mean over classes of the AP of each class's kept entries.

    Args:
        scores: ``[M]`` float, the pooled per-video top-k scores.
        labels: ``[M]`` bool.
        classes: ``[M]`` int64 class index of each entry.
        positives_per_class: ``[C]`` int64 positives of each class in the full label matrix.

    Returns:
        0-d float64 tensor.
    """
    device = positives_per_class.device
    counted = positives_per_class > 0
    if not bool(counted.any()):
        return zero_score(device)
    num_classes = positives_per_class.numel()
    # Group by class (stable, so each group keeps the score ranking with its tie rule).
    order = rank_order(scores, labels)
    order = order[torch.sort(classes[order], stable=True).indices]
    cls, lab = classes[order], labels[order]

    # Position of each class's first entry, and of its first positive among all positives.
    kept = torch.bincount(cls, minlength=num_classes)
    block_start = kept.cumsum(0) - kept
    at = lab.nonzero().squeeze(1)  # positions of the kept positives, grouped by class
    pos_cls = cls[at]
    kept_pos = torch.bincount(pos_cls, minlength=num_classes)
    pos_start = kept_pos.cumsum(0) - kept_pos

    seen = torch.arange(at.numel(), device=at.device) - pos_start[pos_cls] + 1
    rank = at - block_start[pos_cls] + 1
    ap_sum = torch.zeros(num_classes, dtype=torch.float64, device=device)
    ap_sum.index_add_(0, pos_cls, seen.double() / rank.double())
    return (ap_sum[counted] / positives_per_class[counted].double()).mean()


# --------------------------------------------------------------------------------------------
# Per-video metrics (sum over videos; shared with the torchmetrics classes)
# --------------------------------------------------------------------------------------------


def _hit_at_one_sum(preds: Tensor, labels: Tensor) -> Tensor:
    """Number of videos (0-d int64) whose top class is positive; inputs ``[N, C]`` checked."""
    hits = torch.zeros((), dtype=torch.long, device=preds.device)
    for rows in _row_chunks(preds):
        # argmax documents that it returns the first maximal index: the lower-index tie rule.
        top = preds[rows].argmax(dim=1, keepdim=True)
        _reject_nan(preds[rows].gather(1, top))
        hits += positive_mask(labels[rows].gather(1, top)).sum()
    return hits


def _perr_sum(preds: Tensor, labels: Tensor) -> Tensor:
    """Sum over videos (0-d float64) of the precision at equal recall; inputs ``[N, C]``."""
    total = torch.zeros((), dtype=torch.float64, device=preds.device)
    for rows in _row_chunks(preds):
        pos = positive_mask(labels[rows])
        m = pos.sum(dim=1)  # [n] positives per video
        # The chunk's largest m bounds how far down any of its videos has to look; at least 1 so
        # that a chunk without positives still gets its NaN check.
        k = max(int(m.max()), 1)
        scores, classes = _video_top_k(preds[rows], k)
        within = torch.arange(k, device=m.device) < m[:, None]  # first m of each row
        hit = pos.gather(1, classes) & (scores > 0) & within
        total += (hit.sum(dim=1).double() / m.clamp(min=1).double()).sum()
    return total


# --------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------


def gap(predictions: ArrayLike, labels: ArrayLike, top_k: int = 20) -> float:
    """Global average precision over each video's ``top_k`` classes (GAP@k).

    Args:
        predictions: ``[N, C]`` float scores.
        labels: ``[N, C]`` labels; ``> 0`` is positive.
        top_k: classes kept per video (official: 20).

    Returns:
        GAP in ``[0, 1]``; 0.0 when ``labels`` has no positive.
    """
    preds, target = _check_inputs(predictions, labels)
    scores, pos, _ = top_k_per_video(preds, target, top_k)
    total = _positives_per_class(target).sum()
    return float(_gap_from_top_k(scores.flatten(), pos.flatten(), total))


def mean_average_precision(predictions: ArrayLike, labels: ArrayLike, top_k: int = 20) -> float:
    """Mean average precision as the official ``EvaluationMetrics`` computes it.

    Args:
        predictions: ``[N, C]`` float scores.
        labels: ``[N, C]`` labels; ``> 0`` is positive.
        top_k: classes kept per video (official: 20).

    Returns:
        Unweighted mean over the classes that have positives; 0.0 when none has.
    """
    preds, target = _check_inputs(predictions, labels)
    scores, pos, classes = top_k_per_video(preds, target, top_k)
    per_class = _positives_per_class(target)
    return float(_map_from_top_k(scores.flatten(), pos.flatten(), classes.flatten(), per_class))


def hit_at_one(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of videos whose highest-scoring class (first index on ties) is positive.

    Args:
        predictions: ``[N, C]`` float scores.
        labels: ``[N, C]`` labels; ``> 0`` is positive.

    Returns:
        Hit@1 in ``[0, 1]``; 0.0 when ``N = 0``.
    """
    preds, target = _check_inputs(predictions, labels)
    if preds.shape[0] == 0:
        return 0.0
    return int(_hit_at_one_sum(preds, target)) / preds.shape[0]


def perr(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Precision at equal recall rate, averaged over all videos.

    Args:
        predictions: ``[N, C]`` float scores.
        labels: ``[N, C]`` labels; ``> 0`` is positive.

    Returns:
        PERR in ``[0, 1]``; videos without positives contribute 0; 0.0 when ``N = 0``.
    """
    preds, target = _check_inputs(predictions, labels)
    if preds.shape[0] == 0:
        return 0.0
    return float(_perr_sum(preds, target)) / preds.shape[0]
