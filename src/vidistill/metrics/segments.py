"""The 2019 YouTube-8M segment-level metric (temporal concept localization): MAP@K.

A submission ranks, for each class, segment ids ``"video_id:start"`` best first (the id format is
in :mod:`vidistill.metrics.segment_ids`); the ground truth is a set of rated (segment, class)
pairs with score 1.0 (positive) or 0.0 (negative). For each class ``c``:

1. the ranked list is cut to its first ``K`` entries (official ``K`` = 100,000);
2. THEN the entries whose (segment, c) pair is not rated are dropped. Unrated entries therefore
   still use up places in the cut;
3. over what remains, ``AP_c = sum_i P(i) * rel(i) / N_c``, ``P(i)`` being the share of positives
   among the first ``i`` remaining entries and ``N_c`` the number of positively rated segments of
   ``c`` in the whole ground truth (not ``min(N_c, K)``: positives beyond the cut still count).

MAP@K is the unweighted mean of ``AP_c`` over the *evaluated classes*: the classes with at least
one positive rating, restricted to the whitelist ``classes`` when one is given (the 2019 task
whitelists the 1000 classes of ``segment_label_ids.csv``). An evaluated class that the submission
does not list scores 0. Submission rows of other classes (not whitelisted, or without a positive
rating) are checked for format errors and otherwise ignored. Whitelisted classes without
positives are skipped, since their AP is 0/0. With nothing to evaluate the result is 0.0.
Duplicate ids within one class's list are an error, as are malformed ids.

Differences from the official ``segment_eval_inference.py``, all deliberate: it averages over the
classes *present in the submission* (so leaving hard classes out would raise the score) and
fails with a ``KeyError`` on a submitted class without positives; it fails on its own header
line, drops the last id of every line (the newline stays attached to it), and under Python 3
builds its rating keys as ``b'vid':start`` so that nothing matches. The submission file reader
(:mod:`vidistill.localization.submission`, which also scores a file from the command line) has
none of those problems.

The torchmetrics class :class:`SegmentMAPAtK` and :func:`segment_map_at_k_from_scores` score a
segment classifier on held-out rated segments: every accumulated row (one segment) is ranked per
class by its probability, which is the submission that classifier would make, and the same
cut-then-filter rule applies. Among equal probabilities the positive pairs come last, after the
negative and the unrated ones (how those two are ordered among themselves cannot change the AP).
This is the pessimistic reading of a tie: the tied negatives lower the precision of the tied
positives, and every tied entry ahead of them pushes them towards the cut. The result depends only
on the multiset of (probability, rating) pairs of each class, never on row order, so any batching
and any DDP sharding give the same value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vidistill.metrics._common import (
    ArrayLike,
    CatStateMetric,
    as_tensor,
    cat_state,
    check_positive_int,
    chunk_slices,
    positive_mask,
    rank_order,
    reject_nan,
    zero_score,
)
from vidistill.metrics.segment_ids import SegmentId, check_segment_ids

__all__ = [
    "DEFAULT_K",
    "SegmentMAPAtK",
    "SegmentRatings",
    "ap_per_evaluated_class",
    "check_k",
    "check_whitelist",
    "segment_ap_per_class",
    "segment_average_precision",
    "segment_map_at_k",
    "segment_map_at_k_from_scores",
    "submission_rows",
]

DEFAULT_K = 100_000

# Rating codes of the tensor versions, one uint8 per (segment, class) pair.
UNRATED, NEGATIVE, POSITIVE = 0, 1, 2

# Elements per class chunk in the tensor ranking: keeps the int64 sort temporaries near 32 MB each.
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


def check_k(k: int) -> int:
    """The per-class cut ``k`` as an ``int``; ValueError unless it is a positive integer."""
    return check_positive_int(k, "k")


def _check_class(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"class index must be a non-negative integer, got {value!r}")
    return int(value)


def check_whitelist(classes: Iterable[int] | None) -> frozenset[int] | None:
    """The evaluated classes as a set (None: all); ValueError for a bad index or an empty set."""
    if classes is None:
        return None
    whitelist = frozenset(_check_class(c) for c in classes)
    if not whitelist:
        raise ValueError("classes is empty: no class could be evaluated")
    return whitelist


def submission_rows(
    submission: Mapping[int, Sequence[SegmentId]],
) -> Iterator[tuple[int, list[str]]]:
    """``(class, validated canonical ids)`` of each entry of a submission mapping, in its order.

    Raises:
        ValueError: a negative or non-integer class, a single string instead of a list of ids,
            or a malformed or duplicate id (the message names the class).
    """
    for label, ids in submission.items():
        label = _check_class(label)
        if isinstance(ids, str | bytes):
            raise ValueError(f"class {label}: expected a sequence of segment ids, got one string")
        try:
            yield label, check_segment_ids(ids)
        except ValueError as e:
            raise ValueError(f"class {label}: {e}") from None


# --------------------------------------------------------------------------------------------
# Ground truth and the submission-based metric
# --------------------------------------------------------------------------------------------


class SegmentRatings:
    """Rated (segment, class) pairs grouped by class.

    Attributes:
        rated: ``rated[c]`` maps a canonical segment id to True (positive) or False (negative).
        positives: ``positives[c]`` is ``N_c``, the number of positive segments of class ``c``.

    Raises:
        ValueError: a malformed id or class, a score other than 1.0/0.0, or a pair rated both
            positive and negative.
    """

    def __init__(self, ratings: Iterable[tuple[SegmentId, int, float]]):
        self.rated: dict[int, dict[str, bool]] = {}
        for rated_id, label, score in ratings:
            (rated_id,) = check_segment_ids([rated_id])
            label = _check_class(label)
            if score not in (0.0, 1.0):
                raise ValueError(
                    f"rating of ({rated_id!r}, class {label}): score must be 1.0 or 0.0, "
                    f"got {score!r}"
                )
            of_class = self.rated.setdefault(label, {})
            positive = bool(score == 1.0)
            # The same rating twice (e.g. a file given twice) is harmless; two different ones for
            # one pair leave the truth undefined.
            if of_class.setdefault(rated_id, positive) != positive:
                raise ValueError(
                    f"segment {rated_id!r} is rated both positive and negative for class {label}"
                )
        self.positives = {c: sum(of_class.values()) for c, of_class in self.rated.items()}

    def evaluated(self, whitelist: frozenset[int] | None) -> list[int]:
        """Sorted classes with a positive rating (and whitelisted, when a whitelist is given)."""
        return sorted(
            c for c, n in self.positives.items() if n and (whitelist is None or c in whitelist)
        )


def _average_precision(
    ids: Sequence[str], rated: Mapping[str, bool], positives: int, k: int
) -> float:
    """AP of one class: ``ids`` cut to ``k``, unrated ids dropped, divided by ``positives``."""
    if positives == 0:
        return 0.0
    kept = hits = 0
    total = 0.0
    for one in ids[:k]:
        positive = rated.get(one)
        if positive is None:
            continue
        kept += 1
        if positive:
            hits += 1
            total += hits / kept
    return total / positives


def ap_per_evaluated_class(
    rows: Iterable[tuple[int, list[str]]],
    ratings: SegmentRatings,
    k: int,
    whitelist: frozenset[int] | None,
) -> tuple[dict[int, float], list[int]]:
    """AP of every evaluated class, from a stream of submission rows.

    Args:
        rows: ``(class, validated ids best first)``, each class at most once (e.g.
            :func:`submission_rows`); consumed once, so a file can be streamed row by row.
        ratings: the ground truth.
        k: the checked per-class cut (:func:`check_k`).
        whitelist: the checked whitelist (:func:`check_whitelist`), or None.

    Returns:
        ``({evaluated class: AP}, submitted classes that were not evaluated)``; the first is
        sorted by class, and evaluated classes missing from ``rows`` have AP 0.0.
    """
    aps = dict.fromkeys(ratings.evaluated(whitelist), 0.0)
    ignored = []
    for label, ids in rows:
        if label in aps:
            aps[label] = _average_precision(ids, ratings.rated[label], ratings.positives[label], k)
        else:
            ignored.append(label)
    return aps, ignored


def segment_average_precision(
    ranked: Sequence[SegmentId], ratings: Mapping[SegmentId, float], k: int = DEFAULT_K
) -> float:
    """AP of one class's ranked segment list under the official cut-then-filter rule.

    Args:
        ranked: segment ids ``"video_id:start"`` of the class, best first.
        ratings: the class's rated segments: segment id -> 1.0 (positive) or 0.0 (negative).
            ``N_c`` is the number of positives in it.
        k: length of the cut (official: 100,000).

    Returns:
        ``AP_c`` in ``[0, 1]``; 0.0 when ``ratings`` has no positive.
    """
    truth = SegmentRatings((one, 0, score) for one, score in ratings.items())
    try:
        ids = check_segment_ids(ranked)
    except ValueError as e:
        raise ValueError(f"ranked list: {e}") from None
    return _average_precision(ids, truth.rated.get(0, {}), truth.positives.get(0, 0), check_k(k))


def segment_ap_per_class(
    submission: Mapping[int, Sequence[SegmentId]],
    ratings: Iterable[tuple[SegmentId, int, float]],
    k: int = DEFAULT_K,
    classes: Iterable[int] | None = None,
) -> dict[int, float]:
    """``AP_c`` of every evaluated class (see the module docstring), sorted by class index.

    Args: as :func:`segment_map_at_k`.

    Returns:
        ``{class index: AP}``; classes the submission omits have AP 0.0.
    """
    k = check_k(k)
    whitelist = check_whitelist(classes)
    truth = SegmentRatings(ratings)
    return ap_per_evaluated_class(submission_rows(submission), truth, k, whitelist)[0]


def segment_map_at_k(
    submission: Mapping[int, Sequence[SegmentId]],
    ratings: Iterable[tuple[SegmentId, int, float]],
    k: int = DEFAULT_K,
    classes: Iterable[int] | None = None,
) -> float:
    """The official 2019 segment metric, MAP@K.

    Args:
        submission: class index -> segment ids ``"video_id:start"`` ranked best first.
        ratings: ``(segment id, class index, score)`` per rated pair, score 1.0 or 0.0 (e.g.
            :func:`vidistill.localization.submission.read_segment_ratings`).
        k: per-class cut (official: 100,000).
        classes: optional whitelist of evaluated classes (e.g. ``segment_label_ids.csv``).

    Returns:
        Mean ``AP_c`` over the classes with a positive rating (and in ``classes``, if given);
        0.0 when there is none.

    Raises:
        ValueError: malformed or duplicate ids, a negative class, a score other than 0/1, or a
            pair rated both ways.
    """
    aps = segment_ap_per_class(submission, ratings, k, classes)
    return sum(aps.values()) / len(aps) if aps else 0.0


# --------------------------------------------------------------------------------------------
# Scores of a segment classifier (tensor version shared with the torchmetrics class)
# --------------------------------------------------------------------------------------------


def _ratings_batch(
    probabilities: ArrayLike, labels: ArrayLike, label_weights: ArrayLike
) -> tuple[Tensor, Tensor]:
    """Checked ``(scores [B, C] float, ratings [B, C] uint8 UNRATED/NEGATIVE/POSITIVE)``."""
    scores, target, weights = (as_tensor(x) for x in (probabilities, labels, label_weights))
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"probabilities must be [B, C] with C >= 1, got {tuple(scores.shape)}")
    if target.shape != scores.shape or weights.shape != scores.shape:
        raise ValueError(
            f"probabilities {tuple(scores.shape)}, labels {tuple(target.shape)} and label_weights "
            f"{tuple(weights.shape)} must have the same shape"
        )
    if not scores.is_floating_point():
        scores = scores.float()
    reject_nan(scores, "probabilities")
    positive = positive_mask(target.to(scores.device))
    rated = positive_mask(weights.to(scores.device))
    ratings = torch.where(positive, POSITIVE, NEGATIVE).to(torch.uint8) * rated
    return scores, ratings


def _whitelist_columns(classes: Iterable[int] | None, num_classes: int) -> Tensor | None:
    """Sorted int64 column indices of the whitelist, or None for all columns."""
    whitelist = check_whitelist(classes)
    if whitelist is None:
        return None
    outside = sorted(c for c in whitelist if c >= num_classes)
    if outside:
        raise ValueError(f"classes {outside[:5]} are outside [0, {num_classes})")
    return torch.tensor(sorted(whitelist), dtype=torch.long)


def _segment_aps(scores: Tensor, ratings: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-class AP of all rows ranked by score, cut to ``k``, then filtered to rated pairs.

    Args:
        scores: ``[N, C]`` float, one row per segment.
        ratings: ``[N, C]`` uint8 rating codes.
        k: the cut.

    Returns:
        ``(ap [C] float64, positives [C] int64)``; ``ap`` is 0 where ``positives`` is 0.
    """
    n, num_classes = scores.shape
    positives = (ratings == POSITIVE).sum(dim=0)
    ap = torch.zeros(num_classes, dtype=torch.float64, device=scores.device)
    if n == 0:
        return ap, positives
    keep = min(k, n)
    for cols in chunk_slices(num_classes, n, _CHUNK_ELEMENTS):
        # Classes as rows, so that every sort runs along contiguous memory.
        s = scores[:, cols].T.contiguous()
        r = ratings[:, cols].T.contiguous()
        ranking = rank_order(s, r == POSITIVE)
        kept = r.gather(1, ranking[:, :keep])  # [c, keep], best first
        hit = kept == POSITIVE
        seen = (kept != UNRATED).cumsum(dim=1)
        precision = hit.cumsum(dim=1).double() / seen.clamp(min=1).double()
        ap[cols] = torch.where(hit, precision, 0.0).sum(dim=1)
    counted = positives > 0
    ap[counted] /= positives[counted].double()
    return ap, positives


