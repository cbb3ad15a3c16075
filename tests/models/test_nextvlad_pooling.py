"""The NeXtVLAD layer, run alone or several together, against its definition
(``model_reference.reference_pooling``): outputs, gradients and BatchNorm statistics to 1e-5 in
each code path (training with gradients, without gradients, evaluation, a traced graph)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from model_reference import assert_close, assert_same_state, reference_pooling
from vidistill.models.layers import batch_norm_together, pack
from vidistill.models.nextvlad_pooling import (
    NeXtVLADPooling,
    _balanced_runs,
    _padded_sums,
    _PerVideoSums,
    _SharedInputProducts,
    for_each_video,
    per_video_sums,
    pool_together,
)


def frames(lengths: list[int], size: int = 24, seed: int = 0):
    """Packed frames [N, size] of videos of ``lengths`` (padded to the longest plus 2), mask."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.arange(max(lengths) + 2) < torch.tensor(lengths)[:, None]
    videos = torch.randn(len(lengths), mask.shape[1], size, generator=generator) * 2
    return pack(videos, mask), mask


def layer(seed: int = 0, **settings) -> NeXtVLADPooling:
    torch.manual_seed(seed)
    settings = {"clusters": 4, "groups": 2, "expansion": 2, "bn_momentum": 0.1, **settings}
    pooling = NeXtVLADPooling(24, **settings)
    with torch.no_grad():  # BatchNorms away from their identity start, so they are tested
        for norm in (pooling.assign_bn, pooling.output_bn):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
            norm.running_mean.uniform_(-0.2, 0.2)
            norm.running_var.uniform_(0.5, 2.0)
    return pooling


