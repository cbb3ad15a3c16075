"""Helpers for tests: small YT8M-format shards written with vidistill's writer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidistill.data import AUDIO_SIZE, RGB_SIZE, RecordWriter, encode_frame_example


def random_video(rng: np.random.Generator, video_id: str, num_frames: int, num_classes: int = 10):
    labels = np.sort(rng.choice(num_classes, size=rng.integers(1, 4), replace=False))
    rgb = rng.integers(0, 256, (num_frames, RGB_SIZE), dtype=np.uint8)
    audio = rng.integers(0, 256, (num_frames, AUDIO_SIZE), dtype=np.uint8)
    return video_id, labels, rgb, audio


def write_shards(
    directory: Path,
    num_files: int,
    per_file: int | Sequence[int],
    seed: int = 0,
    max_len: int = 40,
) -> dict:
    """Write ``num_files`` frame-level shards of ``per_file`` videos each (or ``per_file[f]`` in
    file ``f``); returns {video id: (labels, rgb, audio)}, ids ``v<file:02d><record:03d>``."""
    rng = np.random.default_rng(seed)
    sizes = [per_file] * num_files if isinstance(per_file, int) else list(per_file)
    videos = {}
    directory.mkdir(parents=True, exist_ok=True)
    for f in range(num_files):
        with RecordWriter(str(directory / f"train{f:04d}.tfrecord")) as writer:
            for i in range(sizes[f]):
                vid, labels, rgb, audio = random_video(
                    rng, f"v{f:02d}{i:03d}", int(rng.integers(1, max_len))
                )
                writer.write(encode_frame_example(vid, labels, rgb, audio))
                videos[vid] = (labels, rgb, audio)
    return videos


def write_payloads(path: Path, payloads) -> list[int]:
    """Write raw payloads as one TFRecord file; returns each record's byte offset."""
    with RecordWriter(str(path)) as writer:
        for payload in payloads:
            writer.write(payload)
    return writer.offsets