def _mean_ap(ap: Tensor, positives: Tensor) -> Tensor:
    """Mean of ``ap`` [C] over the classes with ``positives`` [C] > 0 (0-d float64)."""
    counted = positives > 0
    if not bool(counted.any()):
        return zero_score(ap.device)
    return ap[counted].mean()


def segment_map_at_k_from_scores(
    probabilities: ArrayLike,
    labels: ArrayLike,
    label_weights: ArrayLike,
    k: int = DEFAULT_K,
    classes: Iterable[int] | None = None,
) -> float:
    """MAP@K of a segment classifier's scores on rated segments (functional :class:`SegmentMAPAtK`).

    Each row is one segment; per class, all rows ranked by probability form the submission list
    (among equal probabilities, positive pairs last), which is scored like
    :func:`segment_map_at_k`.

    Args:
        probabilities: ``[N, C]`` float scores (no NaN).
        labels: ``[N, C]``; ``> 0`` marks a positive rating (read only where rated).
        label_weights: ``[N, C]``; ``> 0`` marks a rated pair.
        k: per-class cut (official: 100,000).
        classes: optional whitelist of evaluated columns, each in ``[0, C)``.

    Returns:
        Mean AP over the (whitelisted) classes with a positive rating; 0.0 when there is none.
    """
    scores, ratings = _ratings_batch(probabilities, labels, label_weights)
    columns = _whitelist_columns(classes, scores.shape[1])
    if columns is not None:
        columns = columns.to(scores.device)
        scores, ratings = scores[:, columns], ratings[:, columns]
    return float(_mean_ap(*_segment_aps(scores, ratings, check_k(k))))


