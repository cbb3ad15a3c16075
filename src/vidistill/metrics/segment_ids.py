"""Segment ids of the 2019 YouTube-8M segment task: ``"video_id:start"``.

The video id is non-empty and free of whitespace, ``,`` and ``:`` (those separate the fields of a
submission row); ``start`` is the segment's first frame, a non-negative multiple of 5 written in
decimal. A start with leading zeros (``vid:05``) names the same segment as ``vid:5``; ids given as
``bytes`` are decoded as UTF-8. The metric, the submission files and the localization pipeline all
build and check ids here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["VIDEO_ID", "SegmentId", "check_segment_ids", "segment_id", "video_of"]

SegmentId = str | bytes

VIDEO_ID = re.compile(r"[^\s,:]+")

# A whole row of well-formed ids joined by single spaces is checked in one regex call: a Python
# loop over 100,000 ids per class and 1000 classes would dominate the evaluation time.
_START = r"[0-9]*[05]"
_ID = rf"{VIDEO_ID.pattern}:{_START}"
_ONE_ID = re.compile(_ID)
_ROW = re.compile(rf"{_ID}(?: {_ID})*")
_LEADING_ZERO = re.compile(r":0[0-9]")


def segment_id(video_id: str, start: int) -> str:
    """The id of the segment of ``video_id`` whose first frame is ``start``."""
    return f"{video_id}:{start}"


def video_of(segment_id: str) -> str:
    """The video id part of a segment id."""
    return segment_id.rpartition(":")[0]


def check_segment_ids(ids: Iterable[SegmentId]) -> list[str]:
    """Validated, canonical segment ids in the same order.

    Raises:
        ValueError: for the first malformed id (saying what is wrong with it) or duplicate.
    """
    ids = list(ids)
    try:
        joined = " ".join(ids)
    except TypeError:  # not all str: the rare case is paid for only when it happens
        ids = [_decode(one) for one in ids]
        joined = " ".join(ids)
    # The space count catches an id with a space inside, which would pass as two ids.
    if ids and (_ROW.fullmatch(joined) is None or joined.count(" ") != len(ids) - 1):
        for one in ids:
            if _ONE_ID.fullmatch(one) is None:
                raise ValueError(_describe_bad_id(one))
    if _LEADING_ZERO.search(joined):
        ids = _canonical(ids)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for one in ids:
            if one in seen:
                raise ValueError(f"duplicate segment id {one!r}")
            seen.add(one)
    return ids


def _describe_bad_id(bad: str) -> str:
    """Why ``bad`` is not a valid id (called only for ids that failed the fast check)."""
    video, sep, start = bad.rpartition(":")
    if not sep or not video:
        return f"malformed segment id {bad!r}: expected 'video_id:start'"
    if re.search(r"[\s,:]", video):
        return f"malformed segment id {bad!r}: the video id contains ':', ',' or whitespace"
    if not (start.isascii() and start.isdigit()):
        return f"malformed segment id {bad!r}: start {start!r} is not a non-negative integer"
    return f"malformed segment id {bad!r}: start {int(start)} is not a multiple of 5"


def _decode(one: SegmentId) -> str:
    if isinstance(one, bytes):
        try:
            return one.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"segment id {one!r} is not UTF-8") from None
    if not isinstance(one, str):
        raise ValueError(f"segment id {one!r} is not a string")
    return one


def _canonical(ids: list[str]) -> list[str]:
    """Drop leading zeros of start times (``vid:05`` -> ``vid:5``) so equal segments compare equal."""
    return [segment_id(video, int(start)) for video, _, start in (i.rpartition(":") for i in ids)]
