"""Data layer: TFRecord framing, the YT8M record schemas, frame samplers and the frame selection
built from them, streaming datasets, batching and datamodules."""

from vidistill.data.batching import dequantize_batch
from vidistill.data.datasets import YT8MDataset
from vidistill.data.frames import FrameSelection
from vidistill.data.framing import CorruptRecordError, RecordWriter
from vidistill.data.quantization import dequantize
from vidistill.data.records import (
    FrameRecord,
    SegmentRecord,
    VideoRecord,
    encode_frame_example,
    encode_video_example,
    read_records,
)
from vidistill.data.samplers import SAMPLERS, FrameSampler, build_sampler
from vidistill.data.sharding import expand_files
from vidistill.features import AUDIO_SIZE, FEATURE_SIZE, RGB_SIZE, SEGMENT_LENGTH

__all__ = [
    "AUDIO_SIZE",
    "FEATURE_SIZE",
    "RGB_SIZE",
    "SAMPLERS",
    "SEGMENT_LENGTH",
    "CorruptRecordError",
    "FrameRecord",
    "FrameSampler",
    "FrameSelection",
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
