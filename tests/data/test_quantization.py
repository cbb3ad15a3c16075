"""The official YT8M dequantization formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidistill.data import dequantize


def test_dequantize_matches_the_official_formula():
    x = np.arange(256, dtype=np.uint8)
    expected = x.astype(np.float64) * 4.0 / 255.0 + 4.0 / 512.0 - 2.0
    np.testing.assert_allclose(dequantize(x), expected, rtol=0, atol=1e-6)
    assert dequantize(x).dtype == np.float32
    assert dequantize(np.uint8(0)) == pytest.approx(-1.9921875)
    np.testing.assert_allclose(dequantize(torch.from_numpy(x)).numpy(), expected, atol=1e-6)
    # the tensor path rounds exactly like TensorFlow's float32 `x * scale + bias`, bit for bit
    float32_formula = x.astype(np.float32) * np.float32(4 / 255) + np.float32(4 / 512 - 2)
    assert np.array_equal(dequantize(torch.from_numpy(x)).numpy(), float32_formula)
    assert np.array_equal(dequantize(x), float32_formula)
    # other ranges follow the same formula
    custom = x.astype(np.float64) * 6.0 / 255.0 + 6.0 / 512.0 - 1.0
    np.testing.assert_allclose(dequantize(x, 5.0, -1.0), custom, atol=1e-5)
