"""Phase 4 of the localization pipeline: each class's best K segments, in bounded memory.

Scores never form a videos x segments x classes array. A batch of videos yields
``[segments, candidates]`` scores, which go straight into per-class :class:`ClassTopK` buffers; a
buffer holds at most ``2 K`` entries of 12 bytes (float32 score, int64 key) before it is pruned
back to K, so 1000 classes at K = 100,000 stay under 2.4 GB in the worst case.

A segment is held as one int64 key (:class:`SegmentKeys`) rather than as its id string. Ranking is
deterministic: score descending, then segment id ascending, where ids compare as (video id,
segment number). The rule does not involve the reading order, so equal scores rank the same
whatever the batching, the worker count or the order of the input files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from vidistill.features import SEGMENT_LENGTH
from vidistill.metrics.segment_ids import VIDEO_ID, segment_id

__all__ = ["SEGMENT_BITS", "ClassTopK", "SegmentKeys", "offer"]

# A key packs (video number in reading order, segment number in the video) into one int64, so
# buffers hold plain integer arrays: 2^24 segments per video is far beyond 300 frames.
SEGMENT_BITS = 24
_SEGMENT_MASK = (1 << SEGMENT_BITS) - 1


@dataclass
class SegmentKeys:
    """Video ids in reading order, and the int64 keys of their segments.

    Attributes:
        ids: the registered video ids; a key's video number indexes this list.
        seen: the same ids as a set, to refuse a repeated video.
    """

    ids: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def register(self, ids: Sequence[str]) -> int:
        """Append a batch's ids (unique, usable in segment ids); returns the first's number."""
        for video_id in ids:
            if video_id in self.seen:
                raise ValueError(
                    f"video {video_id!r} appears twice in the input: its segment ids would repeat"
                )
            if not VIDEO_ID.fullmatch(video_id):
                raise ValueError(
                    f"video id {video_id!r} cannot go into a segment id 'video_id:start' (it is "
                    "empty or has whitespace, ',' or ':')"
                )
            self.seen.add(video_id)
        first = len(self.ids)
        self.ids.extend(ids)
        return first

    @staticmethod
    def pack(video: torch.Tensor, number: torch.Tensor) -> torch.Tensor:
        """Keys int64 [N] of segments ``number`` [N] of the registered videos ``video`` [N]."""
        return (video << SEGMENT_BITS) | number

    def order(self, keys: np.ndarray) -> np.ndarray:
        """Permutation sorting keys int64 [n] by (video id, segment number)."""
        video_ids = np.array([self.ids[v] for v in (keys >> SEGMENT_BITS).tolist()], dtype=str)
        return np.lexsort((keys & _SEGMENT_MASK, video_ids))

    def segment_id(self, key: int) -> str:
        """The ``video_id:start`` id of a key."""
        return segment_id(self.ids[key >> SEGMENT_BITS], (key & _SEGMENT_MASK) * SEGMENT_LENGTH)


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
        # The tie order costs a sort of the keys: pay it only when two scores are equal.
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


def offer(
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
