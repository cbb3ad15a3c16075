"""Streaming datasets over sharded TFRecord files.

Every record is read exactly once per epoch across all DataLoader workers of all DDP ranks. The
files' record offsets are indexed once (12-byte header reads, cached on disk), so the global
record sequence (files in a per-epoch shuffled order, then records in file order) is known up
front and cut into one contiguous range per consumer, ``consumer = rank * num_workers + worker``.
Each consumer seeks straight to its range: no record is read twice and files are read
sequentially. In training under DDP the ranges are made equal (dropping at most
``consumers - 1`` records per epoch, a different few each epoch) so that every rank runs the same
number of steps; evaluation keeps every record.

Batches are collated inside the workers (the DataLoader gets ``batch_size=None``), which keeps
``len(dataloader)`` exact. Frames stay uint8 through collation; ``dequantize_batch`` turns them
into float32 in one tensor operation, ideally on the accelerator.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from vidistill.data.records import (
    FEATURE_SIZE,
    RGB_SIZE,
    SEGMENT_LENGTH,
    CorruptRecordError,
    FrameRecord,
    RecordDecoder,
    SegmentRecord,
    VideoRecord,
    _InvalidPayload,
    dequantize,
    dequantize_coefficients,
    empty_float32,
    iter_payloads,
    scan_offsets,
)
from vidistill.data.samplers import AllFrames, FrameSampler, build_sampler, video_rng

log = logging.getLogger(__name__)

MODES = ("frame", "segment", "video")
ON_CORRUPT = ("raise", "skip")


# --------------------------------------------------------------------------------------------
# Files and their record index
# --------------------------------------------------------------------------------------------


def expand_files(patterns: str | Sequence[str]) -> list[str]:
    """Sorted, de-duplicated files matching one or more glob patterns (``**`` allowed).

    Raises ``FileNotFoundError`` naming the first pattern that matches nothing.
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(
            p
            for p in glob.glob(os.path.expanduser(str(pattern)), recursive=True)
            if os.path.isfile(p)
        )
        if not matches:
            raise FileNotFoundError(f"no TFRecord files match {str(pattern)!r}")
        files.extend(matches)
    return list(dict.fromkeys(files))


def default_cache_dir() -> Path:
    return Path(os.environ.get("VIDISTILL_CACHE", Path.home() / ".cache" / "vidistill")) / "index"


def record_offsets(
    path: str, cache_dir: str | Path | None = None, strict: bool = True
) -> tuple[np.ndarray, CorruptRecordError | None]:
    """Byte offsets of the records of ``path`` (int64 [n]), cached by path, size and mtime,
    and the break in its framing if there is one.

    A file whose framing breaks raises :class:`CorruptRecordError`; with ``strict=False`` the
    records before the break are returned instead, with the error (also logged). Only complete
    indexes are cached.
    """
    stat = os.stat(path)
    key = hashlib.sha1(
        f"{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    ).hexdigest()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / f"{key}.npy"
    try:
        return np.load(cached), None
    except (OSError, ValueError):
        pass
    offsets, error = scan_offsets(path)
    if error is not None:
        if strict:
            raise error
        log.warning(
            "on_corrupt=skip: reading only the %d records before a broken header: %s",
            len(offsets),
            error,
        )
        return offsets, error
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".npy", delete=False) as tmp:
            np.save(tmp, offsets)
        os.replace(tmp.name, cached)  # atomic: concurrent ranks may index the same file
    except OSError as e:  # a read-only home must not stop training
        log.debug("could not cache the record index of %s: %s", path, e)
    return offsets, None


def plan_ranges(
    counts: Sequence[int], order: Sequence[int], consumer: int, consumers: int, equal: bool
) -> list[tuple[int, int, int]]:
    """This consumer's share of the records as ``(file, start, stop)`` ranges.

    The files' records are concatenated in ``order`` and cut into ``consumers`` contiguous parts;
    with ``equal`` every part has ``total // consumers`` records (the remainder is dropped),
    otherwise the sizes differ by at most one and every record belongs to exactly one part.
    """
    total = int(sum(counts))
    if equal:
        share = total // consumers
        begin, end = consumer * share, (consumer + 1) * share
    else:
        begin, end = consumer * total // consumers, (consumer + 1) * total // consumers
    ranges = []
    position = 0
    for f in order:
        lo, hi = max(begin, position), min(end, position + counts[f])
        if lo < hi:
            ranges.append((f, lo - position, hi - position))
        position += counts[f]
    return ranges


# --------------------------------------------------------------------------------------------
# Collation
# --------------------------------------------------------------------------------------------


def collate_frames(
    records: Sequence[FrameRecord], num_classes: int, num_frames: int
) -> dict[str, torch.Tensor | list[str]]:
    """Pad records to a batch; frames stay uint8.

    Returns ``frames`` uint8 [B, T, 1152] (rgb then audio; padding bytes 0 to be zeroed after
    dequantization), ``mask`` bool [B, T], ``num_frames`` int64 [B] (frames actually present),
    ``labels`` float32 multi-hot [B, C], ``ids`` list of B strings.
    """
    batch = len(records)
    frames = np.zeros((batch, num_frames, FEATURE_SIZE), np.uint8)
    labels = np.zeros((batch, num_classes), np.float32)
    lengths = np.zeros(batch, np.int64)
    for i, record in enumerate(records):
        n = min(len(record.rgb), num_frames)
        frames[i, :n, :RGB_SIZE] = record.rgb[:n]
        frames[i, :n, RGB_SIZE:] = record.audio[:n]
        labels[i, record.labels] = 1.0
        lengths[i] = n
    lengths_t = torch.from_numpy(lengths)
    return {
        "frames": torch.from_numpy(frames),
        "mask": torch.arange(num_frames) < lengths_t[:, None],
        "num_frames": lengths_t,
        "labels": torch.from_numpy(labels),
        "ids": [record.id for record in records],
    }


def collate_segments(
    samples: Sequence[dict], num_classes: int
) -> dict[str, torch.Tensor | list[str]]:
    """Batch of rated 5-frame segments: like :func:`collate_frames` plus ``label_weights`` [B, C],
    1 where the (segment, class) pair is rated, so the loss can ignore unrated pairs."""
    batch = len(samples)
    frames = np.zeros((batch, SEGMENT_LENGTH, FEATURE_SIZE), np.uint8)
    labels = np.zeros((batch, num_classes), np.float32)
    weights = np.zeros((batch, num_classes), np.float32)
    lengths = np.zeros(batch, np.int64)
    for i, s in enumerate(samples):
        n = len(s["frames"])
        frames[i, :n] = s["frames"]
        labels[i, s["classes"]] = s["scores"]
        weights[i, s["classes"]] = 1.0
        lengths[i] = n
    lengths_t = torch.from_numpy(lengths)
    return {
        "frames": torch.from_numpy(frames),
        "mask": torch.arange(SEGMENT_LENGTH) < lengths_t[:, None],
        "num_frames": lengths_t,
        "labels": torch.from_numpy(labels),
        "label_weights": torch.from_numpy(weights),
        "ids": [s["id"] for s in samples],
    }


def collate_videos(
    records: Sequence[VideoRecord], num_classes: int
) -> dict[str, torch.Tensor | list[str]]:
    """Video-level records as one-frame videos: ``frames`` float32 [B, 1, 1152] holds the mean
    features, so every frame model also runs on video-level data."""
    batch = len(records)
    features = np.zeros((batch, 1, FEATURE_SIZE), np.float32)
    labels = np.zeros((batch, num_classes), np.float32)
    for i, record in enumerate(records):
        features[i, 0, :RGB_SIZE] = record.mean_rgb
        features[i, 0, RGB_SIZE:] = record.mean_audio
        labels[i, record.labels] = 1.0
    return {
        "frames": torch.from_numpy(features),
        "mask": torch.ones(batch, 1, dtype=torch.bool),
        "num_frames": torch.ones(batch, dtype=torch.int64),
        "labels": torch.from_numpy(labels),
        "ids": [record.id for record in records],
    }


# The frame tensors a batch may carry, each with its mask and lengths: what the (student) model
# sees, and the teacher's view of the same videos in teacher-student training.
FRAME_VIEWS = (
    ("frames", "mask", "num_frames"),
    ("teacher_frames", "teacher_mask", "teacher_num_frames"),
)


