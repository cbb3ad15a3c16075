"""CPU dequantization: bit-exact with the official float32 formula however it is cut into
blocks and rows, and memory reused only once nothing refers to it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidistill.data import dequantize, dequantize_batch, quantization
from vidistill.data.quantization import _ReusedBlocks, dequantize_into


def official(x: np.ndarray, high: float = 2.0, low: float = -2.0) -> np.ndarray:
    """The formula as TensorFlow's reader computes it, in float32."""
    span = high - low
    return x.astype(np.float32) * np.float32(span / 255.0) + np.float32(span / 512.0 + low)


def random_batch(lengths: list[int], steps: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    frames = np.zeros((len(lengths), steps, 1152), np.uint8)
    for row, n in enumerate(lengths):
        frames[row, :n] = rng.integers(0, 256, (n, 1152), dtype=np.uint8)
    num_frames = torch.tensor(lengths)
    return {
        "frames": torch.from_numpy(frames),
        "mask": torch.arange(steps) < num_frames[:, None],
        "num_frames": num_frames,
    }


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 40000), (3, 70000)])
def test_blocks_round_exactly_like_the_formula(shape):
    x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    for high, low in ((2.0, -2.0), (5.0, -1.0)):
        out = np.empty(shape, np.float32)
        dequantize_into(out, x, *quantization.dequantize_coefficients(high, low))
        assert np.array_equal(out, official(x, high, low))
        tensor = dequantize(torch.from_numpy(x), high, low)
        assert np.array_equal(tensor.numpy(), official(x, high, low))
    strided = x[..., ::2]  # not contiguous: converted in one go, same values
    assert np.array_equal(dequantize(torch.from_numpy(strided)).numpy(), official(strided))


@pytest.mark.parametrize("per_row", [None, True, False])
@pytest.mark.parametrize("lengths", [[30, 30, 30], [30, 4, 17], [1, 2, 30]])
def test_cpu_batches_equal_the_formula_with_zero_padding(lengths, per_row):
    batch = random_batch(lengths, 30)
    expected = official(batch["frames"].numpy()) * batch["mask"].numpy()[..., None]
    values = dequantize_batch(dict(batch), per_row=per_row)["frames"]
    assert values.dtype == torch.float32
    assert np.array_equal(values.numpy(), expected)


def test_a_block_is_reused_only_when_nothing_refers_to_it():
    blocks = _ReusedBlocks(keep=2)
    first = blocks.take(1000)
    address = first.ctypes.data
    view = first.reshape(10, 100)[2:]  # a view keeps the block in use
    del first
    second = blocks.take(1000)
    assert second.ctypes.data != address
    del view
    third = blocks.take(1000)
    assert third.ctypes.data == address  # free again: reused
    assert blocks.take(999).ctypes.data not in (address, second.ctypes.data)


def test_dequantized_batches_held_by_the_caller_are_never_overwritten():
    """Large batches reuse memory; one still referred to (as a tensor, a view or a numpy
    array) keeps its values while later batches are dequantized."""
    steps = 300  # [4, 300, 1152] float32: large enough to be reused
    held = []
    for seed in range(5):
        batch = random_batch([300, 120, 7, 299], steps, seed)
        values = dequantize_batch(dict(batch))["frames"]
        expected = official(batch["frames"].numpy()) * batch["mask"].numpy()[..., None]
        held.append((expected, [values, values[1:], values.numpy()][seed % 3]))
        del values
    for expected, kept in held:
        assert np.array_equal(np.asarray(kept), expected[-len(kept) :])
    # Once dropped, a batch's memory serves the next one.
    addresses = {torch.as_tensor(kept).untyped_storage().data_ptr() for _, kept in held}
    held.clear()
    batch = random_batch([3, 300, 1, 2], steps)
    assert dequantize_batch(dict(batch))["frames"].data_ptr() in addresses


def test_whole_batch_conversion_zeroes_exactly_the_masked_frames():
    """A mask that is not a prefix (frames a selector left out) is honoured frame by frame."""
    batch = random_batch([30, 30, 30], 30)
    batch["mask"] = torch.rand(3, 30, generator=torch.Generator().manual_seed(0)) < 0.9
    batch["num_frames"] = batch["mask"].sum(1)
    expected = official(batch["frames"].numpy()) * batch["mask"].numpy()[..., None]
    values = dequantize_batch(dict(batch), per_row=False)["frames"]
    assert np.array_equal(values.numpy(), expected)
