"""The streaming YouTube-8M dataset: batches read once per epoch across all workers and ranks.

Every record is read exactly once per epoch across all DataLoader workers of all DDP ranks: the
global record sequence (files in a per-epoch shuffled order in training, then records in file
order) is cut into one contiguous range per consumer (see :mod:`vidistill.data.sharding`). In
training under DDP the ranges are made equal, dropping at most ``consumers - 1`` records per
epoch (a different few each epoch), so that every rank runs the same number of steps;
evaluation keeps every record.

Batches are collated inside the workers (the DataLoader gets ``batch_size=None``), which keeps
``len(dataloader)`` exact. Frames stay uint8 through collation (see
:mod:`vidistill.data.batching`).

Resuming mid-epoch: an epoch's stream is a function of (seed, epoch, placement), so a position in
it is the number of batches each reader (DataLoader worker) of this rank has delivered. Given it
(:meth:`YT8MDataset.set_epoch`), each reader continues with its next batch exactly as the
uninterrupted pass would have made it. In frame and video mode with ``on_corrupt="raise"`` the
records before the position are not read at all; only those still held in the shuffle buffer are
read again (see :mod:`vidistill.data.shuffling`). In segment mode and with ``on_corrupt="skip"``
how many samples a record gives is known only after decoding it, so the stream before the position
is read again and dropped without being collated.
"""

from __future__ import annotations

import functools
import itertools
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from vidistill.data.batching import (
    collate_frame_views,
    collate_frames,
    collate_segments,
    collate_videos,
    segment_samples,
)
from vidistill.data.frames import FrameSelection
from vidistill.data.framing import CorruptRecordError, iter_payloads
from vidistill.data.records import SCHEMAS, FrameRecord, RecordDecoder
from vidistill.data.samplers import AllFrames, FrameSampler, video_rng
from vidistill.data.sharding import expand_files, plan_ranges, record_offsets
from vidistill.data.shards import compression_of
from vidistill.data.shuffling import (
    advance_shuffle,
    position_count,
    ranges_of,
    shuffled,
    slice_ranges,
)

log = logging.getLogger(__name__)

ON_CORRUPT = ("raise", "skip")
# The key under which a batch names the reader (DataLoader worker) that made it, when the
# dataset's ``tag_batches`` is set: a loader counts each reader's batches by it (and removes it).
READER_KEY = "_reader"
# The default frame selection: every frame of a video's first MAX_FRAMES.
EVERY_FRAME = FrameSelection()


def check_views(student: FrameSelection, teacher: FrameSelection) -> int:
    """The teacher's frames per video. ValueError if the two views differ in ``max_frames`` or
    ``seed`` (both pick from one decode of each record) or the student could see more frames
    than the teacher (a student k larger than the teacher's frames)."""
    if (student.max_frames, student.seed) != (teacher.max_frames, teacher.seed):
        raise ValueError(
            f"the teacher's view ({teacher}) must have the student's max_frames and seed "
            f"({student})"
        )
    student_frames = student.frames_per_video
    teacher_frames = teacher.frames_per_video
    if student_frames > teacher_frames:
        raise ValueError(
            f"the student sees up to {student_frames} frames per video "
            f"({student.build_sampler()!r}) but the teacher only {teacher_frames} "
            f"({teacher.build_sampler()!r}): the student's k must not exceed the teacher's frames"
        )
    return teacher_frames


def _check_settings(mode: str, on_corrupt: str, num_classes: int, batch_size: int) -> None:
    """ValueError for a dataset setting outside its allowed values."""
    if mode not in SCHEMAS:
        raise ValueError(f"unknown data mode {mode!r}; choose one of {', '.join(SCHEMAS)}")
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {', '.join(ON_CORRUPT)}, got {on_corrupt!r}")
    if num_classes <= 0 or batch_size <= 0:
        raise ValueError("num_classes and batch_size must be positive")