def dequantize_batch(
    batch: dict,
    max_quantized_value: float = 2.0,
    min_quantized_value: float = -2.0,
    per_row: bool | None = None,
) -> dict:
    """Turn every uint8 frame view of the batch (``frames`` [B, T, D], and ``teacher_frames``
    when present) into float32 in place, padding frames set to 0.0.

    Valid frames come first in every row (``num_frames`` of them). When padding is a large share
    of the batch (all-frames batches of YT8M-length videos are about half padding) each row's
    valid frames are converted on their own and only the padding is zeroed; otherwise, and on
    accelerators, the whole tensor goes through the formula at once, which avoids B small
    operations (``per_row`` forces either way).
    """
    for frames_key, mask_key, lengths_key in FRAME_VIEWS:
        frames = batch.get(frames_key)
        if frames is not None and frames.dtype == torch.uint8:
            batch[frames_key] = _dequantize_view(
                frames,
                batch[mask_key],
                batch[lengths_key],
                max_quantized_value,
                min_quantized_value,
                per_row,
            )
    return batch


def _dequantize_view(
    frames: torch.Tensor,
    mask: torch.Tensor,
    num_frames: torch.Tensor,
    max_quantized_value: float,
    min_quantized_value: float,
    per_row: bool | None,
) -> torch.Tensor:
    if frames.device.type != "cpu" and not per_row:
        # One masked fill, and no look at the lengths, which would wait for the device.
        values = dequantize(frames, max_quantized_value, min_quantized_value)
        return values.masked_fill_(~mask.unsqueeze(-1), 0.0)
    lengths = num_frames.tolist()
    padding = frames.shape[0] * frames.shape[1] - sum(lengths)
    if per_row is None:
        per_row = padding * 4 > frames.shape[0] * frames.shape[1]
    if per_row:
        scale, bias = dequantize_coefficients(max_quantized_value, min_quantized_value)
        values = empty_float32(frames.shape, frames.device)
        for row, n in enumerate(lengths):
            values[row, :n].copy_(frames[row, :n]).mul_(scale).add_(bias)
            values[row, n:] = 0.0
        return values
    values = dequantize(frames, max_quantized_value, min_quantized_value)
    if padding:
        values.masked_fill_(~mask.unsqueeze(-1), 0.0)
    return values


def segment_samples(record: SegmentRecord) -> Iterator[dict]:
    """One sample per rated segment start: its 5 frames (fewer at the end of the video) and the
    rated classes with their 0/1 scores."""
    starts = record.segment_start_times
    for start in np.unique(starts):
        rated = starts == start
        frames = np.concatenate(
            [
                record.rgb[start : start + SEGMENT_LENGTH],
                record.audio[start : start + SEGMENT_LENGTH],
            ],
            axis=1,
        )
        yield {
            "id": f"{record.id}:{int(start)}",
            "frames": frames,
            "classes": record.segment_labels[rated],
            "scores": record.segment_scores[rated],
        }


def check_views(student: FrameSampler, teacher: FrameSampler, max_frames: int) -> int:
    """The teacher's frames per video; ValueError if the student could see more frames than the
    teacher (a student k larger than the teacher's frames)."""
    student_frames = student.output_frames(max_frames)
    teacher_frames = teacher.output_frames(max_frames)
    if student_frames > teacher_frames:
        raise ValueError(
            f"the student sees up to {student_frames} frames per video ({student!r}) but the "
            f"teacher only {teacher_frames} ({teacher!r}): the student's k must not exceed the "
            "teacher's frames"
        )
    return teacher_frames


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


