"""Writing a synthetic dataset: shards of every split (in parallel or not), ``vocabulary.csv``,
``segment_label_ids.csv`` and ``synthetic.json``, moved into place only when complete."""

from __future__ import annotations

import collections
import csv
import io
import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tfrecord import example_pb2

from vidistill.data.framing import RecordWriter
from vidistill.data.quantization import dequantize
from vidistill.data.records import encode_frame_example, encode_video_example
from vidistill.data.synthetic.config import (
    FORMAT_VERSION,
    RATED_SPLITS,
    SPLITS,
    SyntheticConfig,
    config_hash,
)
from vidistill.data.synthetic.generator import quantize, sample_video
from vidistill.data.synthetic.ratings import RATING_STATS, rating_stats
from vidistill.data.synthetic.world import build_world
from vidistill.features import RGB_SIZE


def split_files(split: str) -> tuple[str, str | None]:
    """(frame-level directory/prefix, video-level directory/prefix or None) of a split."""
    if split in RATED_SPLITS:
        return f"segment/{split.removeprefix('segment_')}", None
    return f"frame/{split}", f"video/{split}"


def shard_range(num_videos: int, num_shards: int, shard: int) -> range:
    """The video indices of a shard: contiguous, sizes differing by at most one."""
    return range(shard * num_videos // num_shards, (shard + 1) * num_videos // num_shards)


def generate(
    out_dir: str | Path,
    config: SyntheticConfig | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Write the dataset of ``config`` to ``out_dir`` and return it.

    Everything is written into a temporary sibling directory first, then renamed into place
    (replacing an existing ``out_dir``), so a reader never sees a half-written dataset.
    ``workers`` processes write shards in parallel (default: 2 if the dataset is big enough to
    pay for starting them, else 1); the output does not depend on it.
    """
    config = config or SyntheticConfig()
    config.validate()
    out = Path(out_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs = [(split, shard) for split in SPLITS for shard in range(config.num_shards(split))]
    total = sum(config.num_videos(s) for s in SPLITS)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if total >= 1000 else 1
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        for sub in ("frame", "segment", "video"):
            (tmp / sub).mkdir()
        stats = _run_jobs(tmp, config, jobs, total, workers, progress)
        summary = _summarize(config, stats)
        _write_metadata(tmp, config, summary)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _run_jobs(
    tmp: Path,
    config: SyntheticConfig,
    jobs: list[tuple[str, int]],
    total: int,
    workers: int,
    progress: bool,
) -> list[dict]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("synthetic YT8M: videos", total=total)
        if workers <= 1:
            return [
                _write_shard(tmp, config, split, shard, lambda: bar.advance(task))
                for split, shard in jobs
            ]
        # Big shards first so the pool finishes together; spawn: safe whatever the parent runs.
        jobs = sorted(
            jobs,
            key=lambda job: (
                -len(shard_range(config.num_videos(job[0]), config.num_shards(job[0]), job[1]))
            ),
        )
        results = []
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [
                pool.submit(_write_shard, tmp, config, split, shard) for split, shard in jobs
            ]
            for future in as_completed(futures):
                result = future.result()
                bar.advance(task, result["videos"])
                results.append(result)
        return results


def _write_shard(
    tmp: Path,
    config: SyntheticConfig,
    split: str,
    shard: int,
    on_video: Callable[[], None] | None = None,
) -> dict:
    """Write one shard of a split (frame-level, and video-level for plain splits)."""
    frame_prefix, video_prefix = split_files(split)
    indices = shard_range(config.num_videos(split), config.num_shards(split), shard)
    label_counts = np.zeros(config.num_classes, dtype=np.int64)
    frames = 0
    ratings: collections.Counter[str] = collections.Counter()
    frame_writer = RecordWriter(str(tmp / f"{frame_prefix}{shard:04d}.tfrecord"))
    video_writer = (
        RecordWriter(str(tmp / f"{video_prefix}{shard:04d}.tfrecord")) if video_prefix else None
    )
    try:
        for index in indices:
            video = sample_video(config, split, index)
            q = quantize(video.features)
            rgb, audio = q[:, :RGB_SIZE], q[:, RGB_SIZE:]
            payload = encode_frame_example(video.id, video.labels, rgb, audio, video.segments)
            frame_writer.write(_canonical(payload, example_pb2.SequenceExample))
            if video_writer is not None:
                mean = dequantize(q).mean(axis=0, dtype=np.float64).astype(np.float32)
                payload = encode_video_example(
                    video.id, video.labels, mean[:RGB_SIZE], mean[RGB_SIZE:]
                )
                video_writer.write(_canonical(payload, example_pb2.Example))
            frames += video.num_frames
            label_counts[video.labels] += 1
            if video.segments is not None:
                ratings.update(rating_stats(video.segments, video.rating_details))
            if on_video is not None:
                on_video()
    finally:
        frame_writer.close()
        if video_writer is not None:
            video_writer.close()
    return {
        "split": split,
        "shard": shard,
        "videos": len(indices),
        "frames": frames,
        "label_counts": label_counts,
        "ratings": dict(ratings),
    }


def _canonical(payload: bytes, message: type) -> bytes:
    """Re-serialize with sorted map entries: protobuf orders the ``context``/``features`` maps
    differently in each process, which would make files differ between runs."""
    return message.FromString(payload).SerializeToString(deterministic=True)


def _summarize(config: SyntheticConfig, stats: list[dict]) -> dict:
    splits = {}
    for split in SPLITS:
        mine = [s for s in stats if s["split"] == split]
        frame_prefix, video_prefix = split_files(split)
        entry = {
            "frame_files": f"{frame_prefix}*.tfrecord",
            "shards": config.num_shards(split),
            "videos": sum(s["videos"] for s in mine),
            "frames": sum(s["frames"] for s in mine),
            "labels": int(sum(s["label_counts"].sum() for s in mine)),
            "labels_noisy": split == "train" or config.noisy_eval_labels,
        }
        if video_prefix:
            entry["video_files"] = f"{video_prefix}*.tfrecord"
        if split in RATED_SPLITS:
            # Counts of each kind of rating (positives as written, after rater noise), so the
            # difficulty of the rating task can be read next to the shards.
            totals = sum((collections.Counter(s["ratings"]) for s in mine), collections.Counter())
            for key in RATING_STATS:
                entry[key] = int(totals[key])
        splits[split] = entry
    train_counts = sum(
        (s["label_counts"] for s in stats if s["split"] == "train"),
        np.zeros(config.num_classes, np.int64),
    )
    return {"splits": splits, "train_video_counts": train_counts}


def _write_metadata(directory: Path, config: SyntheticConfig, summary: dict) -> None:
    world = build_world(config)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(
        [
            "Index",
            "TrainVideoCount",
            "KnowledgeGraphId",
            "Name",
            "WikiUrl",
            "Vertical1",
            "Vertical2",
            "Vertical3",
            "WikiDescription",
        ]
    )
    for c in range(config.num_classes):
        cluster = int(world.cluster_of[c])
        writer.writerow(
            [
                c,
                int(summary["train_video_counts"][c]),
                f"/m/synthetic{c:04d}",
                f"synthetic-class-{c:04d}",
                "",
                f"synthetic-vertical-{cluster:02d}",
                "",
                "",
                f'Synthetic class {c}, frequency rank {c}, prototype cluster {cluster} ("made up").',
            ]
        )
    (directory / "vocabulary.csv").write_text(rows.getvalue(), encoding="utf-8")
    whitelist = "".join(f"{c}\n" for c in world.whitelist.tolist())
    (directory / "segment_label_ids.csv").write_text("Index\n" + whitelist, encoding="utf-8")
    meta = {
        "generator": "vidistill.data.synthetic",
        "format_version": FORMAT_VERSION,
        "config_hash": config_hash(config),
        "seed": config.seed,
        "config": config.to_dict(),
        "num_classes": config.num_classes,
        "segment_classes": len(world.whitelist),
        "splits": summary["splits"],
    }
    (directory / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _move_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, trash / out.name)
    os.rename(tmp, out)
    shutil.rmtree(trash, ignore_errors=True)
