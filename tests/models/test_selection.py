"""The learned frame selector: valid choices, its Uniform-k start, REINFORCE gradients, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidistill.data.samplers import build_sampler
from vidistill.features import FEATURE_SIZE, RGB_SIZE
from vidistill.lit import VideoClassifier
from vidistill.models import NeXtVLAD
from vidistill.models.selection import (
    SegmentFrameSelector,
    agreement_reward,
    bin_of_frames,
)

LENGTHS = [1, 3, 7, 10, 11, 29, 64, 157, 300]


def frames_and_mask(lengths, frames=None, seed=0):
    frames = frames or max(lengths)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), frames, FEATURE_SIZE, generator=generator)
    mask = torch.arange(frames).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return x * mask.unsqueeze(-1), mask


def trained_looking(selector: SegmentFrameSelector, seed: int = 1) -> SegmentFrameSelector:
    """Random weights in the zero-started head, so that scores are not all equal."""
    torch.manual_seed(seed)
    torch.nn.init.normal_(selector.head.weight, std=1.0)
    return selector


@pytest.mark.parametrize("k", [1, 5, 10, 30])
@pytest.mark.parametrize("training", [True, False])
def test_every_choice_is_k_distinct_increasing_frames_within_the_video(k, training):
    selector = trained_looking(SegmentFrameSelector(k)).train(training)
    x, mask = frames_and_mask(LENGTHS)
    for _draw in range(3 if training else 1):
        choice = selector(x, mask)
        assert choice.indices.shape == choice.mask.shape == (len(LENGTHS), k)
        for row, n in enumerate(LENGTHS):
            valid = choice.indices[row][choice.mask[row]].numpy()
            assert len(valid) == min(n, k)
            assert np.all(np.diff(valid) > 0) and valid.min() >= 0 and valid.max() < n
            # the valid slots come first, as a padded batch's frames do
            assert choice.mask[row, : min(n, k)].all()


def test_bins_are_uniform_ks_bins_and_each_holds_its_uniform_frame():
    for n in LENGTHS:
        for k in (1, 4, 10, 30):
            bins = bin_of_frames(torch.tensor([n]), k, 300)[0]
            assert (bins[n:] == -1).all()
            own = bins[:n].numpy()
            assert np.all(np.diff(own) >= 0)  # contiguous, in time order
            assert len(set(own)) == min(n, k)  # no empty bin
            uniform = build_sampler("uniform", k)(n)
            assert np.array_equal(own[uniform], np.arange(min(n, k)))


def test_an_untrained_selector_picks_exactly_uniform_ks_frames_in_evaluation():
    x, mask = frames_and_mask(LENGTHS)
    for k in (5, 10, 30):
        choice = SegmentFrameSelector(k).eval()(x, mask)
        for row, n in enumerate(LENGTHS):
            picked = choice.indices[row][choice.mask[row]].numpy()
            assert np.array_equal(picked, build_sampler("uniform", k)(n)), (k, n)


def test_training_samples_each_bin_from_the_softmax_of_its_scores():
    """The sampled frequencies of one bin's frames match its softmax, and log_prob is the sum
    over bins of the chosen frames' log-probabilities."""
    torch.manual_seed(0)
    selector = trained_looking(SegmentFrameSelector(2, prior=0.5)).train()
    x, mask = frames_and_mask([8])
    signal = x[..., RGB_SIZE:]
    with torch.no_grad():
        from vidistill.models.selection import uniform_prior

        lengths = mask.sum(1)
        bins = bin_of_frames(lengths, 2, 8)
        logits = selector.scores(signal, mask) + 0.5 * uniform_prior(lengths, bins, 2)
    expected = logits[0, :4].softmax(-1)  # bin 0 holds frames 0..3
    draws = torch.stack([selector(x, mask).indices[0, 0] for _ in range(4000)])
    frequencies = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(frequencies, expected, atol=0.03, rtol=0)
    choice = selector(x, mask)
    by_hand = sum(
        logits[0, lo:hi].log_softmax(-1)[choice.indices[0, b] - lo]
        for b, (lo, hi) in enumerate([(0, 4), (4, 8)])
    )
    torch.testing.assert_close(choice.log_prob[0], by_hand)


def test_the_reinforce_term_reaches_the_selector_and_follows_the_reward():
    """Rewarding the videos whose chosen frames have a large audio value raises the scores of
    such frames: the gradient reaches every selector parameter and points the right way."""
    torch.manual_seed(0)
    selector = SegmentFrameSelector(4, prior=0.0).train()
    optimizer = torch.optim.Adam(selector.parameters(), lr=0.05)
    x, mask = frames_and_mask([40] * 32)
    for step in range(60):
        choice = selector(x, mask)
        reward = choice.gather(x)[..., RGB_SIZE].sum(-1)  # the chosen frames' first audio value
        loss = selector.reinforce_loss(choice, reward)
        optimizer.zero_grad()
        loss.backward()
        if step == 3:  # the head starts at zero, so the layers below it get gradient once it moved
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in selector.parameters())
        optimizer.step()
    selector.eval()
    chosen = selector(x, mask).gather(x)[..., RGB_SIZE].mean()
    untrained = SegmentFrameSelector(4, prior=0.0).eval()(x, mask).gather(x)[..., RGB_SIZE].mean()
    assert chosen > untrained + 0.5


def test_a_zero_weight_selector_gets_no_gradient_and_rewards_are_agreements():
    selector = SegmentFrameSelector(3, weight=0.0).train()
    x, mask = frames_and_mask([20, 20])
    choice = selector(x, mask)
    selector.reinforce_loss(choice, torch.tensor([1.0, 0.0])).backward()
    assert all(p.grad is None or not p.grad.any() for p in selector.parameters())
    logits = torch.tensor([[3.0, -2.0], [0.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    reward = agreement_reward(logits, labels)
    torch.testing.assert_close(
        reward,
        -torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(
            -1
        ),
    )
    assert agreement_reward(logits, torch.sigmoid(logits)).abs().max() < 1e-5  # full agreement


def test_bad_settings_are_refused():
    for kwargs, match in (
        ({"k": 0}, "k >= 1"),
        ({"k": 3, "context": 2}, "odd"),
        ({"k": 3, "signal": "rgb"}, "unknown selector signal"),
        ({"k": 3, "weight": -1.0}, ">= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            SegmentFrameSelector(**kwargs)
    with pytest.raises(ValueError, match="task=video"):
        VideoClassifier(
            NeXtVLAD(4, clusters=4, hidden_size=8),
            4,
            selector=SegmentFrameSelector(3),
            task="segment",
        )


def test_the_classifier_feeds_the_backbone_the_selected_frames_only():
    backbone = NeXtVLAD(4, clusters=4, groups=4, expansion=1, hidden_size=8)
    model = VideoClassifier(backbone, 4, selector=trained_looking(SegmentFrameSelector(5))).eval()
    x, mask = frames_and_mask([3, 40, 57])
    seen = {}
    backbone.register_forward_hook(lambda m, inputs, out: seen.update(shape=inputs[0].shape))
    out = model(x, mask)
    assert seen["shape"] == (3, 5, FEATURE_SIZE)
    choice = model.selector(x, mask)
    torch.testing.assert_close(out.logits, backbone(choice.gather(x), choice.mask).logits)
