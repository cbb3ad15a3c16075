"""torchmetrics versions of the YouTube-8M video-level metrics, correct under DDP.

Each class is the accumulating twin of a function in :mod:`vidistill.metrics.functional` and calls
the same helpers, so ``compute()`` after any sequence of ``update`` calls (on any number of ranks)
equals the function applied to all the data at once. The tie convention is documented there.

State kept per metric:

* ``HitAtOne``, ``PERR``: a summed numerator and a video count.
* ``GlobalAveragePrecision``: the per-video top-k scores and labels (``cat`` lists, flattened to
  ``[N * k]``) plus the summed total of positives.
* ``MeanAveragePrecision``: the same plus the kept class ids, and summed positives per class
  ``[C]``.

The full ``[N, C]`` score matrix is never stored: 100k videos at k = 20 take about 14 MB.

Pooled scores are stored in the metric's ``dtype`` (float32 unless changed with
``set_dtype``); float16/bfloat16/float32 predictions are represented exactly, float64 ones are
rounded, which can merge near-equal scores into ties. Call ``metric.set_dtype(torch.float64)``
when evaluating float64 predictions that must match the functional result bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from vidistill.metrics._common import (
    ArrayLike,
    CatStateMetric,
    cat_state,
    check_positive_int,
    positive_mask,
    zero_score,
)
from vidistill.metrics.bootstrap import resampled_interval
from vidistill.metrics.functional import (
    _check_inputs,
    _gap_from_top_k,
    _hit_at_one_sum,
    _map_from_top_k,
    _perr_sum,
    _positives_per_class,
    top_k_per_video,
)

__all__ = [
    "PERR",
    "GlobalAveragePrecision",
    "HitAtOne",
    "MeanAveragePrecision",
    "video_metrics",
]


class _TopKMetric(CatStateMetric):
    """Shared state handling of the two ranking metrics (pooled per-video top-k entries)."""

    def __init__(self, top_k: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.top_k = check_positive_int(top_k, "top_k")
        self.add_state("top_scores", default=[], dist_reduce_fx="cat")
        self.add_state("top_labels", default=[], dist_reduce_fx="cat")

    def _list_state_dtypes(self) -> dict[str, torch.dtype]:
        return {"top_scores": self.dtype, "top_labels": torch.uint8}

    def _append_top_k(self, preds: Tensor, target: Tensor) -> Tensor:
        """Store the kept scores and labels of a batch; returns the kept classes ``[n, k]``."""
        scores, labels, classes = top_k_per_video(preds, target, self.top_k)
        self.top_scores.append(scores.flatten().to(self.dtype))
        # uint8 rather than bool: not every collective backend gathers bool tensors.
        self.top_labels.append(labels.flatten().to(torch.uint8))
        return classes

    def _pooled(self) -> tuple[Tensor, Tensor] | None:
        """``(scores [M], labels [M] bool)`` of everything accumulated, or None if nothing."""
        scores = cat_state(self.top_scores)
        if scores is None:
            return None
        return scores, cat_state(self.top_labels) > 0


class GlobalAveragePrecision(_TopKMetric):
    """GAP@k over all updates; see :func:`vidistill.metrics.functional.gap`.

    Args:
        top_k: classes kept per video (official: 20).
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    def __init__(self, top_k: int = 20, **kwargs: Any) -> None:
        super().__init__(top_k=top_k, **kwargs)
        self.add_state("num_positives", default=torch.tensor(0), dist_reduce_fx="sum")
        # Positives per video, in the order of the kept entries: what a bootstrap resample of
        # the videos needs (see bootstrap_interval).
        self.add_state("video_positives", default=[], dist_reduce_fx="cat")

    def _list_state_dtypes(self) -> dict[str, torch.dtype]:
        return {**super()._list_state_dtypes(), "video_positives": torch.int32}

    def update(self, preds: ArrayLike, target: ArrayLike) -> None:
        """Accumulate a batch: ``preds`` ``[n, C]`` float scores, ``target`` ``[n, C]`` labels."""
        preds, target = _check_inputs(preds, target)
        self._append_top_k(preds, target)
        per_video = positive_mask(target).sum(1)
        self.video_positives.append(per_video.to(torch.int32))
        self.num_positives += per_video.sum().to(self.num_positives.device)

    def compute(self) -> Tensor:
        """GAP as a 0-d float64 tensor (0 with no positives)."""
        pooled = self._pooled()
        if pooled is None:
            return zero_score(self.device)
        return _gap_from_top_k(*pooled, self.num_positives)

    def bootstrap_interval(
        self, resamples: int = 1000, level: float = 0.95, seed: int = 0
    ) -> tuple[float, float]:
        """Percentile bootstrap interval of GAP over resamples of the videos seen so far (on
        every rank: call it inside ``sync_context()`` under DDP); see
        :func:`vidistill.metrics.bootstrap.gap_bootstrap_interval`. NaNs with no video."""
        pooled = self._pooled()
        if pooled is None:
            return float("nan"), float("nan")
        positives = cat_state(self.video_positives)
        scores, labels = (x.view(len(positives), -1) for x in pooled)
        return resampled_interval(scores, labels, positives, resamples, level, seed)


