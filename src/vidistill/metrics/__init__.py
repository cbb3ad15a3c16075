"""Official YouTube-8M video-level metrics: functional forms and torchmetrics classes."""

from vidistill.metrics import functional
from vidistill.metrics.classification import (
    PERR,
    GlobalAveragePrecision,
    HitAtOne,
    MeanAveragePrecision,
    video_metrics,
)

__all__ = [
    "PERR",
    "GlobalAveragePrecision",
    "HitAtOne",
    "MeanAveragePrecision",
    "functional",
    "video_metrics",
]
