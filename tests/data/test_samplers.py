"""Frame samplers: which frames each baseline sees."""

from __future__ import annotations

import numpy as np
import pytest

from vidistill.data.samplers import SAMPLERS, build_sampler, video_rng


def test_uniform_takes_bin_centres():
    assert build_sampler("uniform", 4)(100).tolist() == [12, 37, 62, 87]
    assert build_sampler("uniform", 3)(3).tolist() == [0, 1, 2]


def test_first_middle_last():
    assert build_sampler("first", 3)(10).tolist() == [0, 1, 2]
    assert build_sampler("middle", 4)(10).tolist() == [3, 4, 5, 6]
    assert build_sampler("last", 3)(10).tolist() == [7, 8, 9]
    # k = 7: two frames at each end, the remaining three in the middle
    assert build_sampler("first_middle_last", 7)(20).tolist() == [0, 1, 8, 9, 10, 18, 19]


def test_stride_and_its_cap():
    assert build_sampler("stride", stride=4)(10).tolist() == [0, 4, 8]
    assert build_sampler("stride", k=2, stride=4)(10).tolist() == [0, 4]
    assert build_sampler("stride", stride=10).output_frames(300) == 30


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n not in ("all", "stride", "learned")])
@pytest.mark.parametrize("n", [1, 5, 29, 30, 31, 157, 300])
def test_every_sampler_yields_sorted_distinct_valid_indices(name, n):
    k = 30
    indices = build_sampler(name, k)(n, video_rng(0, "x", 1))
    assert indices.dtype == np.int64
    assert len(indices) == min(n, k)
    assert np.all(np.diff(indices) > 0)
    assert indices.min() >= 0 and indices.max() < n


def test_short_videos_yield_all_their_frames():
    for name in ("uniform", "random", "first", "last", "first_middle_last"):
        assert build_sampler(name, 30)(12, video_rng(0, "v")).tolist() == list(range(12))


def test_random_is_fixed_per_video_at_eval_and_varies_per_epoch_in_training():
    sampler = build_sampler("random", 10)
    eval_a = sampler(300, video_rng(0, "vid"))
    assert np.array_equal(eval_a, sampler(300, video_rng(0, "vid")))
    assert not np.array_equal(eval_a, sampler(300, video_rng(0, "other")))
    epochs = [sampler(300, video_rng(0, "vid", epoch)) for epoch in range(3)]
    assert not np.array_equal(epochs[0], epochs[1])
    assert np.array_equal(epochs[2], sampler(300, video_rng(0, "vid", 2)))


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="unknown frame sampler 'unifrom'.*uniform"):
        build_sampler("unifrom", 10)
    with pytest.raises(ValueError, match="needs k"):
        build_sampler("uniform")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            build_sampler("first", bad)
    with pytest.raises(ValueError, match="k=400 .* max_frames=300"):
        build_sampler("uniform", 400).output_frames(300)
    with pytest.raises(ValueError, match="stride"):
        build_sampler("stride")
    with pytest.raises(ValueError, match="0 frames"):
        build_sampler("first", 3)(0)