class MeanAveragePrecision(_TopKMetric):
    """Official-style mAP over all updates; see
    :func:`vidistill.metrics.functional.mean_average_precision`.

    Args:
        num_classes: ``C``; every batch must have this many columns.
        top_k: classes kept per video (official: 20).
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    def __init__(self, num_classes: int, top_k: int = 20, **kwargs: Any) -> None:
        super().__init__(top_k=top_k, **kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.add_state("top_classes", default=[], dist_reduce_fx="cat")
        self.add_state(
            "positives_per_class",
            default=torch.zeros(num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def _list_state_dtypes(self) -> dict[str, torch.dtype]:
        return {**super()._list_state_dtypes(), "top_classes": torch.int32}

    def update(self, preds: ArrayLike, target: ArrayLike) -> None:
        """Accumulate a batch: ``preds`` ``[n, C]`` float scores, ``target`` ``[n, C]`` labels."""
        preds, target = _check_inputs(preds, target)
        if preds.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got {preds.shape[1]}")
        classes = self._append_top_k(preds, target)
        self.top_classes.append(classes.flatten().to(torch.int32))  # C < 2**31, half the bytes
        self.positives_per_class += _positives_per_class(target).to(self.positives_per_class.device)

    def compute(self) -> Tensor:
        """mAP as a 0-d float64 tensor (0 when no class has positives)."""
        pooled = self._pooled()
        if pooled is None:
            return zero_score(self.device)
        classes = cat_state(self.top_classes).long()
        return _map_from_top_k(*pooled, classes, self.positives_per_class)


class HitAtOne(Metric):
    """Hit@1 over all updates; see :func:`vidistill.metrics.functional.hit_at_one`."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # State names differ from PERR's on purpose: MetricCollection merges metrics whose states
        # have the same names and values after the first batch (compute groups), and Hit@1 equals
        # PERR on a batch of single-label videos.
        self.add_state("hits", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("hit_videos", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: ArrayLike, target: ArrayLike) -> None:
        """Accumulate a batch: ``preds`` ``[n, C]`` float scores, ``target`` ``[n, C]`` labels."""
        preds, target = _check_inputs(preds, target)
        self.hits += _hit_at_one_sum(preds, target).to(self.hits.device)
        self.hit_videos += preds.shape[0]

    def compute(self) -> Tensor:
        """Hit@1 as a 0-d float64 tensor (0 before any video)."""
        if int(self.hit_videos) == 0:
            return zero_score(self.device)
        return self.hits.double() / self.hit_videos.double()


class PERR(Metric):
    """Precision at equal recall rate; see :func:`vidistill.metrics.functional.perr`."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # float64: a float32 running sum over 100k+ per-video precisions drifts in the 6th digit.
        self.add_state(
            "precision_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("perr_videos", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: ArrayLike, target: ArrayLike) -> None:
        """Accumulate a batch: ``preds`` ``[n, C]`` float scores, ``target`` ``[n, C]`` labels."""
        preds, target = _check_inputs(preds, target)
        self.precision_sum += _perr_sum(preds, target).to(self.precision_sum)
        self.perr_videos += preds.shape[0]

    def compute(self) -> Tensor:
        """PERR as a 0-d float64 tensor (0 before any video)."""
        if int(self.perr_videos) == 0:
            return zero_score(self.device)
        return self.precision_sum.double() / self.perr_videos.double()


def video_metrics(num_classes: int, top_k: int = 20, prefix: str = "val/") -> MetricCollection:
    """The four official video-level metrics as one collection.

    Args:
        num_classes: ``C`` (3862 for YT8M).
        top_k: classes kept per video for GAP and mAP (official: 20).
        prefix: prepended to the keys ``gap``, ``map``, ``hit1``, ``perr``.

    Returns:
        A :class:`torchmetrics.MetricCollection`; ``update(preds [n, C], target [n, C])``.
    """
    return MetricCollection(
        {
            "gap": GlobalAveragePrecision(top_k=top_k),
            "map": MeanAveragePrecision(num_classes=num_classes, top_k=top_k),
            "hit1": HitAtOne(),
            "perr": PERR(),
        },
        prefix=prefix,
    )
