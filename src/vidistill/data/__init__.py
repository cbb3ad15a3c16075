"""Data layer: TFRecord reading and writing, frame samplers, streaming datasets, datamodules."""

from vidistill.data.datasets import YT8MDataset, dequantize_batch, expand_files
from vidistill.data.records import (
    AUDIO_SIZE,
    FEATURE_SIZE,
    RGB_SIZE,
    SEGMENT_LENGTH,
    CorruptRecordError,
    FrameRecord,
    RecordWriter,
    SegmentRecord,
    VideoRecord,
    dequantize,
    encode_frame_example,
    encode_video_example,
    read_records,
)
from vidistill.data.samplers import SAMPLERS, FrameSampler, build_sampler

__all__ = [
    "AUDIO_SIZE",
    "FEATURE_SIZE",
    "RGB_SIZE",
    "SAMPLERS",
    "SEGMENT_LENGTH",
    "CorruptRecordError",
    "FrameRecord",
    "FrameSampler",
    "RecordWriter",
    "SegmentRecord",
    "VideoRecord",
    "YT8MDataset",
    "build_sampler",
    "dequantize",
    "dequantize_batch",
    "encode_frame_example",
    "encode_video_example",
    "expand_files",
    "read_records",
]
