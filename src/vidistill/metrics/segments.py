"""The 2019 YouTube-8M segment-level metric (temporal concept localization): MAP@K.

A submission ranks, for each class, segment ids ``"video_id:start"`` best first; the ground truth
is a set of rated (segment, class) pairs with score 1.0 (positive) or 0.0 (negative). For each
class ``c``:

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

Differences from the official ``segment_eval_inference.py``, all deliberate: it averages over the
classes *present in the submission* (so leaving hard classes out would raise the score) and
fails with a ``KeyError`` on a submitted class without positives; it fails on its own header
line, drops the last id of every line (the newline stays attached to it), and under Python 3
builds its rating keys as ``b'vid':start`` so that nothing matches. Here the header is optional,
ids are split on any whitespace, and video ids are decoded as UTF-8.

Segment ids are ``video_id:start`` with a non-empty video id free of whitespace, ``,`` and ``:``,
and ``start`` a non-negative multiple of 5 written in decimal. A start with leading zeros
(``vid:05``) is read as the same segment as ``vid:5``; ids given as ``bytes`` are decoded.
Duplicate ids within one class's list are an error, as are malformed ids.

The torchmetrics class :class:`SegmentMAPAtK` and :func:`segment_map_at_k_from_scores` score a
segment classifier on held-out rated segments: every accumulated row (one segment) is ranked per
class by its probability, which is the submission that classifier would make, and the same
cut-then-filter rule applies. Among equal probabilities the positive pairs come last, after the
negative and the unrated ones (how those two are ordered among themselves cannot change the AP).
This is the pessimistic reading of a tie: the tied negatives lower the precision of the tied
positives, and every tied entry ahead of them pushes them towards the cut. The result depends only
on the multiset of (probability, rating) pairs of each class, never on row order, so any batching
and any DDP sharding give the same value.

Command line::

    python -m vidistill.metrics.segments SUBMISSION.csv 'segment/validate*.tfrecord' \\
        [--k 100000] [--classes segment_label_ids.csv]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from vidistill.data.datasets import expand_files
from vidistill.data.records import read_records

__all__ = [
    "SegmentMAPAtK",
    "read_segment_ratings",
    "read_submission_csv",
    "segment_ap_per_class",
    "segment_average_precision",
    "segment_map_at_k",
    "segment_map_at_k_from_scores",
    "write_submission_csv",
]

# `python -m vidistill.metrics.segments` executes this file as __main__ after the package, which
# re-exports it, has already imported it; runpy warns about the second copy, which is harmless here
# (the command line only uses its own copy).
warnings.filterwarnings(
    "ignore",
    message="'vidistill.metrics.segments' found in sys.modules",
    category=RuntimeWarning,
)

DEFAULT_K = 100_000
HEADER = "Class,Segments"

ArrayLike = np.ndarray | Tensor
SegmentId = str | bytes

# Rating codes of the tensor versions, one uint8 per (segment, class) pair.
UNRATED, NEGATIVE, POSITIVE = 0, 1, 2

# A whole row of well-formed ids joined by single spaces, checked in one regex call: a Python loop
# over 100,000 ids per class and 1000 classes would dominate the evaluation time.
_START = r"[0-9]*[05]"
_ID = rf"[^\s,:]+:{_START}"
_ONE_ID = re.compile(_ID)
_ROW = re.compile(rf"{_ID}(?: {_ID})*")
_LEADING_ZERO = re.compile(r":0[0-9]")
_BYTES_LITERAL = re.compile(r"""\Ab(['"])([^\s,:'"]+)\1:([0-9]+)\Z""")

# Elements per class chunk in the tensor ranking: keeps the int64 sort temporaries near 32 MB each.
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------
# Segment ids and arguments
# --------------------------------------------------------------------------------------------


def _describe_bad_id(segment_id: str) -> str:
    """Why ``segment_id`` is not a valid id (called only for ids that failed the fast check)."""
    video, sep, start = segment_id.rpartition(":")
    if not sep or not video:
        return f"malformed segment id {segment_id!r}: expected 'video_id:start'"
    if re.search(r"[\s,:]", video):
        return f"malformed segment id {segment_id!r}: the video id contains ':', ',' or whitespace"
    if not (start.isascii() and start.isdigit()):
        return f"malformed segment id {segment_id!r}: start {start!r} is not a non-negative integer"
    return f"malformed segment id {segment_id!r}: start {int(start)} is not a multiple of 5"


def _decode(segment_id: SegmentId) -> str:
    if isinstance(segment_id, bytes):
        try:
            return segment_id.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"segment id {segment_id!r} is not UTF-8") from None
    if not isinstance(segment_id, str):
        raise ValueError(f"segment id {segment_id!r} is not a string")
    return segment_id


