"""Opening a shard: local paths, fsspec URLs and gzip-compressed TFRecords behind one interface.

A shard is named by a local path or by an fsspec URL (``gs://``, ``s3://``, ``http(s)://``,
``memory://``; ``file://`` URLs are turned into local paths). Local, uncompressed shards keep the
fast path: :mod:`vidistill.data.framing` maps them into memory. Everything else is a *stream*,
read front to back:

* a URL is opened through fsspec with a large block size and a read-ahead cache, so records are
  fetched in :data:`BLOCK_SIZE` sequential requests, never one small request per record;
* a gzip shard (its path ends in ``.gz``, or ``compression="gzip"``: TensorFlow's
  ``TFRecordOptions(compression_type="GZIP")``) is decompressed on the fly. gzip has no random
  access, so its record offsets are positions in the decompressed stream, and reaching one means
  decompressing everything before it (see the README's "Remote and compressed shards").

Protocol packages are optional: a URL whose fsspec implementation is missing raises an
``ImportError`` naming the extra to install (``pip install 'vidistill[gcs]'``).
"""

from __future__ import annotations

import gzip
import io
import os
import re
from typing import IO, Any

import fsspec

# Bytes per request when reading a URL: records are small next to it, so a shard is read in a
# few large sequential requests.
BLOCK_SIZE = 16 * 2**20
COMPRESSIONS = (None, "gzip")
# The extra that installs each protocol's fsspec implementation (http(s) comes with fsspec[http]).
EXTRAS = {"gs": "gcs", "gcs": "gcs", "s3": "s3", "s3a": "s3"}
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_GLOB = re.compile(r"[*?\[]")


def protocol(path: str) -> str | None:
    """The URL scheme of ``path`` (``"gs"``, ``"http"``, ...), None for a local path."""
    match = _SCHEME.match(str(path))
    return match.group(1).lower() if match else None


def is_url(path: str) -> bool:
    """Whether ``path`` is a URL read through fsspec (a ``file://`` URL is a local path)."""
    return protocol(path) not in (None, "file")


def local_path(path: str) -> str:
    """A local path for ``path``: ``file://`` stripped, ``~`` expanded."""
    path = str(path)
    if protocol(path) == "file":
        path = path[len("file://") :]
    return os.path.expanduser(path)


def compression_of(path: str, compression: str | None = None) -> str | None:
    """The shard's compression: ``compression`` if given, ``"gzip"`` for a ``.gz`` path."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be null or gzip, got {compression!r}")
    return compression or ("gzip" if str(path).endswith(".gz") else None)


def is_mappable(path: str, compression: str | None = None) -> bool:
    """Whether ``path`` is an uncompressed local file, read through ``mmap``."""
    return not is_url(path) and compression_of(path, compression) is None


def filesystem(url: str) -> Any:
    """The fsspec filesystem for ``url``; ImportError naming the extra when it is not installed."""
    scheme = protocol(url)
    try:
        return fsspec.filesystem(scheme)
    except ImportError as error:
        extra = EXTRAS.get(scheme)
        hint = f"pip install 'vidistill[{extra}]'" if extra else "install its fsspec package"
        raise ImportError(f"reading {scheme}:// shards ({url}) needs {hint}: {error}") from None
    except ValueError as error:  # fsspec: "Protocol not known"
        raise ValueError(f"{url}: no fsspec filesystem for {scheme}:// ({error})") from None


def open_shard(path: str, compression: str | None = None) -> IO[bytes]:
    """A binary file object reading the (decompressed) records of ``path`` from the start."""
    if is_url(path):
        raw = filesystem(path).open(path, "rb", block_size=BLOCK_SIZE, cache_type="readahead")
    else:
        raw = open(local_path(path), "rb")  # noqa: SIM115 - the caller closes it
    if compression_of(path, compression) == "gzip":
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), BLOCK_SIZE)
    return raw


def shard_size(path: str, compression: str | None = None) -> int | None:
    """The size of what :func:`open_shard` reads, None for a compressed stream (not known
    before reading it)."""
    if compression_of(path, compression) is not None:
        return None
    if is_url(path):
        return int(filesystem(path).size(path))
    return os.path.getsize(local_path(path))


def fingerprint(path: str) -> str:
    """Identifies this version of the shard: path, size and mtime for a local file; URL, size
    and etag (or checksum, or modification time, whichever the store reports) for a URL."""
    if not is_url(path):
        stat = os.stat(local_path(path))
        return f"{os.path.realpath(local_path(path))}|{stat.st_size}|{stat.st_mtime_ns}"
    info = filesystem(path).info(path)
    version = next(
        (
            info[key]
            for key in ("ETag", "etag", "md5Hash", "crc32c", "mtime", "LastModified", "created")
            if info.get(key)
        ),
        "",
    )
    return f"{path}|{info.get('size')}|{version}"


def expand_url(pattern: str) -> list[str]:
    """The files a URL (pattern) names, as URLs; empty when it names none. HTTP has no listing:
    an http(s) URL names one file and cannot be a glob."""
    fs = filesystem(pattern)
    if protocol(pattern) in ("http", "https"):
        if _GLOB.search(pattern.split("?", 1)[0]):
            raise ValueError(
                f"{pattern}: HTTP cannot list files, so globs do not work over http(s); "
                "give the shard URLs as a list"
            )
        try:  # a HEAD request (fsspec's exists() would GET the whole object)
            fs.info(pattern)
        except FileNotFoundError:
            return []
        return [pattern]
    if not _GLOB.search(pattern):
        return [pattern] if fs.isfile(pattern) else []
    found = fs.glob(pattern, detail=True)
    return sorted(fs.unstrip_protocol(p) for p, info in found.items() if info["type"] == "file")


def upload_directory(local: str | os.PathLike, url: str, last: str | None = None) -> list[str]:
    """Copy every file under ``local`` to the same relative path under ``url``, ``last`` (a
    relative path, e.g. a metadata file that marks the set complete) after all others; returns
    the URLs written."""
    fs = filesystem(url)
    root = os.fspath(local)
    names = sorted(
        os.path.relpath(os.path.join(top, name), root)
        for top, _, files in os.walk(root)
        for name in files
    )
    names.sort(key=lambda name: name == last)  # stable: ``last`` moves to the end
    written = []
    for name in names:
        target = f"{url.rstrip('/')}/{name}"
        fs.put_file(os.path.join(root, name), target)
        written.append(target)
    return written