class SegmentMAPAtK(CatStateMetric):
    """MAP@K of a segment classifier on held-out rated segments, correct under DDP.

    ``update(probabilities [B, C], labels [B, C], label_weights [B, C])`` takes one row per rated
    segment: ``label_weights > 0`` marks the rated (segment, class) pairs and ``labels > 0`` the
    positive ones among them. ``compute()`` equals :func:`segment_map_at_k_from_scores` on all
    rows of all updates on all ranks (see the module docstring for the tie order, which makes the
    value independent of batching and sharding).

    Memory: the state is every row's scores and rating codes for the evaluated columns,
    ``N x C'`` values of the metric's dtype plus ``N x C'`` bytes (``C'`` = the whitelist size, or
    ``C``), gathered to every rank by ``compute()`` under DDP: 100k segments x 1000 whitelisted
    classes take 500 MB with float32. A full ranking is needed because unrated rows still take
    places in each class's top ``k``; pass ``classes`` to keep only the columns that are scored.
    Scores are stored in the metric's dtype (float32 unless changed with ``set_dtype``); float64
    probabilities are rounded, which can turn near-equal scores into ties.

    Args:
        num_classes: ``C``, the number of columns of every batch.
        k: per-class cut (official: 100,000).
        classes: optional whitelist of evaluated columns, each in ``[0, C)``.
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    def __init__(
        self,
        num_classes: int,
        k: int = DEFAULT_K,
        classes: Iterable[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.k = check_k(k)
        self.columns = _whitelist_columns(classes, num_classes)
        self.add_state("segment_scores", default=[], dist_reduce_fx="cat")
        self.add_state("segment_ratings", default=[], dist_reduce_fx="cat")

    def _list_state_dtypes(self) -> dict[str, torch.dtype]:
        return {"segment_scores": self.dtype, "segment_ratings": torch.uint8}

    def _empty_state_shape(self) -> tuple[int, ...]:
        # Rows are [C'] wide: an empty rank must send [0, C'] to match the others.
        return (0, self.num_classes if self.columns is None else len(self.columns))

    def update(self, probabilities: ArrayLike, labels: ArrayLike, label_weights: ArrayLike) -> None:
        """Accumulate ``B`` rated segments; all inputs ``[B, C]``."""
        scores, ratings = _ratings_batch(probabilities, labels, label_weights)
        if scores.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got {scores.shape[1]}")
        if self.columns is not None:
            columns = self.columns.to(scores.device)
            scores, ratings = scores[:, columns], ratings[:, columns]
        self.segment_scores.append(scores.to(device=self.device, dtype=self.dtype))
        self.segment_ratings.append(ratings.to(self.device))

    def compute(self) -> Tensor:
        """MAP@K as a 0-d float64 tensor (0 before any segment or without positives)."""
        scores = cat_state(self.segment_scores)
        if scores is None:
            return zero_score(self.device)
        ratings = cat_state(self.segment_ratings)
        return _mean_ap(*_segment_aps(scores, ratings, self.k))