class YT8MDataset(IterableDataset):
    """Batches from YT8M TFRecord shards, split across workers and DDP ranks.

    Args:
        files: shard paths or glob patterns.
        num_classes: size of the label vocabulary; labels outside it are input errors.
        mode: the files' schema, which decides the samples: ``"frame"`` (videos, frames
            picked by ``frames``), ``"segment"`` (2019 rated segments of SEGMENT_LENGTH
            frames), or ``"video"`` (video-level mean features).
        batch_size: videos (or segments) per batch.
        frames: which frames of each video a batch holds (every frame of the first
            ``max_frames``, the official reader's MAX_FRAMES, by default; segment and video
            modes use only its ``max_frames``). Its ``seed`` also seeds the shuffling.
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
        teacher_frames: in frame mode, also deliver a teacher's view of every video
            (``teacher_frames``, ``teacher_mask``, ``teacher_num_frames``), for teacher-student
            training; it has the same ``max_frames`` and ``seed`` as ``frames``. Both views
            come from one decode of the record.
        skip_counter: a ``multiprocessing.Value`` every record skipped under ``on_corrupt=skip``
            is added to, in whichever worker process reads it (for a caller's summary).
        compression: ``"gzip"`` reads every shard as a gzip-compressed TFRecord; None (the
            default) only those whose path ends in ``.gz`` (see :mod:`vidistill.data.shards`).

    Attributes:
        tag_batches: add :data:`READER_KEY` (the reader's index, an int) to every batch, for a
            loader that keeps a resumable position (:class:`vidistill.data.loader.EpochLoader`).
    """

    def __init__(
        self,
        files: str | Sequence[str],
        num_classes: int,
        mode: str = "frame",
        batch_size: int = 32,
        frames: FrameSelection = EVERY_FRAME,
        train: bool = False,
        shuffle_buffer: int = 1024,
        shuffle: bool = True,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        on_corrupt: str = "raise",
        drop_last: bool = False,
        index_cache: str | Path | None = None,
        teacher_frames: FrameSelection | None = None,
        skip_counter: Any = None,
        compression: str | None = None,
    ):
        super().__init__()
        _check_settings(mode, on_corrupt, num_classes, batch_size)
        self.compression = compression_of("", compression)
        self.files = expand_files(files)
        self.num_classes = num_classes
        self.mode = mode
        self.batch_size = batch_size
        self.frames = frames
        self._build_samplers(teacher_frames)
        self.train = train
        self.shuffle_buffer = shuffle_buffer
        self.shuffle = shuffle
        self.num_workers = num_workers
        self.rank = rank
        self.world_size = world_size
        self.on_corrupt = on_corrupt
        self.drop_last = drop_last
        self.epoch = 0
        self.resume: list[int] | None = None
        self.first_reader = 0
        # What set_epoch sets, in shared memory for persistent workers (share_pass_state).
        self._shared_pass: torch.Tensor | None = None
        self.tag_batches = False
        self._index_files(index_cache)
        self.skip_counter = skip_counter

    def _build_samplers(self, teacher_frames: FrameSelection | None) -> None:
        """The student's frame sampler and, for teacher-student training, the teacher's."""
        frame_mode = self.mode == "frame"
        self.sampler = self.frames.build_sampler() if frame_mode else AllFrames()
        self.frames_per_video = self.sampler.output_frames(self.frames.max_frames)
        self.teacher_sampler = None
        if teacher_frames is not None:
            if not frame_mode:
                raise ValueError(f"a teacher view needs frame mode, not mode={self.mode!r}")
            self.teacher_frames_per_video = check_views(self.frames, teacher_frames)
            self.teacher_sampler = teacher_frames.build_sampler()

    def _index_files(self, index_cache: str | Path | None) -> None:
        """Every file's record offsets and counts, and which files' framing breaks."""
        strict = self.on_corrupt == "raise"
        indexes = [
            record_offsets(f, index_cache, strict=strict, compression=self.compression)
            for f in self.files
        ]
        self.offsets = [offsets for offsets, _ in indexes]
        self.counts = [len(o) for o in self.offsets]
        # Files whose framing breaks (on_corrupt=skip): only the records before the break are read.
        self.broken_files = {
            f: str(error) for f, (_, error) in zip(self.files, indexes, strict=True) if error
        }

    # -- placement ---------------------------------------------------------------------------

    def set_epoch(
        self, epoch: int, resume: Sequence[int] | None = None, first_reader: int = 0
    ) -> None:
        """Training reshuffles per epoch; call before iterating (the DataModule does).

        ``resume``: batches each reader of this rank (``readers`` of them) already delivered in
        this epoch; the next pass starts each reader at its next batch. None: from the epoch's
        start. ``first_reader``: the reader DataLoader worker 0 plays (worker ``w`` plays
        ``(first_reader + w) % readers``). The DataLoader takes batches from its workers in
        turn starting with worker 0, so a pass resumed where reader ``r`` was next starts
        with reader ``r`` and then keeps the uninterrupted pass's order."""
        if resume is not None and len(resume) != self.readers:
            raise ValueError(f"resume has {len(resume)} readers' positions, not {self.readers}")
        self.epoch = epoch
        self.resume = [int(batches) for batches in resume] if resume is not None else None
        self.first_reader = int(first_reader) % self.readers
        if self._shared_pass is not None:
            saved = self.resume is not None
            values = [self.epoch, saved, self.first_reader, *(self.resume or [0] * self.readers)]
            self._shared_pass.copy_(torch.tensor(values))

    def share_pass_state(self) -> None:
        """Keep what :meth:`set_epoch` sets in shared memory too (int64 [3 + readers]): a
        persistent DataLoader worker keeps the copy of the dataset it started with, so it reads
        every pass's epoch, resume position and first reader from there."""
        if self._shared_pass is None:
            self._shared_pass = torch.zeros(3 + self.readers, dtype=torch.int64).share_memory_()
            self.set_epoch(self.epoch, self.resume, self.first_reader)

    def placement(self) -> tuple[int, int]:
        """(rank, world size): as given, else from ``torch.distributed`` (0, 1 outside DDP)."""
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            initialized = dist.is_available() and dist.is_initialized()
            rank = dist.get_rank() if initialized else 0
            world = dist.get_world_size() if initialized else 1
        return rank, world

    def _file_order(self) -> list[int]:
        order = list(range(len(self.files)))
        if self.train and self.shuffle:
            np.random.default_rng([self.frames.seed, self.epoch]).shuffle(order)
        return order

    @property
    def readers(self) -> int:
        """Readers per rank: a DataLoader without workers reads in the main process."""
        return max(self.num_workers, 1)

    def _ranges(self, rank: int, world: int, worker: int) -> list[tuple[int, int, int]]:
        return plan_ranges(
            self.counts,
            self._file_order(),
            rank * self.readers + worker,
            world * self.readers,
            self.train and world > 1,
        )

    def _records_per_worker(self) -> list[int]:
        """Records each worker of this rank reads per epoch."""
        rank, world = self.placement()
        return [
            sum(hi - lo for _, lo, hi in self._ranges(rank, world, worker))
            for worker in range(self.readers)
        ]

    @property
    def num_records(self) -> int:
        """Records this rank reads per epoch."""
        return sum(self._records_per_worker())

    def __len__(self) -> int:
        """Batches this rank yields per epoch (exact; unknown in segment mode)."""
        if self.mode == "segment":
            raise TypeError("the number of segment batches is not known before reading")
        if self.drop_last:
            return sum(n // self.batch_size for n in self._records_per_worker())
        return sum(-(-n // self.batch_size) for n in self._records_per_worker())

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        if info is not None and info.num_workers != self.readers:
            raise RuntimeError(
                f"YT8MDataset was built for num_workers={self.num_workers} but the DataLoader runs "
                f"{info.num_workers}: pass the same number to both"
            )
        if info is not None:
            _ignore_stop_signals()
            if self._shared_pass is not None:  # this pass's state, set in the main process
                self.epoch, saved, self.first_reader, *resume = self._shared_pass.tolist()
                self.resume = resume if saved else None
        # The reader this process plays: its share of the records and its place in the order.
        reader = (self.first_reader + (0 if info is None else info.id)) % self.readers
        rank, world = self.placement()
        consumer = rank * self.readers + reader
        skip = self.resume[reader] * self.batch_size if self.resume is not None else 0
        pending: list = []
        for sample in self._stream(self._ranges(rank, world, reader), consumer, skip):
            pending.append(sample)
            if len(pending) == self.batch_size:
                yield self._batch(pending, reader)
                pending = []
        if pending and not self.drop_last:
            yield self._batch(pending, reader)

    def _batch(self, samples: list, reader: int) -> dict:
        batch = self._collate(samples)
        if self.tag_batches:
            batch[READER_KEY] = reader
        return batch

    def _shuffle_rng(self, consumer: int) -> np.random.Generator | None:
        """The shuffle buffer's generator, None when training batches are not shuffled."""
        if not (self.train and self.shuffle and self.shuffle_buffer > 1):
            return None
        # Seeded per consumer and epoch, so that a run repeats; the trailing 1 keeps this stream
        # apart from the file order's, seeded with [seed, epoch].
        return np.random.default_rng([self.frames.seed, self.epoch, consumer, 1])

    def _stream(self, ranges: list[tuple[int, int, int]], consumer: int, skip: int) -> Iterator:
        """This reader's samples in delivery order, from the ``skip``-th on."""
        rng = self._shuffle_rng(consumer)
        if skip and self.mode != "segment" and self.on_corrupt == "raise":
            return self._skip_records(ranges, rng, skip)
        samples = self._samples(ranges)
        if rng is not None:
            samples = shuffled(samples, self.shuffle_buffer, rng)
        # A segment record gives a number of samples known only once decoded, and a skipped bad
        # record none: the samples before the position are made again and dropped.
        return itertools.islice(samples, skip, None)

    def _skip_records(
        self, ranges: list[tuple[int, int, int]], rng: np.random.Generator | None, skip: int
    ) -> Iterator:
        """The samples after the first ``skip``, one per record: the records delivered before are
        not read; those the shuffle buffer still held are read again, by position."""
        total = position_count(ranges)
        if rng is None:
            return self._samples(slice_ranges(ranges, skip, total))
        state = advance_shuffle(total, self.shuffle_buffer, rng, skip)
        held = self._read_positions(ranges, state.held)
        log.info(
            "epoch %d: a reader resumes after its first %d records (not read again); the %d its "
            "shuffle buffer held are read again",
            self.epoch,
            skip,
            len(held),
        )
        if state.draining:
            return iter(held)
        rest = self._samples(slice_ranges(ranges, state.next_position, total))
        return shuffled(rest, self.shuffle_buffer, rng, held)

    def _read_positions(self, ranges: list[tuple[int, int, int]], positions: list[int]) -> list:
        """The samples of the records at ``positions`` of ``ranges`` (one each), in that order;
        consecutive positions are read in one sequential pass."""
        wanted = sorted(positions)
        decoded = dict(zip(wanted, self._samples(ranges_of(ranges, wanted)), strict=True))
        return [decoded[position] for position in positions]

    def _collate(self, samples: list) -> dict:
        if self.mode == "frame" and self.teacher_sampler is not None:
            return collate_frame_views(
                samples, self.num_classes, self.frames_per_video, self.teacher_frames_per_video
            )
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
            payloads = iter_payloads(path, first, start, stop, on_bad_payload, self.compression)
            for index, offset, payload in payloads:
                try:
                    record = decoder.decode_record(path, index, offset, payload)
                except CorruptRecordError as error:
                    if on_bad_payload is None:
                        raise
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
        max_frames, seed = self.frames.max_frames, self.frames.seed
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


def _ignore_stop_signals() -> None:
    """In a DataLoader worker, ignore the signals a cluster stops a job with. It sends them to
    every process of the job: the main process saves a checkpoint and stops, shutting its
    workers down (they also exit when it dies), but a worker the signal ended first would make
    the main process fail before it could save."""
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
