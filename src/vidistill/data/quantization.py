"""YouTube-8M's 8-bit quantization of frame features, undone by the official formula.

Frames are stored as one byte per dimension and stay uint8 through reading and collation;
:func:`dequantize` turns them into float32 as late as possible (ideally on the accelerator), and
:func:`vidistill.data.batching.dequantize_batch` applies it to whole batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


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
        # One conversion, then in place: this runs on every batch and is bound by memory traffic,
        # which a uint8 * float multiply (allocating its own float result) would multiply.
        return empty_float32(x.shape, x.device).copy_(x).mul_(scale).add_(bias)
    return np.asarray(x, dtype=np.float32) * np.float32(scale) + np.float32(bias)


def dequantize_coefficients(
    max_quantized_value: float = 2.0, min_quantized_value: float = -2.0
) -> tuple[float, float]:
    """``(scale, bias)`` of the official formula: ``value = byte * scale + bias``."""
    span = max_quantized_value - min_quantized_value
    return span / 255.0, span / 512.0 + min_quantized_value


def empty_float32(shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """An uninitialized float32 tensor of ``shape``; on CPU its memory comes from numpy.

    A float batch of frames is a large block allocated anew every step. Torch's CPU allocator
    maps such blocks fresh each time, and the kernel then faults them in page by page, while
    numpy's allocator reuses memory and asks for huge pages, which makes filling the block
    much cheaper.
    """
    if torch.device(device).type == "cpu":
        return torch.from_numpy(np.empty(tuple(shape), np.float32))
    return torch.empty(tuple(shape), dtype=torch.float32, device=device)
