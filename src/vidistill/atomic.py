"""Files that appear only when complete.

Every file vidistill writes for a reader to trust (metrics.json, evidence tables, localization
CSVs, exported models, TFRecord shards) goes through a temporary file in the same directory that
is renamed over the destination once it is fully written and flushed to disk. A crash or a kill
at any point leaves the previous file (or none), never one that looks complete but is not; a
reader never sees a half-written file. ``os.replace`` is atomic within one file system, which the
same directory guarantees. No torch import, so the layout and results code can use it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

# Temporary files start with this, so a cleanup can recognise a dead writer's leftovers.
TEMPORARY_PREFIX = ".partial-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on a normal exit it replaces
    ``path``, on an exception it is deleted and ``path`` keeps its previous content."""
    temporary = temporary_beside(path)
    try:
        yield temporary
        publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def temporary_beside(path: str | os.PathLike) -> Path:
    """A new empty file in ``path``'s directory to write ``path``'s content to, then
    :func:`publish`. Created like any file (mode from the umask; mkstemp's would be 0600),
    under a name no other writer of the same destination can hold."""
    path = Path(path)
    unique = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{path.name}.{unique}")
    temporary.open("xb").close()
    return temporary


def publish(temporary: str | os.PathLike, path: str | os.PathLike) -> None:
    """Flush ``temporary`` to disk and rename it over ``path``."""
    _flush_to_disk(Path(temporary))
    os.replace(temporary, path)


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as temporary:
        if isinstance(data, bytes):
            temporary.write_bytes(data)
        else:
            temporary.write_text(data, encoding=encoding)
    return Path(path)


def _flush_to_disk(path: Path) -> None:
    """Without the fsync, a power loss right after the rename can leave the new name pointing at
    an empty file on some file systems (the rename reaches the disk before the data)."""
    with open(path, "rb+") as file:
        os.fsync(file.fileno())