@pytest.mark.parametrize(
    "lengths",
    [[5, 9, 2, 7], [3, 0, 4], [6, 6, 6]],
    ids=["full", "empty video", "equal lengths"],
)
@pytest.mark.parametrize("expansion", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_step_matches_the_definition(lengths, expansion, dtype):
    """With gradients (the composed-weights path): outputs, every gradient, the BatchNorm
    statistics and batch counts."""
    packed, mask = frames(lengths)
    packed = packed.to(dtype)
    new = layer(expansion=expansion).train().to(dtype)
    old = copy.deepcopy(new)
    weights = torch.randn(len(lengths), new.output_size, dtype=dtype)  # reads every output
    got, expected = new(packed, mask), reference_pooling(old, packed, mask)
    assert_close(got, expected)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    assert_same_state(new, old)


@pytest.mark.parametrize("training", [True, False])
def test_without_gradients_matches_the_definition(training):
    """Evaluation, and training mode without gradients (the plain path; statistics update)."""
    packed, mask = frames([5, 9, 2, 7])
    new = layer().train(training)
    old = copy.deepcopy(new)
    with torch.no_grad():
        assert_close(new(packed, mask), reference_pooling(old, packed, mask))
    assert_same_state(new, old)


def test_layers_pooled_together_match_each_layer_alone():
    packed, mask = frames([5, 9, 2, 7])
    together = [layer(seed) for seed in range(3)]
    alone = copy.deepcopy(together)
    weights = torch.randn(4, 3, together[0].output_size)
    got = pool_together(together, packed, mask)
    expected = torch.stack([reference_pooling(m, packed, mask) for m in alone], 1)
    assert_close(got, expected)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    for new, old in zip(together, alone, strict=True):
        assert_same_state(new, old)
    with torch.no_grad():
        assert_close(
            pool_together([m.eval() for m in together], packed, mask),
            torch.stack([reference_pooling(m.eval(), packed, mask) for m in alone], 1),
        )


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_a_traced_layer_keeps_batch_and_frames_free():
    """Under tracing the aggregation takes the padded form; the graph then serves other batch
    sizes and frame counts, as export needs."""
    pooling = layer().eval()
    packed, mask = frames([5, 9, 2])
    traced = torch.jit.trace(pooling, (packed, mask), check_trace=False)
    for lengths in ([3, 1], [8, 0, 6, 6, 2]):
        other, other_mask = frames(lengths, seed=1)
        torch.testing.assert_close(traced(other, other_mask), pooling(other, other_mask))


def test_per_video_sums_and_their_gradients_are_exact():
    """The hand-written backward pass, by finite differences, with an empty video; the padded
    form (traced graphs) gives the same sums."""
    mask = torch.arange(4) < torch.tensor([3, 0, 4, 1])[:, None]
    a = torch.randn(2, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 8, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, v: per_video_sums(a, v, mask), (a, v))
    products, sums = per_video_sums(a, v, mask)
    padded_products, padded_sums = _padded_sums(a, v, mask)
    torch.testing.assert_close(products, padded_products)
    torch.testing.assert_close(sums, padded_sums)
    torch.testing.assert_close(sums[2, 1], a[1, 3:7].sum(0))  # video 2: packed frames 3..6


def test_equal_length_sums_are_the_per_video_sums():
    """Videos of one length (k-frame students) take one batched matmul: the same sums and
    gradients as the per-video path."""
    mask = torch.ones(3, 4, dtype=torch.bool)
    a = torch.randn(2, 12, 3, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 12, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, v: per_video_sums(a, v, mask), (a, v))
    for got, expected in zip(
        per_video_sums(a, v, mask), _PerVideoSums.apply(a, v, [4, 4, 4]), strict=True
    ):
        torch.testing.assert_close(got, expected)


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _sums_and_gradients(a, v, mask, threads):
    """per_video_sums and the gradients of a fixed function of them, on ``threads`` threads."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, v = a.detach().requires_grad_(), v.detach().requires_grad_()
        products, sums = per_video_sums(a, v, mask)
        (products.square().sum() + sums.sin().sum()).backward()
        return products, sums, a.grad, v.grad
    finally:
        torch.set_num_threads(saved)


def test_videos_shared_among_threads_give_the_one_thread_results_exactly(two_threads):
    """The loop over videos split between two threads: every sum and gradient bit-identical to
    one thread's, the thread count restored, under no_grad and inference mode too."""
    lengths = torch.tensor([7, 1, 0, 12, 5, 9, 3])
    mask = torch.arange(12) < lengths[:, None]
    a = torch.randn(2, int(lengths.sum()), 3, 4)
    v = torch.randn(2, int(lengths.sum()), 3, 5)
    one = _sums_and_gradients(a, v, mask, threads=1)
    two = _sums_and_gradients(a, v, mask, threads=2)
    for expected, got in zip(one, two, strict=True):
        assert torch.equal(expected, got)
    assert torch.get_num_threads() == 2
    with torch.inference_mode():
        inferred = per_video_sums(a, v, mask)
    with torch.no_grad():
        unrecorded = per_video_sums(a, v, mask)
    for expected, got, other in zip(one[:2], inferred, unrecorded, strict=True):
        assert torch.equal(expected, got) and torch.equal(expected, other)
    assert inferred[0].is_inference()


def test_threads_work_in_the_callers_autocast(two_threads):
    """Under CPU bf16 autocast both threads' products come out in bf16, as one thread's do."""
    mask = torch.arange(6) < torch.tensor([6, 2, 5, 4])[:, None]
    a, v = torch.randn(1, 17, 2, 3), torch.randn(1, 17, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        products, _ = per_video_sums(a, v, mask)
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        expected, _ = per_video_sums(a, v, mask)
        torch.set_num_threads(saved)
    assert products.dtype == expected.dtype == torch.bfloat16
    assert torch.equal(products, expected)


def test_an_error_in_a_thread_reaches_the_caller(two_threads):
    """A failing video in the pool's share raises in the caller, and the thread count is
    restored."""

    def work(video, start, end):
        if video == 3:
            raise ValueError(f"video {video} rows {start}:{end}")
        return video

    with pytest.raises(ValueError, match="video 3 rows 6:8"):
        for_each_video(work, [2, 2, 2, 2], torch.device("cpu"))
    assert torch.get_num_threads() == 2
    assert for_each_video(
        lambda video, start, end: (video, start, end), [2, 0, 1], torch.device("cpu")
    ) == [
        (0, 0, 2),
        (1, 2, 2),
        (2, 2, 3),
    ]


@pytest.mark.parametrize(
    "lengths, parts",
    [
        ([5, 5, 5, 5], 2),
        ([1, 1, 100], 2),
        ([100, 1, 1], 2),
        ([3], 4),
        ([], 2),
        ([0, 0], 2),
        ([4, 9, 2, 7, 7, 1, 8], 3),
    ],
)
def test_balanced_runs_cover_every_video_once_in_order(lengths, parts):
    runs = _balanced_runs(lengths, parts)
    assert [video for run in runs for video in run] == list(range(len(lengths)))
    assert 1 <= len(runs) <= max(parts, 1)
    assert all(len(run) for run in runs) or lengths == []
    if lengths == [5, 5, 5, 5]:
        assert runs == [range(0, 2), range(2, 4)]


def test_shared_input_products_are_each_layer_and_their_gradients_are_exact():
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    expected = torch.stack([x @ w.t() for w in weight])
    torch.testing.assert_close(_SharedInputProducts.apply(x, weight), expected)
    assert torch.autograd.gradcheck(_SharedInputProducts.apply, (x, weight))


@pytest.mark.parametrize(
    "settings",
    [
        {"momentum": 0.1},
        {"momentum": None},
        {"momentum": 0.1, "track_running_stats": False},
        {"momentum": 0.1, "affine": False},
    ],
    ids=["ema", "cumulative", "untracked", "no affine"],
)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norms_together_are_the_norms_one_by_one(settings, training):
    torch.manual_seed(0)
    norms = [nn.BatchNorm1d(3, **settings).train(training) for _ in range(3)]
    for norm in norms:
        for tensor in (norm.weight, norm.bias, norm.running_mean):
            if tensor is not None:
                nn.init.uniform_(tensor, -1, 1)
        if norm.num_batches_tracked is not None:
            norm.num_batches_tracked.fill_(4)
    alone = copy.deepcopy(norms)
    x = torch.randn(6, 9) * 3 + 1
    for _ in range(2):  # the second call reads what the first updated
        got = batch_norm_together(norms, x)
        expected = torch.cat([norm(x[:, 3 * m : 3 * m + 3]) for m, norm in enumerate(alone)], 1)
        assert_close(got, expected)
    for new, old in zip(norms, alone, strict=True):
        assert_same_state(new, old)


def test_flops_counted_on_two_threads_are_one_threads(two_threads):
    """A FlopCounterMode sees only its own thread's ops: under it the videos are not shared
    out, so a count does not depend on the thread count."""
    from torch.utils.flop_counter import FlopCounterMode

    mask = torch.arange(9) < torch.tensor([9, 4, 7, 2])[:, None]
    a, v = torch.randn(1, 22, 2, 3), torch.randn(1, 22, 2, 4)
    counts = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        counter = FlopCounterMode(display=False)
        with counter:
            per_video_sums(a, v, mask)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 2 * 22 * 2 * 3 * 4
