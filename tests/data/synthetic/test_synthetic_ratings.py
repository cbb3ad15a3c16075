"""The synthetic set's segment-rating model: partly visible positives, negatives from the same
video and from confusable classes, rater noise, the third rated split, and rating knobs that
leave every frame alone."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from vidistill.data import read_records
from vidistill.data.synthetic import (
    RATED_SPLITS,
    SEGMENT_LENGTH,
    VISIBLE_EVIDENCE,
    SyntheticConfig,
    build_world,
    config_hash,
    generate,
    sample_video,
)

# Long enough videos that every rated class has segments of each kind to draw from.
RATED = dict(
    num_classes=60,
    num_segment_classes=20,
    num_clusters=6,
    min_frames=60,
    max_frames=160,
    mean_frames=110.0,
)
RATING_KNOBS = dict(
    rating_noise=0.3,
    confusable_negative_share=1.0,
    min_positive_frames=4,
    positive_segments_per_class=1,
    negative_segments_per_class=4,
    rated_classes_per_video=2,
)


def rated_videos(count: int, split: str = "segment_validate", **overrides):
    config = SyntheticConfig(**{**RATED, **overrides})
    return config, [sample_video(config, split, i) for i in range(count)]


def visible_frames(video, start: int, label: int) -> int:
    return int(video.visible()[start : start + SEGMENT_LENGTH, label].sum())


def test_ratings_are_valid_2019_records():
    config, videos = rated_videos(40)
    whitelist = set(build_world(config).whitelist.tolist())
    for v in videos:
        s = v.segments
        starts, labels, scores = s["segment_start_times"], s["segment_labels"], s["segment_scores"]
        assert len(starts) > 0 and set(np.unique(scores)) <= {0.0, 1.0}
        assert np.array_equal(s["segment_end_times"], starts + SEGMENT_LENGTH)
        assert (starts % SEGMENT_LENGTH == 0).all() and (starts >= 0).all()
        assert (starts + SEGMENT_LENGTH <= v.num_frames).all()
        assert set(labels.tolist()) <= whitelist & set(v.true_labels.tolist())
        assert len(set(labels.tolist())) <= config.rated_classes_per_video
        assert len(set(zip(starts.tolist(), labels.tolist(), strict=True))) == len(starts)


def test_positives_include_partly_visible_segments():
    config, videos = rated_videos(60, rating_noise=0.0)
    seen = []
    for v in videos:
        s = v.segments
        for start, label, score in zip(
            *(s[k] for k in ("segment_start_times", "segment_labels", "segment_scores")),
            strict=True,
        ):
            frames = visible_frames(v, start, label)
            if score == 1.0:
                assert frames >= config.min_positive_frames == 1
                seen.append(frames)
            else:
                assert frames == 0
    seen = np.array(seen)
    # segments on the fixed 5-frame grid catch shot edges: a real share shows the class in 1-4
    # frames only, and full segments are still common
    assert 0.15 < np.mean(seen < SEGMENT_LENGTH) < 0.8
    assert (seen == 1).any() and (seen == SEGMENT_LENGTH).any()
    # min_positive_frames still rules which segments may be positives
    strict, videos = rated_videos(30, rating_noise=0.0, min_positive_frames=SEGMENT_LENGTH)
    for v in videos:
        s = v.segments
        for start, label in zip(
            s["segment_start_times"][s["segment_scores"] == 1],
            s["segment_labels"][s["segment_scores"] == 1],
            strict=True,
        ):
            assert visible_frames(v, start, label) == SEGMENT_LENGTH


def confusable_share(share: float) -> tuple[float, float]:
    """(share of negatives showing a same-cluster class, share of negatives whose video had
    such a segment to offer) over 60 rated videos."""
    config, videos = rated_videos(60, rating_noise=0.0, confusable_negative_share=share)
    world = build_world(config)
    shown = offered = negatives = 0
    for v in videos:
        s = v.segments
        visible = v.visible()
        for start, label, score in zip(
            s["segment_start_times"], s["segment_labels"], s["segment_scores"], strict=True
        ):
            if score == 1.0:
                continue
            cluster = world.cluster_members[world.cluster_of[label]]
            lookalikes = cluster[cluster != label]
            negatives += 1
            shown += visible[start : start + SEGMENT_LENGTH][:, lookalikes].any()
            windows = visible[: v.num_frames // SEGMENT_LENGTH * SEGMENT_LENGTH].reshape(
                -1, SEGMENT_LENGTH, visible.shape[1]
            )
            free = ~windows[:, :, label].any(axis=1)
            offered += (free & windows[:, :, lookalikes].any(axis=(1, 2))).any()
    return shown / negatives, offered / negatives


def test_negatives_come_from_the_same_video_and_include_confusable_classes():
    """Negatives are segments of the rated video where the class is absent (checked above); a
    share ``confusable_negative_share`` of them shows a class of the rated class's cluster."""
    none, offered = confusable_share(0.0)
    half, _ = confusable_share(0.5)
    every, _ = confusable_share(1.0)
    assert offered > 0.3  # same-cluster labels and distractors give many videos look-alikes
    assert none < half < every
    assert every == pytest.approx(offered, abs=0.02)  # every video that can offer one does
    assert half > 0.15


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_rating_noise_flips_that_share_of_the_ratings(noise):
    """Scores compared with the rater's noise-free answer, recomputed from the evidence."""
    config, videos = rated_videos(150, rating_noise=noise)
    flipped = total = 0
    for v in videos:
        s = v.segments
        truths = []
        for start, label, score in zip(
            s["segment_start_times"], s["segment_labels"], s["segment_scores"], strict=True
        ):
            truths.append(float(visible_frames(v, start, label) >= config.min_positive_frames))
            flipped += score != truths[-1]
            total += 1
        assert v.rating_details["truth"].tolist() == truths
    assert total > 600
    # binomial: standard deviation about sqrt(0.2 * 0.8 / 700) = 0.015
    assert flipped / total == pytest.approx(noise, abs=0.05 if noise else 0.0)


