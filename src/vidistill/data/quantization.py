"""YouTube-8M's 8-bit quantization of frame features, undone by the official formula.

Frames are stored as one byte per dimension and stay uint8 through reading and collation;
:func:`dequantize` turns them into float32 as late as possible (ideally on the accelerator), and
:func:`vidistill.data.batching.dequantize_batch` applies it to whole batches.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence

import numpy as np
import torch

# Elements converted per step by :func:`dequantize_into`: a 256 KiB float block stays in the
# core's cache between the conversion and the addition, so memory sees each output byte written
# once instead of three times (convert, multiply, add over the whole batch).
_BLOCK = 1 << 16


def dequantize(
    x: np.ndarray | torch.Tensor,
    max_quantized_value: float = 2.0,
    min_quantized_value: float = -2.0,
) -> np.ndarray | torch.Tensor:
    """Official YT8M dequantization: ``x * (max - min) / 255 + (max - min) / 512 + min``.

    ``x`` is uint8 of any shape; the result has the same shape, float32 for numpy and a float32
    tensor for torch. With the defaults a byte ``x`` maps to ``x * 4/255 - 1.9921875``, so
    padding must be zeroed after this call, not before.
    """
    scale, bias = dequantize_coefficients(max_quantized_value, min_quantized_value)
    if isinstance(x, torch.Tensor):
        values = empty_float32(x.shape, x.device)
        if x.device.type == "cpu" and x.dtype == torch.uint8:
            dequantize_into(values.numpy(), x.numpy(), scale, bias)
            return values
        # One conversion, then in place: this is bound by memory traffic, which a uint8 * float
        # multiply (allocating its own float result) would multiply.
        return values.copy_(x).mul_(scale).add_(bias)
    return np.asarray(x, dtype=np.float32) * np.float32(scale) + np.float32(bias)


def dequantize_into(out: np.ndarray, x: np.ndarray, scale: float, bias: float) -> None:
    """``out[...] = x * scale + bias`` in float32 (``x`` uint8, ``out`` float32 of its shape),
    rounded exactly as the formula in float32: the product, then the sum."""
    scale32, bias32 = np.float32(scale), np.float32(bias)
    if not (out.flags.c_contiguous and x.flags.c_contiguous):
        np.multiply(x, scale32, out=out, dtype=np.float32)
        np.add(out, bias32, out=out)
        return
    flat_out, flat_x = out.reshape(-1), x.reshape(-1)
    for start in range(0, flat_x.size, _BLOCK):
        block = flat_out[start : start + _BLOCK]
        np.multiply(flat_x[start : start + _BLOCK], scale32, out=block, dtype=np.float32)
        np.add(block, bias32, out=block)


def dequantize_coefficients(
    max_quantized_value: float = 2.0, min_quantized_value: float = -2.0
) -> tuple[float, float]:
    """``(scale, bias)`` of the official formula: ``value = byte * scale + bias``."""
    span = max_quantized_value - min_quantized_value
    return span / 255.0, span / 512.0 + min_quantized_value


class _ReusedBlocks:
    """Large float32 blocks handed out again once nothing refers to them any more.

    A float batch of frames is a large block allocated anew every step. Blocks that large are
    mapped fresh by the allocator each time, and the kernel then zeroes and faults them in page
    by page, which costs about as much as writing the batch itself. Batches are consumed one
    after another, so the previous step's block is usually free again by the next step: it is
    reused when the only reference left to it is this cache's (every tensor or array viewing it
    holds a reference). At most ``keep`` blocks are kept.
    """

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()  # loader threads may ask at the same time

    def take(self, size: int) -> np.ndarray:
        """A flat float32 block of ``size`` elements nobody else refers to."""
        with self._lock:
            for i in range(len(self._blocks)):
                if len(self._blocks[i]) == size and sys.getrefcount(self._blocks[i]) == _IDLE:
                    block = self._blocks.pop(i)
                    break
            else:
                block = np.empty(size, np.float32)
            self._blocks = [*self._blocks, block][-self.keep :]
            return block


def _idle_references() -> int:
    """What :func:`sys.getrefcount` says of a list item referred to by its list alone."""
    held = [np.empty(0)]
    return sys.getrefcount(held[0])


_IDLE = _idle_references()
# Blocks under this size come cheaply from the allocator's own free lists.
_REUSE_FROM = 1 << 20
_REUSED = _ReusedBlocks()
# A forked child (a DataLoader worker) starts with its own empty cache and a lock nobody holds.
os.register_at_fork(after_in_child=_REUSED.__init__)


def empty_float32(shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """An uninitialized float32 tensor of ``shape``; on CPU a large one reuses the memory of
    an earlier one that is no longer referred to (see :class:`_ReusedBlocks`)."""
    shape = tuple(shape)
    if torch.device(device).type != "cpu":
        return torch.empty(shape, dtype=torch.float32, device=device)
    size = int(np.prod(shape, dtype=np.int64))
    if size * 4 < _REUSE_FROM:
        return torch.from_numpy(np.empty(shape, np.float32))
    return torch.from_numpy(_REUSED.take(size).reshape(shape))
