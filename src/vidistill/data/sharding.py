"""Which records each reader reads: shard files, their record indexes, and per-consumer ranges.

A consumer is one DataLoader worker of one DDP rank, ``consumer = rank * num_workers + worker``.
Once every file's record offsets are known (12-byte header reads, cached on disk), the global
record sequence of an epoch (files in some order, then records in file order) is known up front,
so it can be cut into one contiguous range per consumer: each consumer then seeks straight to its
first record, no record is read twice, and files are read sequentially.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidistill.data.framing import CorruptRecordError, scan_offsets
from vidistill.data.shards import compression_of, expand_url, fingerprint, is_url, local_path

log = logging.getLogger(__name__)


def expand_files(patterns: str | Sequence[str]) -> list[str]:
    """Sorted, de-duplicated files matching one or more glob patterns (``**`` allowed).

    A pattern is a local path or an fsspec URL (see :mod:`vidistill.data.shards`); ``file://``
    URLs become local paths, and an http(s) URL names one file (HTTP has no glob). Raises
    ``FileNotFoundError`` naming the first pattern that matches nothing.
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    files: list[str] = []
    for pattern in map(str, patterns):
        if is_url(pattern):
            matches = expand_url(pattern)
        else:
            matches = sorted(
                p for p in glob.glob(local_path(pattern), recursive=True) if os.path.isfile(p)
            )
        if not matches:
            raise FileNotFoundError(f"no TFRecord files match {pattern!r}")
        files.extend(matches)
    return list(dict.fromkeys(files))


def default_cache_dir() -> Path:
    """Where record indexes are cached: ``$VIDISTILL_CACHE/index``, by default under ~/.cache."""
    return Path(os.environ.get("VIDISTILL_CACHE", Path.home() / ".cache" / "vidistill")) / "index"


def record_offsets(
    path: str,
    cache_dir: str | Path | None = None,
    strict: bool = True,
    compression: str | None = None,
) -> tuple[np.ndarray, CorruptRecordError | None]:
    """Byte offsets of the records of ``path`` (int64 [n]), and the break in its framing if
    there is one. The index is cached by path, size and mtime for a local file, by URL, size and
    etag for a URL (:func:`vidistill.data.shards.fingerprint`), and by compression: a gzip
    shard's offsets are positions in its decompressed stream.

    A file whose framing breaks raises :class:`CorruptRecordError`; with ``strict=False`` the
    records before the break are returned instead, with the error (also logged). Only complete
    indexes are cached.
    """
    compression = compression_of(path, compression)
    identity = fingerprint(path) + (f"|{compression}" if compression else "")
    key = hashlib.sha1(identity.encode()).hexdigest()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / f"{key}.npy"
    try:
        return np.load(cached), None
    except (OSError, ValueError):
        pass
    offsets, error = scan_offsets(path, compression)
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
    counts: Sequence[int],
    order: Sequence[int],
    consumer: int,
    consumers: int,
    equal: bool,
    names: Sequence[str] | None = None,
) -> list[tuple[int, int, int]]:
    """This consumer's share of the records as ``(file, start, stop)`` ranges.

    The files' records (``counts[f]`` in file ``f``) are concatenated in ``order`` and cut into
    ``consumers`` contiguous parts. With ``equal`` every part has ``total // consumers`` records
    (the remainder, the last ``total % consumers`` records of the order, is dropped so that every
    DDP rank runs the same number of steps, and consumer 0 logs which records those are, naming
    file ``f`` as ``names[f]``, or ``file #f`` without names); otherwise the sizes differ by at
    most one and every record belongs to exactly one part.
    """
    total = int(sum(counts))
    if equal:
        share = total // consumers
        begin, end = consumer * share, (consumer + 1) * share
        if consumer == 0 and total % consumers:
            _log_dropped(
                tuple(counts), tuple(order), consumers, None if names is None else tuple(names)
            )
    else:
        begin, end = consumer * total // consumers, (consumer + 1) * total // consumers
    return _cut(counts, order, begin, end)


def dropped_records(
    counts: Sequence[int], order: Sequence[int], consumers: int
) -> list[tuple[int, int, int]]:
    """The ``(file, start, stop)`` ranges that equal shares (``plan_ranges(..., equal=True)``)
    leave out: the last ``sum(counts) % consumers`` records of the order."""
    total = int(sum(counts))
    return _cut(counts, order, total - total % consumers, total)


def _cut(
    counts: Sequence[int], order: Sequence[int], begin: int, end: int
) -> list[tuple[int, int, int]]:
    """Records ``[begin, end)`` of the files concatenated in ``order``, as per-file ranges."""
    ranges = []
    position = 0
    for f in order:
        lo, hi = max(begin, position), min(end, position + counts[f])
        if lo < hi:
            ranges.append((f, lo - position, hi - position))
        position += counts[f]
    return ranges


# Once per process and plan: len() of a loader asks for the plan again and again. A worker forked
# after its main process logged a plan does not repeat it.
@functools.lru_cache(maxsize=64)
def _log_dropped(
    counts: tuple[int, ...], order: tuple[int, ...], consumers: int, names: tuple[str, ...] | None
) -> None:
    total = sum(counts)
    labels = names if names is not None else [f"file #{f}" for f in range(len(counts))]
    dropped = [f"{labels[f]}[{lo}:{hi}]" for f, lo, hi in dropped_records(counts, order, consumers)]
    log.info(
        "DDP training: %d readers (ranks x workers) read %d records each, so %d of the %d "
        "records are dropped this epoch: %s",
        consumers,
        total // consumers,
        total % consumers,
        total,
        ", ".join(dropped),
    )