def test_rating_knobs_change_ratings_but_no_frame():
    base = SyntheticConfig(**RATED)
    other = dataclasses.replace(base, **RATING_KNOBS)
    assert config_hash(other) != config_hash(base)  # a new cache directory, never a stale one
    for split in ("train", "validate", "test", *RATED_SPLITS):
        for index in range(3):
            a, b = sample_video(base, split, index), sample_video(other, split, index)
            assert np.array_equal(a.features, b.features), (split, index)
            assert np.array_equal(a.labels, b.labels) and np.array_equal(a.evidence, b.evidence)
    changed = [
        not np.array_equal(
            sample_video(base, "segment_test", i).segments["segment_scores"],
            sample_video(other, "segment_test", i).segments["segment_scores"],
        )
        for i in range(5)
    ]
    assert any(changed)


def test_a_frame_level_video_depends_only_on_seed_split_and_index():
    """Sizes, shard counts and rating knobs move no frame-level video (the frame splits are
    measured on; only the rated splits may change with the rating model)."""
    base = SyntheticConfig(**RATED)
    other = dataclasses.replace(
        base,
        num_train=3,
        num_validate=7,
        num_test=11,
        num_segment=2,
        train_shards=1,
        segment_shards=1,
        **RATING_KNOBS,
    )
    for split in ("train", "validate", "test"):
        a, b = sample_video(base, split, 2), sample_video(other, split, 2)
        assert np.array_equal(a.quantized()[0], b.quantized()[0])
        assert np.array_equal(a.quantized()[1], b.quantized()[1])
        assert a.id == b.id and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(
        sample_video(base, "train", 2).features,
        sample_video(dataclasses.replace(base, seed=1), "train", 2).features,
    )


@pytest.mark.parametrize(
    ("split", "index", "frames", "digest"),
    [
        ("train", 0, 145, "344ec7a1dc2c3247"),
        ("validate", 17, 162, "27fa41cd440053d2"),
        ("test", 999, 60, "8f2579c1d9fc33dc"),
    ],
)
def test_default_frame_level_videos_are_pinned(split, index, frames, digest):
    """The default frame-level videos, byte for byte as format version 1 wrote them: results
    measured on the frame splits stay valid while the rating model changes."""
    v = sample_video(SyntheticConfig(), split, index)
    rgb, audio = v.quantized()
    assert v.num_frames == frames
    assert (
        hashlib.sha256(rgb.tobytes() + audio.tobytes() + v.labels.tobytes()).hexdigest()[:16]
        == digest
    )


