"""Host memory for large CPU tensors: keep it in the process instead of returning it to the OS.

glibc's malloc serves every request above its mmap threshold (at most 32 MiB as it adapts it)
with fresh pages from the kernel, and gives them back when they are freed. A CPU training step or
an all-frames batch allocates and frees many tensors of tens to hundreds of MiB (a batch of 64
videos at 300 frames is 88 MB of float32 frames; NeXtVLAD's expanded frames are twice that), so
each of them pays a page fault per 4 KiB page on first touch, every step: on the project's
2-vCPU machines a fresh 65 MB tensor took several times as long to fill as the same bytes copied
into memory already owned (``make bench``: its training and distillation sections run this way).

:func:`keep_freed_memory` raises the mmap threshold and the trim threshold, so that large tensors
come from the heap and freed ones are reused by the next step. The price is that the process
keeps its peak heap while it trains, as PyTorch's CUDA caching allocator keeps device memory.

Training runs set it and give the free part of the heap back when they end
(:func:`kept_while`, around :func:`vidistill.runs.train_run`), so that jobs run one after another
in one process (a multirun, the test suite) do not pile up what each kept;
``VIDISTILL_HOST_MEMORY=system`` leaves the C library as it is. Processes forked afterwards
(DataLoader workers) inherit the setting, and share the kept heap copy-on-write: while they
live, the parent's first write to each kept page copies it. Training forks its workers once an
epoch, so that is paid once an epoch; a process that forks reader workers for pass after pass
over little data (``predict_to_file`` in a loop) pays it every pass, which is why inference
leaves malloc as it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Iterator

log = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "VIDISTILL_HOST_MEMORY"
# Requests below this come from the heap, and freed memory at the heap's top is given back
# only beyond it. mallopt's codes (malloc.h).
KEEP_BELOW = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory of up to :data:`KEEP_BELOW` bytes per request for
    reuse (see the module docstring). Returns whether the setting is in force: False on another
    C library, or when ``VIDISTILL_HOST_MEMORY=system``. Once per process."""
    if os.environ.get(ENVIRONMENT_VARIABLE, "keep") == "system":
        return False
    libc = _glibc()
    if libc is None:
        return False
    done = libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW) and libc.mallopt(
        _M_TRIM_THRESHOLD, KEEP_BELOW
    )
    if not done:
        log.warning("glibc refused the malloc thresholds; host memory left as it was")
    return bool(done)


@contextlib.contextmanager
def kept_while() -> Iterator[bool]:
    """:func:`keep_freed_memory` for the enclosed block (yields whether it is in force), then
    the heap's free memory goes back to the OS (``malloc_trim``); the thresholds stay."""
    kept = keep_freed_memory()
    try:
        yield kept
    finally:
        if kept:
            _glibc().malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (the one with mallopt's thresholds)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (absent from other C libraries)
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc
