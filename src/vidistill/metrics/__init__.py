"""Official YouTube-8M video-level metrics: functional forms and torchmetrics classes."""

from vidistill.metrics import functional
from vidistill.metrics.classification import (
    PERR,
    GlobalAveragePrecision,
    HitAtOne,
    MeanAveragePrecision,
    video_metrics,
)
from vidistill.metrics.segments import (
    SegmentMAPAtK,
    read_segment_ratings,
    read_submission_csv,
    segment_map_at_k,
    write_submission_csv,
)

__all__ = [
    "PERR",
    "GlobalAveragePrecision",
    "HitAtOne",
    "MeanAveragePrecision",
    "SegmentMAPAtK",
    "functional",
    "read_segment_ratings",
    "read_submission_csv",
    "segment_map_at_k",
    "video_metrics",
    "write_submission_csv",
]
