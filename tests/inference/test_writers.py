"""The Kaggle CSV written a batch at a time says exactly what row-by-row formatting says."""

from __future__ import annotations

import numpy as np
import pytest

from vidistill.inference.writers import HEADER, KagglePredictionFile, format_row


@pytest.mark.parametrize("k", [1, 3, 20])
def test_batch_lines_equal_row_by_row_formatting(tmp_path, k):
    rng = np.random.default_rng(k)
    ids = [f"v{i}%s,{i}" for i in range(37)]  # '%' and ',' in ids are written as they are
    classes = rng.integers(0, 4000, (37, k))
    scores = rng.random((37, k)).astype(np.float32)
    scores[0, 0], scores[1, 0] = 1.0, 0.0
    scores[2, 0] = np.float32(0.1234565)  # a rounding boundary: both must round alike
    path = tmp_path / "predictions.csv"
    with KagglePredictionFile(path) as predictions:
        predictions.write_batch(ids[:30], classes[:30], scores[:30])
        predictions.write_batch([], classes[:0], scores[:0])
        predictions.write_batch(ids[30:], classes[30:], scores[30:])
    assert predictions.rows == 37
    expected = [HEADER] + [
        format_row(i, c, s) for i, c, s in zip(ids, classes.tolist(), scores.tolist(), strict=True)
    ]
    assert path.read_text().splitlines() == expected


def test_mismatched_batch_is_refused(tmp_path):
    predictions = KagglePredictionFile(tmp_path / "p.csv")
    with pytest.raises(ValueError, match="do not match"):
        predictions.write_batch(["a"], np.zeros((2, 3), np.int64), np.zeros((2, 3)))
    predictions.close()
    assert predictions.rows == 0