def _canonical(ids: list[str]) -> list[str]:
    """Drop leading zeros of start times (``vid:05`` -> ``vid:5``) so equal segments compare equal."""
    return [
        f"{video}:{int(start)}"
        for video, _, start in (segment_id.rpartition(":") for segment_id in ids)
    ]


def _check_ids(ids: Iterable[SegmentId]) -> list[str]:
    """Validated, canonical segment ids (same order); raises ``ValueError`` for the first bad or
    duplicated one."""
    ids = list(ids)
    try:
        joined = " ".join(ids)
    except TypeError:  # not all str: the rare case is paid for only when it happens
        ids = [_decode(segment_id) for segment_id in ids]
        joined = " ".join(ids)
    # The space count catches an id with a space inside, which would pass as two ids.
    if ids and (_ROW.fullmatch(joined) is None or joined.count(" ") != len(ids) - 1):
        for segment_id in ids:
            if _ONE_ID.fullmatch(segment_id) is None:
                raise ValueError(_describe_bad_id(segment_id))
    if _LEADING_ZERO.search(joined):
        ids = _canonical(ids)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for segment_id in ids:
            if segment_id in seen:
                raise ValueError(f"duplicate segment id {segment_id!r}")
            seen.add(segment_id)
    return ids


def _check_class(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"class index must be a non-negative integer, got {value!r}")
    return int(value)


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_whitelist(classes: Iterable[int] | None) -> frozenset[int] | None:
    if classes is None:
        return None
    whitelist = frozenset(_check_class(c) for c in classes)
    if not whitelist:
        raise ValueError("classes is empty: no class could be evaluated")
    return whitelist


# --------------------------------------------------------------------------------------------
# Ground truth and the submission-based metric
# --------------------------------------------------------------------------------------------


class _GroundTruth:
    """Rated pairs grouped by class: ``rated[c]`` maps a segment id to True (positive) or False;
    ``positives[c]`` is ``N_c``."""

    def __init__(self, ratings: Iterable[tuple[SegmentId, int, float]]):
        self.rated: dict[int, dict[str, bool]] = {}
        for segment_id, label, score in ratings:
            (segment_id,) = _check_ids([segment_id])
            label = _check_class(label)
            if score not in (0.0, 1.0):
                raise ValueError(
                    f"rating of ({segment_id!r}, class {label}): score must be 1.0 or 0.0, "
                    f"got {score!r}"
                )
            of_class = self.rated.setdefault(label, {})
            positive = bool(score == 1.0)
            # The same rating twice (e.g. a file given twice) is harmless; two different ones for
            # one pair leave the truth undefined.
            if of_class.setdefault(segment_id, positive) != positive:
                raise ValueError(
                    f"segment {segment_id!r} is rated both positive and negative for class {label}"
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
    for segment_id in ids[:k]:
        positive = rated.get(segment_id)
        if positive is None:
            continue
        kept += 1
        if positive:
            hits += 1
            total += hits / kept
    return total / positives


def _evaluate(
    rows: Iterable[tuple[int, list[str]]],
    truth: _GroundTruth,
    k: int,
    whitelist: frozenset[int] | None,
) -> tuple[dict[int, float], list[int]]:
    """``({evaluated class: AP}, submitted classes that were not evaluated)``.

    ``rows`` yields ``(class, validated ids)``; each class at most once.
    """
    aps = dict.fromkeys(truth.evaluated(whitelist), 0.0)
    ignored = []
    for label, ids in rows:
        if label in aps:
            aps[label] = _average_precision(ids, truth.rated[label], truth.positives[label], k)
        else:
            ignored.append(label)
    return aps, ignored


def _mapping_rows(submission: Mapping[int, Sequence[SegmentId]]) -> Iterator[tuple[int, list[str]]]:
    for label, ids in submission.items():
        label = _check_class(label)
        if isinstance(ids, str | bytes):
            raise ValueError(f"class {label}: expected a sequence of segment ids, got one string")
        try:
            yield label, _check_ids(ids)
        except ValueError as e:
            raise ValueError(f"class {label}: {e}") from None


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
    truth = _GroundTruth((segment_id, 0, score) for segment_id, score in ratings.items())
    try:
        ids = _check_ids(ranked)
    except ValueError as e:
        raise ValueError(f"ranked list: {e}") from None
    return _average_precision(ids, truth.rated.get(0, {}), truth.positives.get(0, 0), _check_k(k))


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
    k = _check_k(k)
    whitelist = _check_whitelist(classes)
    truth = _GroundTruth(ratings)
    return _evaluate(_mapping_rows(submission), truth, k, whitelist)[0]


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
            :func:`read_segment_ratings`).
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
# Files
# --------------------------------------------------------------------------------------------