def test_three_rated_splits_are_written_read_and_summarized(tmp_path):
    config = SyntheticConfig(
        **{**RATED, "max_frames": 80, "mean_frames": 70.0},
        num_train=2,
        num_validate=1,
        num_test=1,
        num_segment=4,
        segment_shards=2,
        rating_noise=0.25,
    )
    out = generate(tmp_path / "ds", config, progress=False, workers=1)
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["config"]["rating_noise"] == 0.25 and meta["format_version"] == 2
    ids = set()
    for split, prefix in zip(RATED_SPLITS, ("validate", "tune", "test"), strict=True):
        files = sorted((out / "segment").glob(f"{prefix}*.tfrecord"))
        assert len(files) == 2
        records = [r for f in files for r in read_records(str(f), schema="segment", num_classes=60)]
        assert [r.id for r in records] == [sample_video(config, split, i).id for i in range(4)]
        ids |= {r.id for r in records}
        entry = meta["splits"][split]
        assert entry["frame_files"] == f"segment/{prefix}*.tfrecord"
        details = [sample_video(config, split, i).rating_details for i in range(4)]
        scores = [sample_video(config, split, i).segments["segment_scores"] for i in range(4)]
        assert entry["rated_segments"] == sum(len(s) for s in scores)
        assert entry["positive_segments"] == sum(int(s.sum()) for s in scores)
        assert entry["flipped_ratings"] == sum(
            int((d["truth"] != s).sum()) for d, s in zip(details, scores, strict=True)
        )
        assert 0 <= entry["partly_visible_positives"] <= entry["rated_segments"]
        assert 0 <= entry["confusable_negatives"] <= entry["rated_segments"]
    assert len(ids) == 12  # three rated splits, their own videos


def test_rating_knobs_are_validated():
    for knob in ("rating_noise", "confusable_negative_share", "weak_evidence_share"):
        for bad in (-0.1, 1.5):
            with pytest.raises(ValueError, match=knob):
                SyntheticConfig(**{knob: bad})
    with pytest.raises(ValueError, match="min_positive_frames"):
        SyntheticConfig(min_positive_frames=0)
    with pytest.raises(ValueError, match="min_positive_frames"):
        SyntheticConfig(min_positive_frames=SEGMENT_LENGTH + 1)


def test_weak_evidence_shows_some_rated_label_shots_weakly_and_nothing_else():
    base = SyntheticConfig(**RATED, rating_noise=0.0, weak_evidence_share=0.0)
    weak = dataclasses.replace(base, weak_evidence_share=0.5)
    weak_positives = positives = 0
    for index in range(30):
        a, b = sample_video(base, "segment_test", index), sample_video(weak, "segment_test", index)
        labels = a.true_labels
        changed = a.evidence != b.evidence
        # only label evidence of body shots changes, to a weaker but still visible amplitude
        assert not changed[:, np.setdiff1d(np.arange(base.num_classes), labels)].any()
        assert (a.region[changed.any(axis=1)] == 1).all()
        moved = b.evidence[changed]
        assert ((moved >= VISIBLE_EVIDENCE) & (moved < base.min_amplitude)).all()
        # frames change exactly where the evidence does
        assert np.array_equal(changed.any(axis=1), (a.features != b.features).any(axis=1))
        s = b.segments
        for start, label, score in zip(
            s["segment_start_times"], s["segment_labels"], s["segment_scores"], strict=True
        ):
            if score == 1.0:
                seen = b.evidence[start : start + SEGMENT_LENGTH, label]
                positives += 1
                weak_positives += seen.max() < base.min_amplitude
    assert 0.2 < weak_positives / positives < 0.8
    for split in ("train", "validate", "test"):  # frame-level splits never get weak shots
        assert np.array_equal(
            sample_video(base, split, 1).features, sample_video(weak, split, 1).features
        )
    assert config_hash(weak) != config_hash(base)
