"""Localization phase 4: the per-class top-K buffers and the segment keys they rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidistill.localization.ranking import ClassTopK, SegmentKeys


@pytest.mark.parametrize("seed", range(5))
def test_class_top_k_equals_a_full_sort_and_stays_bounded(seed):
    rng = np.random.default_rng(seed)
    k, capacity = 40, 64
    n = 1000
    scores = np.round(rng.random(n), 1).astype(np.float32)  # 11 distinct values: many ties
    keys = rng.permutation(10 * n)[:n].astype(np.int64)
    buffer = ClassTopK(k, capacity)
    start = 0
    while start < n:
        size = int(rng.integers(0, 90))  # some chunks alone exceed the capacity
        buffer.add(scores[start : start + size], keys[start : start + size])
        assert len(buffer) <= capacity
        start += size
    got_scores, got_keys = buffer.ranked()
    expected = sorted(range(n), key=lambda i: (-scores[i], keys[i]))[:k]
    assert got_keys.tolist() == keys[expected].tolist()
    assert got_scores.tolist() == scores[expected].tolist()

    # ties follow the given order (here: larger key first)
    descending = ClassTopK(k, capacity, order=lambda keys: np.argsort(-keys, kind="stable"))
    descending.add(scores, keys)
    expected = sorted(range(n), key=lambda i: (-scores[i], -keys[i]))[:k]
    assert descending.ranked()[1].tolist() == keys[expected].tolist()


def test_class_top_k_edge_cases():
    buffer = ClassTopK(3)
    assert [part.tolist() for part in buffer.ranked()] == [[], []]
    buffer.add([0.5, 0.5], [9, 2])
    assert buffer.ranked()[1].tolist() == [2, 9]  # fewer than K entries: all of them
    with pytest.raises(ValueError, match="NaN"):
        buffer.add([float("nan")], [1])
    with pytest.raises(ValueError, match="k must be at least 1"):
        ClassTopK(0)
    with pytest.raises(ValueError, match="capacity=2 is smaller than k=3"):
        ClassTopK(3, capacity=2)


def test_segment_keys_round_trip_and_order_by_video_id_then_segment():
    keys = SegmentKeys()
    assert keys.register(["b", "a"]) == 0
    assert keys.register(["c"]) == 2
    packed = keys.pack(torch.tensor([0, 1, 2, 1]), torch.tensor([3, 0, 1, 2])).numpy()
    assert [keys.segment_id(key) for key in packed.tolist()] == ["b:15", "a:0", "c:5", "a:10"]
    # a:0, a:10, b:15, c:5: by video id, then by segment number (not by reading order)
    assert keys.order(packed).tolist() == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="'a' appears twice"):
        keys.register(["a"])