def _submission_csv_rows(path: str | os.PathLike) -> Iterator[tuple[int, list[str]]]:
    """Stream ``(class, validated ids)`` from a Kaggle 2019 submission, one row at a time.

    Raises ``ValueError`` naming the file and the line for anything malformed.
    """
    path = os.fspath(path)
    seen: dict[int, int] = {}  # class -> line it was given on
    blank = None  # first blank line; only trailing ones are allowed
    # Binary mode: no newline translation surprises (CRLF, a lone CR inside a line) and undecodable
    # bytes are reported with their line rather than as a bare UnicodeDecodeError.
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise _line_error(path, number, "not UTF-8 text") from None
            if number == 1:
                line = line.removeprefix("\ufeff").strip()  # a BOM left by spreadsheet programs
            if not line:
                blank = blank or number
                continue
            if blank is not None:
                raise _line_error(path, blank, "blank line inside the file")
            if number == 1 and line.replace(" ", "").lower() == HEADER.lower():
                continue
            head, sep, tail = line.partition(",")
            if not sep or "," in tail:
                raise _line_error(
                    path, number, f"expected 'class,segment segment ...', got {_clip(line)!r}"
                )
            head = head.strip()
            if not (head.isascii() and head.isdigit()):
                raise _line_error(
                    path, number, f"class index {head!r} is not a non-negative integer"
                )
            label = int(head)
            if label in seen:
                raise _line_error(
                    path, number, f"class {label} already given on line {seen[label]}"
                )
            seen[label] = number
            ids = tail.split()
            if "b'" in tail or 'b"' in tail:
                # Written by Python 3 code that formatted bytes ids with "%s".
                ids = [_BYTES_LITERAL.sub(r"\2:\3", segment_id) for segment_id in ids]
            try:
                yield label, _check_ids(ids)
            except ValueError as e:
                raise _line_error(path, number, f"class {label}: {e}") from None


def _line_error(path: str, number: int, problem: str) -> ValueError:
    return ValueError(f"{path}: line {number}: {problem}")


def _clip(text: str, size: int = 60) -> str:
    return text if len(text) <= size else text[:size] + "..."


def read_submission_csv(path: str | os.PathLike) -> dict[int, list[str]]:
    """Read a Kaggle 2019 segment submission (``Class,Segments`` then ``class,vid:start ...``).

    The header line is optional; CRLF line ends, a UTF-8 BOM, trailing blank lines, runs of
    spaces and ids written as Python bytes literals (``b'vid':5``) are accepted.

    Returns:
        ``{class index: segment ids best first}`` in file order; a class with an empty list is
        kept (it scores 0).

    Raises:
        ValueError: naming the file and line number: a line that is not ``class,ids``, a class
            index that is not a non-negative integer, a class given twice, a duplicate or
            malformed id, a blank line before the last row, text that is not UTF-8.
    """
    return dict(_submission_csv_rows(path))


