"""Official YouTube-8M metrics: the video-level ones (functional forms and torchmetrics classes)
and the 2019 segment-level MAP@K (:mod:`.segments`)."""

from vidistill.metrics import functional
from vidistill.metrics.classification import (
    PERR,
    GlobalAveragePrecision,
    HitAtOne,
    MeanAveragePrecision,
    video_metrics,
)
from vidistill.metrics.segments import SegmentMAPAtK, segment_map_at_k

__all__ = [
    "PERR",
    "GlobalAveragePrecision",
    "HitAtOne",
    "MeanAveragePrecision",
    "SegmentMAPAtK",
    "functional",
    "segment_map_at_k",
    "video_metrics",
]
