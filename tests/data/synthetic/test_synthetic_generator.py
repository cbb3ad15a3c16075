"""The synthetic generator's model of one video: quantization, ids, and the promises of the
generative model (lengths, labels, timeline, evidence, features)."""

from __future__ import annotations

import dataclasses

import numpy as np
from synthetic_tiny import tiny

from vidistill.data import dequantize
from vidistill.data.synthetic import (
    SPLITS,
    SyntheticConfig,
    build_world,
    quantize,
    sample_video,
    video_id,
)


def test_quantize_is_the_yt8m_path():
    x = np.random.default_rng(0).uniform(-3, 3, size=(200, 1152)).astype(np.float32)
    q = quantize(x)
    assert q.dtype == np.uint8 and q.shape == x.shape
    error = np.abs(dequantize(q) - np.clip(x, -2, 2))
    assert error.max() <= 2 / 255 + 1e-6
    assert q[x <= -2].max() == 0 and q[x >= 2].min() >= 254


def test_ids_are_unique_and_safe():
    config = tiny(seed=3)
    assert sample_video(config, "test", 2).id == video_id("test", 2)
    ids = [video_id(s, i) for s in SPLITS for i in [*range(5000), 238327, 238328, 10**6]]
    assert len(set(ids)) == len(ids)
    assert all(i.isascii() and i.isalnum() for i in ids)
    assert {len(video_id(s, i)) for s in SPLITS for i in range(5000)} == {4}


def test_video_structure_follows_the_knobs():
    config = tiny(num_classes=60, min_frames=60, max_frames=120, mean_frames=90.0)
    videos = [sample_video(config, "train", i) for i in range(300)]
    lengths = np.array([v.num_frames for v in videos])
    assert lengths.min() >= 60 and lengths.max() <= 120 and abs(lengths.mean() - 90) < 3
    counts = np.array([len(v.true_labels) for v in videos])
    assert counts.min() >= 1 and counts.max() <= 5 and abs(counts.mean() - 2.4) < 0.2
    has_intro = np.array([v.region[0] == 0 for v in videos])
    has_outro = np.array([v.region[-1] == 2 for v in videos])
    assert 0.4 < has_intro.mean() < 0.6 and 0.4 < has_outro.mean() < 0.6
    intro_share = np.array([(v.region == 0).mean() for v in videos])[has_intro]
    assert intro_share.min() >= 0.09 and intro_share.max() <= 0.31
    for v in videos[:50]:
        body = v.region == 1
        # every true label is visible in some body shot; distractors are never labels
        assert v.visible()[body][:, v.true_labels].any(axis=0).all()
        assert not set(v.distractors) & set(v.true_labels)
        # shots are contiguous runs of min..max frames (the last one may be cut short)
        _, shot_lengths = np.unique(v.shot[body], return_counts=True)
        assert shot_lengths[:-1].min() >= config.min_shot_frames
        assert shot_lengths.max() <= config.max_shot_frames
        # class evidence is constant within a shot
        for s in np.unique(v.shot):
            rows = v.evidence[v.shot == s]
            assert (rows == rows[0]).all()


def label_sample(config: SyntheticConfig, split: str, count: int) -> list:
    return [sample_video(config, split, i) for i in range(count)]


def test_label_noise_rates_match_the_knobs():
    for drop, spurious in ((0.15, 0.10), (0.4, 0.3)):
        config = tiny(
            min_frames=10, max_frames=12, label_drop_rate=drop, spurious_label_rate=spurious
        )
        videos = label_sample(config, "train", 1500)
        true_total = sum(len(v.true_labels) for v in videos)
        dropped = sum(len(np.setdiff1d(v.true_labels, v.noisy_labels)) for v in videos)
        added = [len(np.setdiff1d(v.noisy_labels, v.true_labels)) for v in videos]
        assert abs(dropped / true_total - drop) < 0.03
        assert abs(np.mean(added) - spurious) < 0.03 and max(added) == 1
        assert all(np.array_equal(v.labels, v.noisy_labels) for v in videos)
    validate = label_sample(tiny(), "validate", 100)
    assert all(np.array_equal(v.labels, v.true_labels) for v in validate)
    assert any(not np.array_equal(v.noisy_labels, v.true_labels) for v in validate)
    noisy_eval = label_sample(tiny(noisy_eval_labels=True), "validate", 100)
    assert all(np.array_equal(v.labels, v.noisy_labels) for v in noisy_eval)


def test_class_frequencies_are_long_tailed():
    config = tiny(num_classes=100, min_frames=10, max_frames=12)
    counts = np.zeros(config.num_classes)
    for v in label_sample(config, "train", 2000):
        counts[v.true_labels] += 1
    assert counts.argmax() < 5
    assert counts.max() >= 5 * np.median(counts)
    assert counts[:10].sum() > counts[50:].sum()


def test_intros_and_outros_carry_less_class_information_than_bodies():
    config = tiny(
        num_classes=200, num_segment_classes=50, num_clusters=20, intro_prob=1.0, outro_prob=1.0
    )
    config = dataclasses.replace(config, min_frames=60, max_frames=150, mean_frames=100.0)
    world = build_world(config)
    directions = world.prototypes[:, :1024] / np.linalg.norm(
        world.prototypes[:, :1024], axis=1, keepdims=True
    )
    hits = {0: [], 1: [], 2: []}
    for i in range(60):
        v = sample_video(config, "validate", i)
        x = dequantize(v.quantized()[0]) - world.mean[:1024]
        guess = (x @ directions.T).argmax(axis=1)
        correct = np.isin(guess, v.true_labels)
        for region in hits:
            hits[region].append(correct[v.region == region])
    accuracy = {r: np.concatenate(h).mean() for r, h in hits.items()}
    assert accuracy[1] > 0.3  # chance is about 2.4 / 200
    assert accuracy[1] > 4 * max(accuracy[0], accuracy[2])


def test_few_frames_lose_evidence():
    """An oracle probe on the mean of all frames beats the same probe on 3 uniform frames."""
    config = tiny(num_classes=200, num_segment_classes=50, num_clusters=20)
    config = dataclasses.replace(config, min_frames=60, max_frames=200, mean_frames=130.0)
    world = build_world(config)
    found = {"all": 0, "few": 0}
    labels = 0
    for i in range(150):
        v = sample_video(config, "validate", i)
        x = dequantize(quantize(v.features))
        n = v.num_frames
        views = {"all": x.mean(0), "few": x[((np.arange(3) + 0.5) * n / 3).astype(int)].mean(0)}
        for name, feature in views.items():
            top = np.argsort(-(world.prototypes @ (feature - world.mean)))[: len(v.true_labels)]
            found[name] += np.isin(top, v.true_labels).sum()
        labels += len(v.true_labels)
    assert found["all"] / labels > found["few"] / labels + 0.1


def test_features_stay_in_the_quantization_range():
    config = SyntheticConfig()
    x = np.concatenate([sample_video(config, "train", i).features for i in range(10)])
    assert np.mean(np.abs(x) > 2) < 1e-4
    assert 0.2 < x.std() < 0.8