def write_submission_csv(
    path: str | os.PathLike,
    submission: Mapping[int, Sequence[SegmentId]],
    overwrite: bool = False,
) -> None:
    """Write a Kaggle 2019 segment submission that :func:`read_submission_csv` reads back.

    Rows are sorted by class index, ids joined by single spaces, lines end with ``\\n``. The file
    is written under a temporary name in the same directory and renamed into place, so ``path``
    is never seen half written.

    Args:
        path: destination; its directory must exist.
        submission: class index -> segment ids ranked best first (checked like
            :func:`segment_map_at_k` checks them, before anything is written).
        overwrite: replace an existing file instead of raising ``FileExistsError``.
    """
    path = os.fspath(path)
    rows = sorted(_mapping_rows(submission))
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
    # A unique sibling name rather than tempfile.mkstemp, whose 0600 mode would stick to the
    # renamed file.
    temporary = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(temporary, "x", encoding="utf-8", newline="\n") as f:
            f.write(HEADER + "\n")
            for label, ids in rows:
                f.write(f"{label},{' '.join(ids)}\n")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _no_frames(num_frames: int, video_id: str) -> np.ndarray:
    return np.zeros(0, np.int64)


def read_segment_ratings(
    files: str | os.PathLike | Sequence[str | os.PathLike], num_classes: int | None = None
) -> Iterator[tuple[str, int, float]]:
    """Yield ``(segment id "video_id:start", class index, score)`` for every rated pair of the
    2019 segment-rated TFRecord files ``files`` (paths or glob patterns).

    Records are read with :func:`vidistill.data.records.read_records` (schema ``"segment"``):
    every checksum is verified, and no frame is copied. ``num_classes`` enables the vocabulary
    check on ``segment_labels``.
    """
    for path in expand_files(files):
        for record in read_records(path, "segment", num_classes=num_classes, select=_no_frames):
            for start, label, score in zip(
                record.segment_start_times.tolist(),
                record.segment_labels.tolist(),
                record.segment_scores.tolist(),
                strict=True,
            ):
                yield f"{record.id}:{start}", label, score


def _read_class_ids(path: str | os.PathLike) -> frozenset[int]:
    """Class indices of a ``segment_label_ids.csv`` (optional ``Index`` header, one per line)."""
    classes = set()
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line or (number == 1 and not line.isdigit()):
                continue  # blank lines and the header
            if not (line.isascii() and line.isdigit()):
                raise ValueError(f"{path}: line {number}: {line!r} is not a class index")
            classes.add(int(line))
    if not classes:
        raise ValueError(f"{path}: no class index in the file")
    return frozenset(classes)


# --------------------------------------------------------------------------------------------
# Scores of a segment classifier (tensor version shared with the torchmetrics class)
# --------------------------------------------------------------------------------------------


def _as_tensor(x: ArrayLike) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x)))


def _ratings_batch(
    probabilities: ArrayLike, labels: ArrayLike, label_weights: ArrayLike
) -> tuple[Tensor, Tensor]:
    """Checked ``(scores [B, C] float, ratings [B, C] uint8 UNRATED/NEGATIVE/POSITIVE)``."""
    scores, target, weights = (_as_tensor(x) for x in (probabilities, labels, label_weights))
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"probabilities must be [B, C] with C >= 1, got {tuple(scores.shape)}")
    if target.shape != scores.shape or weights.shape != scores.shape:
        raise ValueError(
            f"probabilities {tuple(scores.shape)}, labels {tuple(target.shape)} and label_weights "
            f"{tuple(weights.shape)} must have the same shape"
        )
    if not scores.is_floating_point():
        scores = scores.float()
    if bool(torch.isnan(scores).any()):
        raise ValueError("probabilities contain NaN")
    target, weights = target.to(scores.device), weights.to(scores.device)
    positive = target if target.dtype == torch.bool else target > 0
    rated = weights if weights.dtype == torch.bool else weights > 0
    ratings = torch.where(positive, POSITIVE, NEGATIVE).to(torch.uint8) * rated
    return scores, ratings


def _whitelist_columns(classes: Iterable[int] | None, num_classes: int) -> Tensor | None:
    """Sorted int64 column indices of the whitelist, or None for all columns."""
    whitelist = _check_whitelist(classes)
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
    step = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, num_classes, step):
        cols = slice(start, min(start + step, num_classes))
        # Classes as rows, so that every sort runs along contiguous memory.
        s = scores[:, cols].T.contiguous()
        r = ratings[:, cols].T.contiguous()
        # Positives last, then a stable sort by score: equal scores keep the positives behind.
        order = torch.sort((r == POSITIVE).to(torch.uint8), dim=1, stable=True).indices
        by_score = torch.sort(s.gather(1, order), dim=1, descending=True, stable=True).indices
        kept = r.gather(1, order.gather(1, by_score[:, :keep]))  # [c, keep], best first
        hit = kept == POSITIVE
        seen = (kept != UNRATED).cumsum(dim=1)
        precision = hit.cumsum(dim=1).double() / seen.clamp(min=1).double()
        ap[cols] = torch.where(hit, precision, 0.0).sum(dim=1)
    counted = positives > 0
    ap[counted] /= positives[counted].double()
    return ap, positives


def _mean_ap(ap: Tensor, positives: Tensor) -> Tensor:
    counted = positives > 0
    if not bool(counted.any()):
        return torch.zeros((), dtype=torch.float64, device=ap.device)
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
    return float(_mean_ap(*_segment_aps(scores, ratings, _check_k(k))))


def _cat_state(state: list[Tensor] | Tensor) -> Tensor | None:
    """A ``cat`` list state as one tensor (it is already one after a DDP sync); None if empty."""
    if isinstance(state, list):
        return dim_zero_cat(state) if state else None
    return state


class SegmentMAPAtK(Metric):
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

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        k: int = DEFAULT_K,
        classes: Iterable[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = num_classes
        self.k = _check_k(k)
        self.columns = _whitelist_columns(classes, num_classes)
        self.add_state("segment_scores", default=[], dist_reduce_fx="cat")
        self.add_state("segment_ratings", default=[], dist_reduce_fx="cat")

    @property
    def _width(self) -> int:
        return self.num_classes if self.columns is None else len(self.columns)

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

    def _sync_dist(
        self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None
    ) -> None:
        # On a rank without data torchmetrics would gather a 1-D float placeholder, which neither
        # matches the 2-D states of the other ranks nor the uint8 ratings. sync() has already
        # cached the real (empty) state, which unsync() restores.
        width = self._width
        placeholders = {"segment_scores": self.dtype, "segment_ratings": torch.uint8}
        for name, dtype in placeholders.items():
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.empty((0, width), dtype=dtype, device=self.device)])
        super()._sync_dist(dist_sync_fn, process_group)

    def compute(self) -> Tensor:
        """MAP@K as a 0-d float64 tensor (0 before any segment or without positives)."""
        scores = _cat_state(self.segment_scores)
        if scores is None:
            return torch.zeros((), dtype=torch.float64, device=self.device)
        ratings = _cat_state(self.segment_ratings)
        return _mean_ap(*_segment_aps(scores, ratings, self.k))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Print MAP@K of a submission file against rated TFRecords; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m vidistill.metrics.segments",
        description="Official 2019 YouTube-8M segment metric (MAP@K) of a Kaggle submission.",
    )
    parser.add_argument("submission", help="CSV file: 'Class,Segments', then 'class,vid:start ...'")
    parser.add_argument(
        "ratings", nargs="+", help="segment-rated TFRecord files or glob patterns (quoted)"
    )
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="per-class cut (default 100000)")
    parser.add_argument(
        "--classes", help="whitelist of evaluated classes, e.g. segment_label_ids.csv"
    )
    args = parser.parse_args(argv)
    try:
        k = _check_k(args.k)
        whitelist = _read_class_ids(args.classes) if args.classes else None
        # A format error in the submission should not wait for the ratings, which means reading
        # every rated TFRecord in full (checksums): check the file once before.
        for _ in _submission_csv_rows(args.submission):
            pass
        truth = _GroundTruth(read_segment_ratings(args.ratings))
        aps, ignored = _evaluate(_submission_csv_rows(args.submission), truth, k, whitelist)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not aps:
        scope = " in the --classes whitelist" if whitelist is not None else ""
        print(f"error: no class{scope} has a positive rating: nothing to evaluate", file=sys.stderr)
        return 2
    if ignored:
        print(
            f"note: {len(ignored)} submitted classes are not evaluated (no positive rating"
            f"{' or not whitelisted' if whitelist is not None else ''}), e.g. {ignored[:5]}",
            file=sys.stderr,
        )
    print(f"MAP@{k}: {sum(aps.values()) / len(aps):.6f} over {len(aps)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
