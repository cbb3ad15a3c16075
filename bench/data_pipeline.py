"""Data pipeline throughput: vidistill's reader against the tfrecord package's stock loader.

"Decode" means what a model consumes: every video turned into dequantized float32 frames padded
to the clip length (300 for all frames, k for a k-frame sampler), single process, same shards.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tfrecord.reader import sequence_loader

from vidistill.data import (
    FrameSelection,
    YT8MDataset,
    dequantize,
    dequantize_batch,
    expand_files,
    read_records,
)
from vidistill.data.synthetic import SyntheticConfig, ensure_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from rangeserver import HttpServer  # noqa: E402 - the tests' local HTTP server

BENCH_DATA = SyntheticConfig(seed=1, num_train=1500, num_validate=0, num_test=0, num_segment=0)
BATCH_SIZE = 64
# The targets: all-frames decode against the stock reader's pipeline, and the k = 30
# decode against vidistill's own all-frames decode.
TARGET_DECODE, TARGET_K = 3.0, 5.0


def memory_copy(batch_size: int, frames: int, batches: int = 8) -> int:
    """Copy ``batches`` float32 blocks the size of a [batch_size, frames, 1152] batch (one
    source, one destination: memory bandwidth only); returns the videos they would hold."""
    source = np.ones((batch_size, frames, 1152), np.float32)
    destination = np.empty_like(source)
    for _ in range(batches):
        np.copyto(destination, source)
    return batches * batch_size


def best_rate(fn, repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` passes (the least disturbed one)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn()
        best = max(best, count / (time.perf_counter() - start))
    return best


def stock_pipeline(files: list[str], max_frames: int = 300, batch_size: int = 64) -> int:
    """tfrecord's sequence_loader, each video joined, dequantized and padded to float32
    [300, 1152], then stacked into batches as a DataLoader's default collate does."""
    count = 0
    pending = []
    for path in files:
        for _, features in sequence_loader(
            path, None, {"id": "byte", "labels": "int"}, {"rgb": "byte", "audio": "byte"}
        ):
            rgb = np.frombuffer(b"".join(features["rgb"]), np.uint8).reshape(-1, 1024)
            audio = np.frombuffer(b"".join(features["audio"]), np.uint8).reshape(-1, 128)
            n = min(len(rgb), max_frames)
            frames = np.zeros((max_frames, 1152), np.float32)
            frames[:n, :1024] = dequantize(rgb[:n])
            frames[:n, 1024:] = dequantize(audio[:n])
            pending.append(frames)
            if len(pending) == batch_size:
                torch.from_numpy(np.stack(pending))
                count += len(pending)
                pending = []
    return count + len(pending)


def stock_records(files: list[str]) -> int:
    count = 0
    for path in files:
        for _, features in sequence_loader(
            path, None, {"id": "byte"}, {"rgb": "byte", "audio": "byte"}
        ):
            np.frombuffer(b"".join(features["rgb"]), np.uint8)
            count += 1
    return count


def vidistill_records(files: list[str]) -> int:
    return sum(1 for path in files for _ in read_records(path))


def vidistill_pipeline(files: list[str], sampler: str, k: int | None) -> int:
    frames = FrameSelection(sampler, k)
    dataset = YT8MDataset(files, num_classes=1000, batch_size=BATCH_SIZE, frames=frames)
    count = 0
    for batch in dataset:
        dequantize_batch(batch)
        count += len(batch["ids"])
    return count


def run(args: argparse.Namespace) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core for every contender, as a DataLoader worker has
    try:
        _measure(args)
    finally:
        torch.set_num_threads(threads)


def _measure(args: argparse.Namespace) -> None:
    directory = ensure_dataset(args.work_dir, BENCH_DATA)
    files = expand_files(str(directory / "frame" / "train*.tfrecord"))
    vidistill_records(files)  # warm the page cache and the record index
    rates = {
        "stock sequence_loader, records": best_rate(lambda: stock_records(files), args.repeats),
        "vidistill read_records, records": best_rate(
            lambda: vidistill_records(files), args.repeats
        ),
        "stock loader -> float32 [B, 300, 1152]": best_rate(
            lambda: stock_pipeline(files), args.repeats
        ),
        "vidistill all frames -> float32 [B, 300, 1152]": best_rate(
            lambda: vidistill_pipeline(files, "all", None), args.repeats
        ),
        "vidistill uniform k=30 -> float32 [B, 30, 1152]": best_rate(
            lambda: vidistill_pipeline(files, "uniform", 30), args.repeats
        ),
    }
    with tempfile.TemporaryDirectory() as log:
        server = HttpServer(directory, Path(log) / "requests.log")
        try:
            urls = [f"{server.url}/frame/{Path(path).name}" for path in files]
            vidistill_pipeline(urls, "all", None)  # index the URLs once, as a first epoch would
            rates["vidistill all frames, shards over local HTTP"] = best_rate(
                lambda: vidistill_pipeline(urls, "all", None), args.repeats
            )
        finally:
            server.stop()
    width = max(map(len, rates))
    print(f"{len(files)} shards, {vidistill_records(files)} videos, 1 process")
    for name, rate in rates.items():
        print(f"  {name:<{width}}  {rate:8.0f} videos/s")
    names = list(rates)
    record_ratio = rates[names[1]] / rates[names[0]]
    decode_ratio = rates[names[3]] / rates[names[2]]
    k_ratio = rates[names[4]] / rates[names[3]]
    print(f"  ratio reader vs stock, records only:        {record_ratio:5.2f}x")
    print(f"  ratio all-frames decode vs stock decode:    {_target(decode_ratio, TARGET_DECODE)}")
    print(f"  ratio k=30 decode vs own all-frames decode: {_target(k_ratio, TARGET_K)}")
    http_ratio = rates[names[5]] / rates[names[3]]
    print(f"  ratio all frames over HTTP vs local files:  {http_ratio:5.2f}x")
    # The float32 batches the all-frames decode writes, against copying as many bytes.
    copy_rate = best_rate(lambda: memory_copy(BATCH_SIZE, 300), args.repeats)
    print(
        f"  all-frames decode, float32 bytes per second vs a plain memory copy of them: "
        f"{rates[names[3]] / copy_rate:5.2f}"
    )


def _target(ratio: float, target: float) -> str:
    return f"{ratio:5.2f}x  (target >= {target:g}: {'met' if ratio >= target else 'NOT met'})"
