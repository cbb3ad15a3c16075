"""The files of the 2019 YouTube-8M segment task, and a command line that scores a submission.

* **Submission** (Kaggle's ``Class,Segments`` CSV): a header line, then one line per class,
  ``class,vid:start vid:start ...`` with the segment ids best first
  (:func:`read_submission_csv`, :func:`write_submission_csv`).
* **Whitelist** (``segment_label_ids.csv``): the rated classes, a header line ``Index`` then one
  class index per line (:func:`read_whitelist`).
* **Rated TFRecords** (the 2019 validate/test shards): frame-level records whose context lists
  rated (segment start, class, score) triples (:func:`read_segment_ratings`,
  :func:`files_are_rated`).

The reader accepts what the official ``segment_eval_inference.py`` chokes on: the header is
optional, ids are split on any whitespace, and ids written as Python bytes literals
(``b'vid':5``) are read as the ids they meant. Everything else malformed is an error naming the
file and the line.

Command line (MAP@K of :mod:`vidistill.metrics.segments`)::

    python -m vidistill.localization.submission SUBMISSION.csv 'segment/validate*.tfrecord' \\
        [--k 100000] [--classes segment_label_ids.csv]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from tfrecord import example_pb2

from vidistill.data.datasets import expand_files
from vidistill.data.records import CorruptRecordError, iter_payloads, read_records
from vidistill.metrics.segment_ids import SegmentId, check_segment_ids, segment_id
from vidistill.metrics.segments import (
    DEFAULT_K,
    SegmentRatings,
    ap_per_evaluated_class,
    check_k,
    check_whitelist,
    submission_rows,
)

__all__ = [
    "HEADER",
    "files_are_rated",
    "main",
    "read_segment_ratings",
    "read_submission_csv",
    "read_whitelist",
    "write_submission_csv",
]

HEADER = "Class,Segments"

_BYTES_LITERAL = re.compile(r"""\Ab(['"])([^\s,:'"]+)\1:([0-9]+)\Z""")


# --------------------------------------------------------------------------------------------
# Submission CSV
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
            label, ids = _parse_row(path, number, line)
            if label in seen:
                raise _line_error(
                    path, number, f"class {label} already given on line {seen[label]}"
                )
            seen[label] = number
            yield label, ids


def _parse_row(path: str, number: int, line: str) -> tuple[int, list[str]]:
    """``(class, validated ids)`` of one non-blank submission line."""
    head, sep, tail = line.partition(",")
    if not sep or "," in tail:
        raise _line_error(
            path, number, f"expected 'class,segment segment ...', got {_clip(line)!r}"
        )
    head = head.strip()
    if not (head.isascii() and head.isdigit()):
        raise _line_error(path, number, f"class index {head!r} is not a non-negative integer")
    label = int(head)
    ids = tail.split()
    if "b'" in tail or 'b"' in tail:
        # Written by Python 3 code that formatted bytes ids with "%s".
        ids = [_BYTES_LITERAL.sub(r"\2:\3", one) for one in ids]
    try:
        return label, check_segment_ids(ids)
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
            :func:`vidistill.metrics.segments.segment_map_at_k` checks them, before anything is
            written).
        overwrite: replace an existing file instead of raising ``FileExistsError``.
    """
    path = os.fspath(path)
    rows = sorted(submission_rows(submission))
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


# --------------------------------------------------------------------------------------------
# Whitelist and ratings
# --------------------------------------------------------------------------------------------


def read_whitelist(path: str | os.PathLike, num_classes: int | None = None) -> np.ndarray:
    """The class indices of a ``segment_label_ids.csv`` as sorted unique int64 [S].

    A first line that is not a number is the header (``Index``); blank lines are skipped.

    Args:
        path: the file.
        num_classes: the vocabulary size, if known: every class must be below it.

    Raises:
        ValueError: naming the file: a line that is not a class index, no class at all, or a
            class outside ``[0, num_classes)``.
    """
    classes = []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line or (number == 1 and not line.isdigit()):
                continue  # blank lines and the header
            if not (line.isascii() and line.isdigit()):
                raise ValueError(f"{path}: line {number}: {line!r} is not a class index")
            classes.append(int(line))
    if not classes:
        raise ValueError(f"{path}: no class index in the file")
    if num_classes is not None:
        outside = sorted({c for c in classes if c >= num_classes})
        if outside:
            raise ValueError(
                f"{path}: classes {outside[:5]} are outside the vocabulary of {num_classes} classes"
            )
    return np.unique(np.array(classes, dtype=np.int64))


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
                yield segment_id(record.id, start), label, score


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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vidistill.localization.submission",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print MAP@K of a submission file against rated TFRecords; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        k = check_k(args.k)
        whitelist = check_whitelist(read_whitelist(args.classes).tolist()) if args.classes else None
        # A format error in the submission should not wait for the ratings, which means reading
        # every rated TFRecord in full (checksums): check the file once before.
        for _ in _submission_csv_rows(args.submission):
            pass
        truth = SegmentRatings(read_segment_ratings(args.ratings))
        rows = _submission_csv_rows(args.submission)
        aps, ignored = ap_per_evaluated_class(rows, truth, k, whitelist)
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