class YT8MDataset(IterableDataset):
    """Batches from YT8M TFRecord shards, split across workers and DDP ranks.

    Args:
        files: shard paths or glob patterns.
        num_classes: size of the label vocabulary; labels outside it are input errors.
        mode: ``"frame"`` (videos, frames picked by ``sampler``), ``"segment"`` (2019 rated
            5-frame segments), or ``"video"`` (video-level mean features).
        batch_size: videos (or segments) per batch.
        sampler: a :class:`FrameSampler` or its name; ``k``/``stride`` go with a name.
        max_frames: videos are truncated to their first ``max_frames`` frames (official: 300).
        train: shuffle file order and samples each epoch, draw random frames per epoch, and
            equalize ranks under DDP. Evaluation is deterministic and reads every record.
        shuffle_buffer: samples held for shuffling in training (0 disables it).
        shuffle: False keeps training batches in file order, the same every epoch (to overfit
            a few batches while debugging); the ranks are still equalized.
        num_workers: the DataLoader's worker count (needed to size ranges and ``len``).
        rank, world_size: DDP placement; read from ``torch.distributed`` when not given.
        on_corrupt: ``"raise"`` stops at the first bad record; ``"skip"`` logs every bad record
            (file, index, offset, problem) and counts it, and a bad length field skips the
            rest of that file, also logged.
        drop_last: drop each worker's final partial batch.
        teacher_sampler, teacher_k: in frame mode, also deliver a teacher's view of every video
            (``teacher_frames``, ``teacher_mask``, ``teacher_num_frames``; ``all`` for every
            frame), for teacher-student training. Both views come from one decode of the record.
        skip_counter: a ``multiprocessing.Value`` every record skipped under ``on_corrupt=skip``
            is added to, in whichever worker process reads it (for a caller's summary).
    """

    def __init__(
        self,
        files: str | Sequence[str],
        num_classes: int,
        mode: str = "frame",
        batch_size: int = 32,
        sampler: FrameSampler | str = "all",
        k: int | None = None,
        stride: int | None = None,
        max_frames: int = 300,
        train: bool = False,
        shuffle_buffer: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        on_corrupt: str = "raise",
        drop_last: bool = False,
        index_cache: str | Path | None = None,
        teacher_sampler: FrameSampler | str | None = None,
        teacher_k: int | None = None,
        skip_counter: Any = None,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown data mode {mode!r}; choose one of {', '.join(MODES)}")
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(
                f"on_corrupt must be one of {', '.join(ON_CORRUPT)}, got {on_corrupt!r}"
            )
        if num_classes <= 0 or batch_size <= 0 or max_frames <= 0:
            raise ValueError("num_classes, batch_size and max_frames must be positive")
        self.files = expand_files(files)
        self.num_classes = num_classes
        self.mode = mode
        self.batch_size = batch_size
        self.sampler = build_sampler(sampler, k, stride) if mode == "frame" else AllFrames()
        self.max_frames = max_frames
        self.frames_per_video = self.sampler.output_frames(max_frames)
        self.teacher_sampler = None
        if teacher_sampler is not None:
            if mode != "frame":
                raise ValueError(f"a teacher view needs frame mode, not mode={mode!r}")
            self.teacher_sampler = build_sampler(teacher_sampler, teacher_k)
            self.teacher_frames_per_video = check_views(
                self.sampler, self.teacher_sampler, max_frames
            )
        self.train = train
        self.shuffle_buffer = shuffle_buffer
        self.shuffle = shuffle
        self.seed = seed
        self.num_workers = num_workers
        self.rank = rank
        self.world_size = world_size
        self.on_corrupt = on_corrupt
        self.drop_last = drop_last
        self.epoch = 0
        indexes = [record_offsets(f, index_cache, strict=on_corrupt == "raise") for f in self.files]
        self.offsets = [offsets for offsets, _ in indexes]
        self.counts = [len(o) for o in self.offsets]
        # Files whose framing breaks (on_corrupt=skip): only the records before the break are read.
        self.broken_files = {
            f: str(error) for f, (_, error) in zip(self.files, indexes, strict=True) if error
        }
        self.skip_counter = skip_counter

    # -- placement ---------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Training reshuffles per epoch; call before iterating (the DataModule does)."""
        self.epoch = epoch

    def _placement(self) -> tuple[int, int]:
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            initialized = dist.is_available() and dist.is_initialized()
            rank = dist.get_rank() if initialized else 0
            world = dist.get_world_size() if initialized else 1
        return rank, world

    def _file_order(self) -> list[int]:
        order = list(range(len(self.files)))
        if self.train and self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        return order

    def _ranges(self, rank: int, world: int, worker: int) -> list[tuple[int, int, int]]:
        workers = max(self.num_workers, 1)
        return plan_ranges(
            self.counts,
            self._file_order(),
            rank * workers + worker,
            world * workers,
            self.train and world > 1,
        )

    @property
    def num_records(self) -> int:
        """Records this rank reads per epoch."""
        rank, world = self._placement()
        return sum(
            hi - lo
            for w in range(max(self.num_workers, 1))
            for _, lo, hi in self._ranges(rank, world, w)
        )

    def __len__(self) -> int:
        """Batches this rank yields per epoch (exact; unknown in segment mode)."""
        if self.mode == "segment":
            raise TypeError("the number of segment batches is not known before reading")
        rank, world = self._placement()
        total = 0
        for w in range(max(self.num_workers, 1)):
            n = sum(hi - lo for _, lo, hi in self._ranges(rank, world, w))
            total += n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return total

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        if info is not None and info.num_workers != max(self.num_workers, 1):
            raise RuntimeError(
                f"YT8MDataset was built for num_workers={self.num_workers} but the DataLoader runs "
                f"{info.num_workers}: pass the same number to both"
            )
        rank, world = self._placement()
        consumer = rank * max(self.num_workers, 1) + worker
        samples = self._samples(self._ranges(rank, world, worker))
        if self.train and self.shuffle and self.shuffle_buffer > 1:
            samples = _shuffled(
                samples,
                self.shuffle_buffer,
                np.random.default_rng([self.seed, self.epoch, consumer, 1]),
            )
        pending: list = []
        for sample in samples:
            pending.append(sample)
            if len(pending) == self.batch_size:
                yield self._collate(pending)
                pending = []
        if pending and not self.drop_last:
            yield self._collate(pending)

    def _collate(self, samples: list) -> dict:
        if self.mode == "frame" and self.teacher_sampler is not None:
            batch = collate_frames([s for s, _ in samples], self.num_classes, self.frames_per_video)
            teacher = collate_frames(
                [t for _, t in samples], self.num_classes, self.teacher_frames_per_video
            )
            for key in ("frames", "mask", "num_frames"):
                batch[f"teacher_{key}"] = teacher[key]
            return batch
        if self.mode == "frame":
            return collate_frames(samples, self.num_classes, self.frames_per_video)
        if self.mode == "segment":
            return collate_segments(samples, self.num_classes)
        return collate_videos(samples, self.num_classes)

    def _samples(self, ranges: list[tuple[int, int, int]]) -> Iterator:
        skipped = 0

        def skip(error: CorruptRecordError) -> None:
            nonlocal skipped
            skipped += 1
            log.warning("on_corrupt=skip: skipping %s", error)
            if self.skip_counter is not None:
                with self.skip_counter.get_lock():
                    self.skip_counter.value += 1

        on_bad_payload = skip if self.on_corrupt == "skip" else None
        views = self._views() if self.teacher_sampler is not None else None
        selector = None
        if self.mode == "frame":
            # With two views the record is decoded once, up to max_frames, and each view picks
            # its rows from it.
            selector = self._selector(AllFrames() if views else self.sampler)
        decoder = RecordDecoder(self.mode, self.num_classes, selector)
        for file_index, start, stop in ranges:
            path = self.files[file_index]
            first = int(self.offsets[file_index][start])
            for index, offset, payload in iter_payloads(path, first, start, stop, on_bad_payload):
                try:
                    record = decoder.decode(payload)
                except _InvalidPayload as e:
                    error = CorruptRecordError(path, index, offset, str(e))
                    if on_bad_payload is None:
                        raise error from None
                    skip(error)
                    continue
                if self.mode == "segment":
                    yield from segment_samples(record)
                elif views is not None:
                    yield views(record)
                else:
                    yield record
        if skipped:
            files = ", ".join(sorted({self.files[f] for f, _, _ in ranges}))
            log.warning("on_corrupt=skip: %d records skipped in this pass over %s", skipped, files)

    def _views(self) -> Callable[[FrameRecord], tuple[FrameRecord, FrameRecord]]:
        """(student, teacher) records from a record decoded up to ``max_frames``."""
        student, teacher = self._selector(self.sampler), self._selector(self.teacher_sampler)

        def pick(record: FrameRecord, indices: np.ndarray) -> FrameRecord:
            if len(indices) == len(record.frame_indices):
                return record
            return FrameRecord(
                record.id,
                record.labels,
                record.rgb[indices],
                record.audio[indices],
                record.num_frames,
                indices,
            )

        def views(record: FrameRecord) -> tuple[FrameRecord, FrameRecord]:
            n = len(record.frame_indices)
            return pick(record, student(n, record.id)), pick(record, teacher(n, record.id))

        return views

    def _selector(self, sampler: FrameSampler) -> Callable[[int, str], np.ndarray]:
        max_frames, seed = self.max_frames, self.seed
        epoch = self.epoch if self.train else None

        if not sampler.is_random:
            # Deterministic picks depend on the length only: computed once per length and
            # shared, so read-only.
            @functools.cache
            def picks(n: int) -> np.ndarray:
                indices = sampler(n)
                indices.setflags(write=False)
                return indices

            return lambda n, video_id: picks(min(n, max_frames))

        def select(n: int, video_id: str) -> np.ndarray:
            return sampler(min(n, max_frames), video_rng(seed, video_id, epoch))

        return select


def _shuffled(items: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """Bounded shuffle: keep ``size`` items, emit a random one for each new arrival."""
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer
