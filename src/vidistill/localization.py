"""Temporal concept localization, the MOD paper's three phases (2019 YouTube-8M challenge).

1. **Candidates.** The video-level model scores each whole video; its ``top_candidates`` (20)
   most probable classes are the video's candidates. On rated data the *candidate recall* is the
   share of positively rated (video, class) pairs whose class is among the video's candidates
   (the paper reports 97%). Candidates are taken over the whole vocabulary, as in the paper; the
   segment whitelist applies afterwards.
2. **Segment scores.** The segment model scores every 5-frame segment of the video, frames
   ``[0, 5), [5, 10), ...``. The last segment of a video whose length is not a multiple of 5 has
   fewer frames. The paper zero-pads it; here its padding frames are 0.0 *and masked out*, which
   is how segment finetuning batches present a short segment (only existing frames valid), so the
   segment model sees the last segment as it saw such segments in training.
3. **Combination.** Each candidate (segment, class) pair of a whitelisted class scores
   ``P_video ** a * P_segment ** b`` (a = 0.05, b = 0.95 in the paper). ``a = 1, b = 0`` gives
   every segment its video's score (the "video scores only" baseline: the segment model is then
   not run at all); ``a = 0, b = 1`` ranks by the segment model alone.
4. **Top K per class.** Each whitelisted class keeps its K (100,000) best segments, in a
   :class:`ClassTopK` buffer, and the lists form the ``Class,Segments`` submission.

Memory is bounded: scores never form a videos x segments x classes array. A batch of videos
yields ``[segments, candidates]`` scores, which go straight into the per-class buffers; a buffer
holds at most ``2 K`` entries of 12 bytes (float32 score, int64 key) before it is pruned back to
K, so 1000 classes at K = 100,000 stay under 2.4 GB in the worst case.

Ranking and ties, deterministic: score descending, then segment id ascending, where segment ids
compare as (video id, start frame) with the start compared as a number. The rule does not
involve the reading order, so equal scores rank the same whatever the batching, the worker count
or the order of the input files. Candidate classes of equal video probability are taken in class
index order.

Which frames each model sees: the data are read once, all frames of every video (up to
``data.max_frames``, by default the video model's). The video model's own frame selection
(``sampler``, ``k``, ``stride``, ``max_frames``, ``seed`` stored in its checkpoint) is applied to
those frames here (:class:`VideoFrames`), giving exactly the frames its evaluation would give, so
a k-frame student sees its k frames; the segment model sees each 5-frame segment alone.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from tfrecord import example_pb2
from torch import nn

from vidistill.checkpoints import load_model
from vidistill.data.records import SEGMENT_LENGTH, CorruptRecordError, iter_payloads
from vidistill.data.samplers import AllFrames, FrameSampler, build_sampler, video_rng
from vidistill.metrics.segments import read_segment_ratings, segment_map_at_k, write_submission_csv
from vidistill.predict import check_output
from vidistill.runner import METRICS_FILE, build_datamodule, config_record, format_metrics

log = logging.getLogger(__name__)

SUBMISSION_FILE = "submission.csv"
WHITELIST_FILE = "segment_label_ids.csv"

# A segment's key packs (video number in reading order, segment number in the video) into one
# int64, so buffers hold plain integer arrays: 2^24 segments per video is far beyond 300 frames.
SEGMENT_BITS = 24
_SEGMENT_MASK = (1 << SEGMENT_BITS) - 1

# What a video id may be in a submission's segment ids ("video_id:start" separated by spaces).
_VIDEO_ID = re.compile(r"[^\s,:]+")


# --------------------------------------------------------------------------------------------
# Segments and scores
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segments:
    """The 5-frame segments of a batch of videos, segments with at least one frame only.

    Attributes:
        frames: float [N, 5, D]; frames past the end of a video are 0.0 (the batch's padding).
        mask: bool [N, 5], True for the frames the video has.
        video: int64 [N], the batch row each segment comes from.
        number: int64 [N], the segment's position in its video (start frame = 5 * number).
    """

    frames: torch.Tensor
    mask: torch.Tensor
    video: torch.Tensor
    number: torch.Tensor


def segment_index(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which segments exist: ``(video [N], number [N])`` for a frame mask [B, T] whose valid
    frames come first; a video of n frames has ``ceil(n / 5)`` segments, in order."""
    lengths = mask.sum(1)
    count = (lengths + SEGMENT_LENGTH - 1) // SEGMENT_LENGTH
    width = -(-mask.shape[1] // SEGMENT_LENGTH)
    present = torch.arange(width, device=mask.device) < count[:, None]  # [B, S]
    video, number = present.nonzero(as_tuple=True)
    return video, number


def segments_of(frames: torch.Tensor, mask: torch.Tensor) -> Segments:
    """Cut a batch (frames [B, T, D], mask [B, T], valid frames first) into its segments.

    A short last segment keeps only its real frames valid in the mask (its padding is 0.0),
    as segment-mode batches present a video's last segment; a video shorter than 5 frames gives
    one such segment.
    """
    batch, length, dim = frames.shape
    width = -(-length // SEGMENT_LENGTH)
    pad = width * SEGMENT_LENGTH - length
    if pad:
        frames = torch.nn.functional.pad(frames, (0, 0, 0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad))
    video, number = segment_index(mask)
    by_segment = frames.reshape(batch, width, SEGMENT_LENGTH, dim)
    return Segments(
        frames=by_segment[video, number],
        mask=mask.reshape(batch, width, SEGMENT_LENGTH)[video, number],
        video=video,
        number=number,
    )


def combine_scores(
    p_video: torch.Tensor,
    p_segment: torch.Tensor | None,
    video_exponent: float,
    segment_exponent: float,
) -> torch.Tensor:
    """``p_video ** a * p_segment ** b`` elementwise (shapes broadcast).

    ``p_segment`` may be None when ``segment_exponent`` is 0: the result is then ``p_video ** a``
    (``p_video`` itself for a = 1).
    """
    if segment_exponent == 0:
        return p_video.pow(video_exponent)
    if p_segment is None:
        raise ValueError(f"segment_exponent={segment_exponent} needs segment probabilities")
    return p_video.pow(video_exponent) * p_segment.pow(segment_exponent)


def candidate_classes(p_video: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``top`` most probable classes of each video: ``(classes int64 [B, m], probabilities
    [B, m])`` best first, ``m = min(top, C)``; equal probabilities in class index order."""
    order = torch.sort(p_video, dim=1, descending=True, stable=True)
    m = min(top, p_video.shape[1])
    return order.indices[:, :m], order.values[:, :m]


def candidate_hits(
    ids: Sequence[str], classes: torch.Tensor, positives: Mapping[str, set[int]]
) -> int:
    """How many positively rated (video, class) pairs have their class among the video's
    candidates (``classes`` [B, m] for the videos ``ids``)."""
    hits = 0
    for video_id, candidates in zip(ids, classes.tolist(), strict=True):
        rated = positives.get(video_id)
        if rated:
            hits += len(rated.intersection(candidates))
    return hits


# --------------------------------------------------------------------------------------------
# Per-class top K
# --------------------------------------------------------------------------------------------


def _key_order(keys: np.ndarray) -> np.ndarray:
    return np.argsort(keys, kind="stable")


class ClassTopK:
    """The K best (score, key) entries seen for one class, in bounded memory.

    Entries rank by score descending, ties by ``order``: a function mapping keys int64 [n] to
    the permutation that sorts them, first = best (default: smaller key first). Added entries
    are held as float32 scores and int64 keys; once more than ``capacity`` (default 2 K) are
    held, the buffer is cut back to its best K with ``np.argpartition``, so ``len()`` never
    exceeds ``capacity`` after an ``add``. Keys must be unique.
    """

    def __init__(
        self,
        k: int,
        capacity: int | None = None,
        order: Callable[[np.ndarray], np.ndarray] = _key_order,
    ):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.capacity = 2 * k if capacity is None else capacity
        if self.capacity < k:
            raise ValueError(f"capacity={self.capacity} is smaller than k={k}")
        self.order = order
        # Chunks as added: concatenated only when pruning or ranking, so an add costs no copy.
        self._scores: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, scores: np.ndarray, keys: np.ndarray) -> None:
        """Offer entries: scores float [n] (no NaN), keys int64 [n]."""
        scores = np.asarray(scores, dtype=np.float32).ravel()
        keys = np.asarray(keys, dtype=np.int64).ravel()
        if scores.shape != keys.shape:
            raise ValueError(f"{scores.size} scores but {keys.size} keys")
        if np.isnan(scores).any():
            raise ValueError("scores contain NaN, which has no place in a ranking")
        if not scores.size:
            return
        self._scores.append(scores)
        self._keys.append(keys)
        self._size += scores.size
        if self._size > self.capacity:
            self._prune()

    def ranked(self) -> tuple[np.ndarray, np.ndarray]:
        """The best ``min(K, entries)`` as (scores float32 [n], keys int64 [n]), best first."""
        if self._size > self.k:
            self._prune()
        scores, keys = self._merged()
        by_score = np.sort(scores)
        if by_score.size > 1 and np.any(by_score[1:] == by_score[:-1]):
            rank = np.empty(keys.size, np.int64)
            rank[self.order(keys)] = np.arange(keys.size)
            best = np.lexsort((rank, -scores))
        else:
            best = np.argsort(-scores)
        return scores[best], keys[best]

    def _merged(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self._scores) != 1:
            self._scores = [np.concatenate(self._scores or [np.zeros(0, np.float32)])]
            self._keys = [np.concatenate(self._keys or [np.zeros(0, np.int64)])]
        return self._scores[0], self._keys[0]

    def _prune(self) -> None:
        """Keep the best K: every entry above the K-th best score, then as many of the entries
        tied with it as fit, chosen by ``order``."""
        scores, keys = self._merged()
        cut = scores.size - self.k
        threshold = scores[np.argpartition(scores, cut)[cut]]  # the K-th best score
        above = np.flatnonzero(scores > threshold)
        tied = np.flatnonzero(scores == threshold)
        room = self.k - above.size
        if tied.size > room:
            tied = tied[self.order(keys[tied])[:room]]
        keep = np.concatenate([above, tied])
        self._scores, self._keys = [scores[keep]], [keys[keep]]
        self._size = keep.size


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoFrames:
    """The frames the video-level model was trained on, picked from all-frames batches.

    Applies the checkpoint's frame selection exactly as the data layer does at evaluation: the
    sampler over ``min(n, max_frames)`` frames, random samplers seeded by (seed, video id), and
    the selection padded to the sampler's fixed width.
    """

    sampler: FrameSampler
    max_frames: int
    seed: int

    @classmethod
    def from_checkpoint(cls, data: Mapping[str, Any]) -> VideoFrames:
        """From a checkpoint's ``info["data"]`` (see :func:`vidistill.checkpoints.load_model`)."""
        sampler = build_sampler(data["sampler"], data.get("k"), data.get("stride"))
        return cls(sampler, int(data["max_frames"]), int(data["seed"]))

    def __call__(
        self, frames: torch.Tensor, mask: torch.Tensor, ids: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, T, D], mask [B, T] (valid first) -> the model's view [B, W, D], [B, W]."""
        width = self.sampler.output_frames(self.max_frames)
        if isinstance(self.sampler, AllFrames) and frames.shape[1] == width:
            return frames, mask  # every frame, already padded to the model's width
        batch = frames.shape[0]
        index = torch.zeros(batch, width, dtype=torch.long)
        valid = torch.zeros(batch, width, dtype=torch.bool)
        for row, (n, video_id) in enumerate(zip(mask.sum(1).tolist(), ids, strict=True)):
            rng = video_rng(self.seed, video_id) if self.sampler.is_random else None
            picks = torch.from_numpy(self.sampler(min(n, self.max_frames), rng))
            index[row, : len(picks)] = picks
            valid[row, : len(picks)] = True
        index, valid = index.to(frames.device), valid.to(frames.device)
        rows = torch.arange(batch, device=frames.device)[:, None]
        return frames[rows, index].masked_fill_(~valid.unsqueeze(-1), 0.0), valid


@dataclass(frozen=True)
class LocalizationSettings:
    """The knobs of the pipeline, checked on construction.

    Attributes:
        top_candidates: candidate classes per video (phase 1).
        video_exponent, segment_exponent: a and b of ``P_video ** a * P_segment ** b``.
        segments_per_class: K, the segments kept per class.
        segment_batch_size: segments per forward pass of the segment model.
    """

    top_candidates: int = 20
    video_exponent: float = 0.05
    segment_exponent: float = 0.95
    segments_per_class: int = 100_000
    segment_batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.top_candidates < 1:
            raise ValueError(
                f"top_candidates={self.top_candidates}: at least one candidate class per video "
                "is needed, else no segment is scored"
            )
        for name in ("video_exponent", "segment_exponent"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value}: expected a finite number >= 0")
        if self.video_exponent == 0 and self.segment_exponent == 0:
            raise ValueError(
                "video_exponent and segment_exponent are both 0: every score would be 1"
            )
        if self.segments_per_class < 1:
            raise ValueError(f"segments_per_class={self.segments_per_class}: expected K >= 1")
        if self.segment_batch_size < 1:
            raise ValueError(f"segment_batch_size={self.segment_batch_size}: expected >= 1")

    @property
    def uses_segment_model(self) -> bool:
        return self.segment_exponent > 0


@dataclass
class LocalizationResult:
    """What :func:`localize` found.

    Attributes:
        submission: class -> segment ids ``video_id:start`` best first, whitelisted classes with
            at least one entry, in class order.
        counts: ``videos``, ``segments`` (scored), ``candidate_pairs`` ((segment, class) pairs
            ranked: segments x whitelisted candidates), ``classes_with_entries``.
        candidate_recall: phase 1 recall on the given positives (None without any).
    """

    submission: dict[int, list[str]]
    counts: dict[str, int]
    candidate_recall: float | None = None


@dataclass
class _VideoTable:
    """Video ids in reading order, for segment keys and their tie order."""

    ids: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def register(self, ids: Sequence[str]) -> int:
        """Append a batch's ids (unique, usable in segment ids); returns the first's number."""
        for video_id in ids:
            if video_id in self.seen:
                raise ValueError(
                    f"video {video_id!r} appears twice in the input: its segment ids would repeat"
                )
            if not _VIDEO_ID.fullmatch(video_id):
                raise ValueError(
                    f"video id {video_id!r} cannot go into a segment id 'video_id:start' (it is "
                    "empty or has whitespace, ',' or ':')"
                )
            self.seen.add(video_id)
        first = len(self.ids)
        self.ids.extend(ids)
        return first

    def order(self, keys: np.ndarray) -> np.ndarray:
        """Permutation sorting segment keys by (video id, segment number)."""
        video_ids = np.array([self.ids[v] for v in (keys >> SEGMENT_BITS).tolist()], dtype=str)
        return np.lexsort((keys & _SEGMENT_MASK, video_ids))

    def segment_id(self, key: int) -> str:
        return f"{self.ids[key >> SEGMENT_BITS]}:{(key & _SEGMENT_MASK) * SEGMENT_LENGTH}"


def _segment_probabilities(
    model: nn.Module, segments: Segments, classes: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """The segment model's probabilities of each segment's candidate classes: [N, m] for
    ``classes`` int64 [N, m], ``batch_size`` segments per forward pass."""
    chunks = []
    for start in range(0, segments.video.numel(), batch_size):
        part = slice(start, start + batch_size)
        logits = model(segments.frames[part], segments.mask[part]).logits
        chunks.append(torch.sigmoid(logits).gather(1, classes[part]))
    return torch.cat(chunks) if chunks else classes.new_zeros(classes.shape, dtype=torch.float32)


def localize(
    batches: Iterable[dict],
    video_model: nn.Module,
    segment_model: nn.Module | None,
    whitelist: Sequence[int],
    settings: LocalizationSettings,
    video_frames: VideoFrames | None = None,
    positives: Mapping[str, set[int]] | None = None,
) -> LocalizationResult:
    """Run the three phases over ``batches`` and rank each whitelisted class's segments.

    Args:
        batches: dicts with float32 ``frames`` [B, T, D] (all frames, dequantized, padding 0.0),
            bool ``mask`` [B, T] (valid frames first) and ``ids`` (B video ids), on the models'
            device.
        video_model, segment_model: map (frames, mask) to an output with ``logits`` [., C];
            run in eval mode under ``torch.inference_mode``. ``segment_model`` may be None when
            ``settings.segment_exponent`` is 0 (it is not run then anyway).
        whitelist: the classes to rank segments for, each in [0, C).
        settings: see :class:`LocalizationSettings`.
        video_frames: the video model's frame selection; None = the batch's frames as they are.
        positives: video id -> positively rated classes, for the candidate recall.
    """
    if settings.uses_segment_model and segment_model is None:
        raise ValueError(
            f"segment_exponent={settings.segment_exponent} needs a segment model (0 ranks by "
            "video scores alone)"
        )
    classes = np.unique(np.asarray(whitelist, dtype=np.int64))
    if classes.size == 0:
        raise ValueError("the class whitelist is empty: no class to rank segments for")
    videos = _VideoTable()
    buffers = {int(c): ClassTopK(settings.segments_per_class, order=videos.order) for c in classes}
    counts = {"videos": 0, "segments": 0, "candidate_pairs": 0}
    hits = 0
    allowed: torch.Tensor | None = None
    video_model.eval()
    if settings.uses_segment_model:
        segment_model.eval()
    with torch.inference_mode():
        for batch in batches:
            frames, mask, ids = batch["frames"], batch["mask"], list(batch["ids"])
            first = videos.register(ids)
            view = video_frames(frames, mask, ids) if video_frames is not None else (frames, mask)
            p_video = torch.sigmoid(video_model(*view).logits)  # [B, C]
            if allowed is None:
                allowed = _allowed_classes(classes, p_video.shape[1], p_video.device)
            candidates, p_candidates = candidate_classes(p_video, settings.top_candidates)
            if positives is not None:
                hits += candidate_hits(ids, candidates, positives)

            if settings.uses_segment_model:
                segments = segments_of(frames, mask)
                video, number = segments.video, segments.number
                p_segment = _segment_probabilities(
                    segment_model, segments, candidates[video], settings.segment_batch_size
                )
            else:  # video scores only: segments are just positions, no frames are cut
                video, number = segment_index(mask)
                p_segment = None
            segment_classes = candidates[video]  # [N, m]
            scores = combine_scores(
                p_candidates[video],
                p_segment,
                settings.video_exponent,
                settings.segment_exponent,
            )
            keep = allowed[segment_classes]  # [N, m], whitelisted candidates
            keys = ((video + first) << SEGMENT_BITS) | number
            _offer(
                buffers,
                segment_classes[keep].cpu().numpy(),
                scores[keep].float().cpu().numpy(),
                keys[:, None].expand_as(keep)[keep].cpu().numpy(),
            )
            counts["videos"] += len(ids)
            counts["segments"] += int(video.numel())
            counts["candidate_pairs"] += int(keep.sum())
    submission = {}
    for c, buffer in buffers.items():
        _, keys = buffer.ranked()
        if keys.size:
            submission[c] = [videos.segment_id(key) for key in keys.tolist()]
    counts["classes_with_entries"] = len(submission)
    total = sum(len(rated) for rated in positives.values()) if positives is not None else 0
    recall = hits / total if total else None
    return LocalizationResult(submission, counts, recall)


def _allowed_classes(classes: np.ndarray, num_classes: int, device: torch.device) -> torch.Tensor:
    """bool [C], True on the whitelist; ValueError for a class outside the model's outputs."""
    if classes[0] < 0 or classes[-1] >= num_classes:
        outside = classes[(classes < 0) | (classes >= num_classes)].tolist()
        raise ValueError(
            f"whitelist classes {outside[:5]} are outside the models' {num_classes} classes"
        )
    allowed = torch.zeros(num_classes, dtype=torch.bool, device=device)
    allowed[torch.from_numpy(classes).to(device)] = True
    return allowed


def _offer(
    buffers: dict[int, ClassTopK], classes: np.ndarray, scores: np.ndarray, keys: np.ndarray
) -> None:
    """Hand (class [P], score [P], key [P]) entries to their classes' buffers."""
    if not classes.size:
        return
    order = np.argsort(classes, kind="stable")
    classes, scores, keys = classes[order], scores[order], keys[order]
    bounds = [*np.flatnonzero(np.r_[True, classes[1:] != classes[:-1]]).tolist(), classes.size]
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        buffers[int(classes[begin])].add(scores[begin:end], keys[begin:end])


# --------------------------------------------------------------------------------------------
# Inputs: whitelist and ratings
# --------------------------------------------------------------------------------------------


def read_whitelist(path: str | Path, num_classes: int) -> np.ndarray:
    """The class indices of a ``segment_label_ids.csv`` (header ``Index``, one index a line) as
    sorted int64 [S]; ValueError naming the file for anything else, an empty list or a class
    outside ``[0, num_classes)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"whitelist={path}: no such file")
    classes = []
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or (number == 1 and line == "Index"):
            continue
        if not (line.isascii() and line.isdigit()):
            raise ValueError(f"{path}: line {number}: {line!r} is not a class index")
        classes.append(int(line))
    if not classes:
        raise ValueError(f"{path}: no class index in the whitelist")
    outside = sorted({c for c in classes if c >= num_classes})
    if outside:
        raise ValueError(
            f"{path}: classes {outside[:5]} are outside the vocabulary of {num_classes} classes"
        )
    return np.unique(np.array(classes, dtype=np.int64))


def files_are_rated(files: Sequence[str]) -> bool:
    """Whether the files are 2019 segment-rated ones, judged by each file's first record
    (``segment_labels`` in its context); ValueError if some are and some are not."""
    rated = {}
    for path in files:
        for index, offset, payload in iter_payloads(path, stop_index=1):
            try:
                context = example_pb2.SequenceExample.FromString(bytes(payload)).context.feature
            except Exception as error:  # protobuf's DecodeError, whatever module it comes from
                raise CorruptRecordError(
                    path, index, offset, f"not a SequenceExample ({error})"
                ) from None
            rated[path] = "segment_labels" in context
    if len(set(rated.values())) > 1:
        unrated = [path for path, flag in rated.items() if not flag]
        raise ValueError(
            f"some input files carry segment ratings and {len(unrated)} do not (e.g. "
            f"{unrated[0]}): MAP@K needs the ratings of every file; pass evaluate=false to only "
            "write the submission"
        )
    return any(rated.values())


def positive_pairs(ratings: Iterable[tuple[str, int, float]]) -> dict[str, set[int]]:
    """video id -> classes rated positive in at least one of its segments."""
    positives: dict[str, set[int]] = {}
    for segment_id, label, score in ratings:
        if score > 0:
            positives.setdefault(segment_id.rpartition(":")[0], set()).add(label)
    return positives


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def run(cfg: DictConfig) -> dict[str, Any]:
    """``localize.py``: localize ``cfg.files`` with the models of ``cfg.video_ckpt`` and
    ``cfg.segment_ckpt``, write the submission CSV and ``metrics.json`` to the run directory.

    Every input is checked before scoring starts. On segment-rated files (``cfg.evaluate``:
    auto, true or false) the submission is scored with the 2019 MAP@K over the whitelisted
    classes. Returns the ``metrics.json`` record's ``metrics``.
    """
    settings = LocalizationSettings(
        top_candidates=cfg.top_candidates,
        video_exponent=cfg.video_exponent,
        segment_exponent=cfg.segment_exponent,
        segments_per_class=cfg.segments_per_class,
        segment_batch_size=cfg.segment_batch_size,
    )
    output = Path(cfg.get("output") or Path(cfg.paths.output_dir) / SUBMISSION_FILE)
    check_output(output, cfg.overwrite)
    device = _device(cfg.device)

    video_model, video_info = _load(cfg.video_ckpt, "video_ckpt")
    num_classes = video_info["data"]["num_classes"]
    segment_model = None
    if settings.uses_segment_model:
        if not cfg.get("segment_ckpt"):
            raise ValueError(
                f"segment_ckpt is needed for segment_exponent={settings.segment_exponent} "
                "(segment_exponent=0 ranks by the video model alone)"
            )
        segment_model, segment_info = _load(cfg.segment_ckpt, "segment_ckpt")
        if segment_info["data"]["num_classes"] != num_classes:
            raise ValueError(
                f"segment_ckpt={cfg.segment_ckpt} predicts {segment_info['data']['num_classes']} "
                f"classes but video_ckpt={cfg.video_ckpt} predicts {num_classes}"
            )
    elif cfg.get("segment_ckpt"):
        log.info("segment_exponent=0: segment_ckpt=%s is not used", cfg.segment_ckpt)

    datamodule = _datamodule(cfg, video_info)
    files = datamodule.datasets["predict"].files
    whitelist = read_whitelist(_whitelist_path(cfg, datamodule), num_classes)
    if cfg.evaluate not in ("auto", True, False):
        raise ValueError(f"evaluate={cfg.evaluate!r}: expected auto, true or false")
    rated = cfg.evaluate is not False and files_are_rated(files)
    if cfg.evaluate is True and not rated:
        raise ValueError(f"evaluate=true but {files[0]} carries no segment ratings")
    # Read before scoring: a bad rating stops the run before the models spend their time.
    ratings = list(read_segment_ratings(files, num_classes)) if rated else None

    video_model.to(device)
    if segment_model is not None:
        segment_model.to(device)
    result = localize(
        _batches_on(datamodule, device),
        video_model,
        segment_model,
        whitelist,
        settings,
        VideoFrames.from_checkpoint(video_info["data"]),
        positive_pairs(ratings) if ratings is not None else None,
    )
    write_submission_csv(output, result.submission, overwrite=cfg.overwrite)
    log.info("submission written to %s", output)

    metrics: dict[str, Any] = {}
    if ratings is not None:
        metrics["map_at_k"] = segment_map_at_k(
            result.submission, ratings, k=settings.segments_per_class, classes=whitelist.tolist()
        )
        metrics["candidate_recall"] = result.candidate_recall
    metrics.update(result.counts)
    record = {
        "metrics": metrics,
        "submission": str(output.resolve()),
        "video_checkpoint": str(Path(cfg.video_ckpt).resolve()),
        "segment_checkpoint": (
            str(Path(cfg.segment_ckpt).resolve()) if segment_model is not None else None
        ),
        "files": files,
        "config": config_record(cfg),
    }
    path = Path(cfg.paths.output_dir) / METRICS_FILE
    path.write_text(json.dumps(record, indent=2))
    log.info("metrics written to %s", path)
    print(format_metrics(metrics))
    return metrics


def _load(path: str, name: str) -> tuple[nn.Module, dict[str, Any]]:
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"{name}={path}: no such checkpoint file")
    model, info = load_model(path)
    if info["data"].get("mode") == "video":
        raise ValueError(
            f"{name}={path} was trained on video-level features (data.mode=video); "
            "localization feeds frames, so it needs a frame- or segment-level model"
        )
    return model, info


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}: expected auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but torch sees no CUDA device")
    return torch.device(name)


def _datamodule(cfg: DictConfig, video_info: Mapping[str, Any]) -> pl.LightningDataModule:
    """The input files as all-frames batches, truncated to ``data.max_frames`` (null: the video
    model's), checked against the video model's vocabulary size."""
    stored = video_info["data"]
    with open_dict(cfg):
        cfg.data.mode = "frame"
        cfg.data.sampler = "all"
        if cfg.data.get("max_frames") is None:
            cfg.data.max_frames = stored["max_frames"]
    datamodule = build_datamodule(cfg)
    if cfg.num_classes != stored["num_classes"]:
        raise ValueError(
            f"video_ckpt={cfg.video_ckpt} predicts {stored['num_classes']} classes but the "
            f"data's vocabulary has {cfg.num_classes}"
        )
    datamodule.setup("predict")
    return datamodule


def _whitelist_path(cfg: DictConfig, datamodule: pl.LightningDataModule) -> Path:
    if cfg.get("whitelist"):
        return Path(cfg.whitelist)
    directory = getattr(datamodule, "directory", None)
    if directory is None:
        raise ValueError(
            "whitelist=null needs data that ships its segment_label_ids.csv (data=synthetic); "
            "give whitelist=/path/to/segment_label_ids.csv"
        )
    return Path(directory) / WHITELIST_FILE


def _batches_on(datamodule: pl.LightningDataModule, device: torch.device) -> Iterator[dict]:
    """The prediction loader's batches moved to ``device`` and dequantized there."""
    for batch in datamodule.predict_dataloader():
        moved = {
            key: value.to(device) if torch.is_tensor(value) else value
            for key, value in batch.items()
        }
        yield datamodule.on_after_batch_transfer(moved, 0)
