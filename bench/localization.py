"""Localization throughput and the memory of its per-class rankings, measured in one run.

* Videos per second through phases 1-3 (video model, candidates, segment model on every 5-frame
  segment, combined scores into the per-class top-K buffers) on the segment-rated synthetic
  videos, against the video model's inference alone (phase 1): the ratio is what scoring every
  segment costs on top. Models are the CPU NeXtVLAD preset (untrained: speed does not depend on
  the weights); batches are decoded once and held in memory.
* Peak memory of the per-class top-K buffers at K = 100,000 for 1000 classes offered 1,000,000
  entries each, against the memory a full score table of those entries would take.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import tracemalloc

import numpy as np
import torch
from data_pipeline import BENCH_DATA
from training import NUM_CLASSES, build_backbone

from vidistill.data import YT8MDataset, dequantize_batch, expand_files
from vidistill.data.synthetic import ensure_dataset
from vidistill.localization.pipeline import LocalizationSettings, localize
from vidistill.localization.ranking import ClassTopK

SEGMENT_DATA = dataclasses.replace(BENCH_DATA, num_segment=300, segment_shards=2)
K = 100_000
CLASSES = 1000
OFFERS = 1_000_000
CHUNK = 100_000


def rated_batches(work_dir: str) -> list[dict]:
    directory = ensure_dataset(work_dir, SEGMENT_DATA)
    files = expand_files(str(directory / "segment" / "test*.tfrecord"))
    dataset = YT8MDataset(files, num_classes=NUM_CLASSES, batch_size=64)
    return [dequantize_batch(batch) for batch in dataset]


def videos_per_second(fn, videos: int, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return videos / best


def pipeline_throughput(work_dir: str, repeats: int) -> None:
    batches = rated_batches(work_dir)
    videos = sum(len(batch["ids"]) for batch in batches)
    # Seeded: the random weights decide how many candidate pairs phases 2-3 score, so unseeded
    # runs did different amounts of work (see the candidate pairs of bench runs 01 to 03).
    torch.manual_seed(0)
    video_model = build_backbone("nextvlad").eval()
    segment_model = build_backbone("nextvlad").eval()
    whitelist = list(range(0, NUM_CLASSES, 2))
    settings = LocalizationSettings(segments_per_class=K)

    def phases_1_to_3():
        return localize(batches, video_model, segment_model, whitelist, settings)

    @torch.inference_mode()
    def phase_1():
        for batch in batches:
            video_model(batch["frames"], batch["mask"])

    result = phases_1_to_3()
    full = videos_per_second(phases_1_to_3, videos, max(repeats - 1, 1))
    video_only = videos_per_second(phase_1, videos, max(repeats - 1, 1))
    print(
        f"  {videos} videos, {result.counts['segments']} segments, "
        f"{result.counts['candidate_pairs']} whitelisted candidate pairs"
    )
    print(f"  phases 1-3: {full:7.1f} videos/s; video model alone: {video_only:7.1f} videos/s")
    print(f"  ratio phases 1-3 / video model alone (time): {video_only / full:5.2f}")


def buffer_memory() -> None:
    rng = np.random.default_rng(0)
    tracemalloc.start()
    buffers = [ClassTopK(K) for _ in range(CLASSES)]
    key = 0
    for _ in range(OFFERS // CHUNK):
        for buffer in buffers:
            buffer.add(rng.random(CHUNK, dtype=np.float32), np.arange(key, key + CHUNK))
            key += CHUNK
    for buffer in buffers:
        buffer.ranked()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    table = CLASSES * OFFERS * (4 + 8)  # float32 score + int64 key per offered entry
    kept = CLASSES * K * (4 + 8)
    print(
        f"  top-K buffers, K={K}, {CLASSES} classes x {OFFERS} offered entries: peak "
        f"{peak / 2**30:.2f} GiB (the K best alone: {kept / 2**30:.2f} GiB; a full table: "
        f"{table / 2**30:.2f} GiB)"
    )
    print(f"  ratio peak / full table: {peak / table:5.2f}")


def run(args: argparse.Namespace) -> None:
    print(f"{torch.get_num_threads()} threads")
    pipeline_throughput(args.work_dir, args.repeats)
    buffer_memory()
