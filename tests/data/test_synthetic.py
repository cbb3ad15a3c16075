"""The synthetic YT8M generator: file format, determinism, and the generative model's promises."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vidistill.data import dequantize, read_records
from vidistill.data.synthetic import (
    RATED_SPLITS,
    SPLITS,
    SyntheticConfig,
    build_world,
    config_hash,
    dataset_dir,
    ensure_dataset,
    generate,
    main,
    quantize,
    sample_video,
    video_id,
)

VOCABULARY_HEADER = (
    "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,"
    "Vertical1,Vertical2,Vertical3,WikiDescription"
)
TINY = dict(
    num_classes=30,
    num_segment_classes=12,
    num_clusters=6,
    num_train=7,
    num_validate=4,
    num_test=3,
    num_segment=5,
    train_shards=3,
    validate_shards=2,
    test_shards=2,
    segment_shards=2,
    min_frames=12,
    max_frames=40,
    mean_frames=28.0,
    std_frames=10.0,
)


def tiny(**overrides) -> SyntheticConfig:
    return SyntheticConfig(**{**TINY, **overrides})


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> tuple[Path, SyntheticConfig]:
    config = tiny(seed=3)
    out = generate(tmp_path_factory.mktemp("synthetic") / "ds", config, progress=False, workers=1)
    return out, config


def files_of(split: str, out: Path) -> tuple[list[Path], list[Path]]:
    if split in RATED_SPLITS:
        return sorted((out / "segment").glob(f"{split.removeprefix('segment_')}*.tfrecord")), []
    return sorted((out / "frame").glob(f"{split}*.tfrecord")), sorted(
        (out / "video").glob(f"{split}*.tfrecord")
    )


def tree_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# Format and round trip
# --------------------------------------------------------------------------------------------


def test_quantize_is_the_yt8m_path():
    x = np.random.default_rng(0).uniform(-3, 3, size=(200, 1152)).astype(np.float32)
    q = quantize(x)
    assert q.dtype == np.uint8 and q.shape == x.shape
    error = np.abs(dequantize(q) - np.clip(x, -2, 2))
    assert error.max() <= 2 / 255 + 1e-6
    assert q[x <= -2].max() == 0 and q[x >= 2].min() >= 254


@pytest.mark.parametrize("split", SPLITS)
def test_files_hold_exactly_the_sampled_videos(tiny_dataset, split):
    out, config = tiny_dataset
    frame_files, video_files = files_of(split, out)
    assert len(frame_files) == min(config.num_shards(split), config.num_videos(split))
    schema = "segment" if split in RATED_SPLITS else "frame"
    records = [
        r
        for f in frame_files
        for r in read_records(str(f), schema=schema, num_classes=config.num_classes)
    ]
    assert len(records) == config.num_videos(split)
    for index, record in enumerate(records):
        video = sample_video(config, split, index)
        rgb, audio = video.quantized()
        assert record.id == video.id
        assert record.labels.tolist() == video.labels.tolist()
        assert record.num_frames == video.num_frames
        assert np.array_equal(record.rgb, rgb) and np.array_equal(record.audio, audio)
        stored = dequantize(np.hstack([record.rgb, record.audio]))
        assert np.abs(stored - np.clip(video.features, -2, 2)).max() <= 2 / 255 + 1e-5
        if split in RATED_SPLITS:
            for key, values in video.segments.items():
                assert np.array_equal(getattr(record, key), values), key
            assert len(record.segment_labels) > 0
    if video_files:
        means = [r for f in video_files for r in read_records(str(f), schema="video")]
        assert [m.id for m in means] == [r.id for r in records]
        for mean, record in zip(means, records, strict=True):
            assert mean.labels.tolist() == record.labels.tolist()
            assert mean.mean_rgb.dtype == np.float32
            np.testing.assert_allclose(mean.mean_rgb, dequantize(record.rgb).mean(0), atol=1e-5)
            np.testing.assert_allclose(mean.mean_audio, dequantize(record.audio).mean(0), atol=1e-5)


def test_ids_are_unique_and_safe(tiny_dataset):
    _, config = tiny_dataset
    assert sample_video(config, "test", 2).id == video_id("test", 2)
    ids = [video_id(s, i) for s in SPLITS for i in [*range(5000), 238327, 238328, 10**6]]
    assert len(set(ids)) == len(ids)
    assert all(i.isascii() and i.isalnum() for i in ids)
    assert {len(video_id(s, i)) for s in SPLITS for i in range(5000)} == {4}


def test_layout_csvs_and_json(tiny_dataset):
    out, config = tiny_dataset
    assert sorted(p.name for p in out.iterdir()) == [
        "frame",
        "segment",
        "segment_label_ids.csv",
        "synthetic.json",
        "video",
        "vocabulary.csv",
    ]
    assert sorted(p.name for p in (out / "frame").iterdir()) == [
        *(f"test{i:04d}.tfrecord" for i in range(2)),
        *(f"train{i:04d}.tfrecord" for i in range(3)),
        *(f"validate{i:04d}.tfrecord" for i in range(2)),
    ]
    assert sorted(p.name for p in (out / "segment").iterdir()) == [
        "test0000.tfrecord",
        "test0001.tfrecord",
        "tune0000.tfrecord",
        "tune0001.tfrecord",
        "validate0000.tfrecord",
        "validate0001.tfrecord",
    ]
    assert len(list((out / "video").iterdir())) == 7
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers

    with open(out / "vocabulary.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == VOCABULARY_HEADER.split(",")
    assert [int(r[0]) for r in rows[1:]] == list(range(config.num_classes))
    assert all(len(r) == 9 for r in rows)
    counts = np.zeros(config.num_classes, int)
    for f in files_of("train", out)[0]:
        for record in read_records(str(f)):
            counts[record.labels] += 1
    assert [int(r[1]) for r in rows[1:]] == counts.tolist()
    assert rows[6][3] == "synthetic-class-0005"
    assert (out / "vocabulary.csv").read_text().splitlines()[0] == VOCABULARY_HEADER

    whitelist = (out / "segment_label_ids.csv").read_text().splitlines()
    assert whitelist[0] == "Index"
    indices = [int(x) for x in whitelist[1:]]
    assert indices == sorted(set(indices)) and len(indices) == config.num_segment_classes
    assert indices == build_world(config).whitelist.tolist()

    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["config"] == dataclasses.asdict(config) and meta["seed"] == 3
    assert meta["config_hash"] == config_hash(config) and isinstance(meta["format_version"], int)
    assert SyntheticConfig(**meta["config"]) == config
    for split in SPLITS:
        entry = meta["splits"][split]
        frames = sum(
            sample_video(config, split, i).num_frames for i in range(config.num_videos(split))
        )
        assert (entry["videos"], entry["frames"]) == (config.num_videos(split), frames)


# --------------------------------------------------------------------------------------------
# Determinism and caching
# --------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, tiny_dataset):
    out, config = tiny_dataset
    again = generate(tmp_path / "again", config, progress=False, workers=2)
    assert tree_bytes(again) == tree_bytes(out)
    other = generate(
        tmp_path / "other", dataclasses.replace(config, seed=4), progress=False, workers=1
    )
    a, b = tree_bytes(out), tree_bytes(other)
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith(".tfrecord"))


def test_generate_replaces_an_existing_directory(tmp_path):
    out = tmp_path / "ds"
    generate(out, tiny(num_train=2, seed=1), progress=False)
    (out / "stale.txt").write_text("x")
    generate(out, tiny(num_train=3, seed=1), progress=False)
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "synthetic.json").read_text())["splits"]["train"]["videos"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_ensure_dataset_caches_and_regenerates_on_mismatch(tmp_path):
    config = tiny(num_train=3)
    path = ensure_dataset(tmp_path, config, progress=False)
    assert path == dataset_dir(tmp_path, config) and path.name == f"synthetic-{config_hash(config)}"
    stamps = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    assert ensure_dataset(tmp_path, config, progress=False) == path
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*")} == stamps

    other = ensure_dataset(
        tmp_path, dataclasses.replace(config, label_drop_rate=0.3), progress=False
    )
    assert other != path and other.exists()

    meta = json.loads((path / "synthetic.json").read_text())
    meta["config"]["frame_noise"] = 9.0  # as if written by another config: must be regenerated
    (path / "synthetic.json").write_text(json.dumps(meta))
    assert ensure_dataset(tmp_path, config, progress=False) == path
    assert (
        json.loads((path / "synthetic.json").read_text())["config"]["frame_noise"]
        == config.frame_noise
    )


def test_ensure_dataset_is_safe_for_concurrent_processes(tmp_path):
    """Two processes released together: exactly one generates, both get the complete dataset."""
    config = tiny(num_train=300)
    script = textwrap.dedent(
        f"""
        import logging, sys, time
        from pathlib import Path
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from vidistill.data.synthetic import SyntheticConfig, ensure_dataset
        config = SyntheticConfig(**{dataclasses.asdict(config)!r})
        barrier, me = Path(sys.argv[2]), sys.argv[3]
        (barrier / me).touch()
        while len(list(barrier.iterdir())) < 2:
            time.sleep(0.001)
        print("RESULT", ensure_dataset(sys.argv[1], config, progress=False))
        """
    )
    root, barrier = tmp_path / "root", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(root), str(barrier), str(i)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert sum(o.count("generating synthetic YT8M dataset") for o in outputs) == 1
    results = [
        line.split(" ", 1)[1] for o in outputs for line in o.splitlines() if "RESULT" in line
    ]
    target = dataset_dir(root, config)
    assert results == [str(target)] * 2
    assert sorted(p.name for p in root.iterdir()) == [target.name, f"{target.name}.lock"]
    records = [r for f in files_of("train", target)[0] for r in read_records(str(f))]
    assert [r.id for r in records] == [sample_video(config, "train", i).id for i in range(300)]


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    main(
        [
            *flags,
            "--out",
            str(out),
            "--seed",
            "7",
            "--num-train",
            "2",
            "--noisy-eval-labels",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert str(out) in printed and "train" in printed
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["config"]["seed"] == 7 and meta["config"]["num_train"] == 2
    assert meta["config"]["noisy_eval_labels"] is True
    assert len(list(read_records(str(out / "frame" / "train0000.tfrecord")))) == 1
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "bad"), "--label-drop-rate", "1.5", "--no-progress"])
    assert not (tmp_path / "bad").exists()


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="num_segment_classes"):
        SyntheticConfig(num_classes=10, num_segment_classes=11)
    with pytest.raises(ValueError, match="spurious_label_rate"):
        SyntheticConfig(spurious_label_rate=-0.1)
    with pytest.raises(ValueError, match="min_frames"):
        SyntheticConfig(min_frames=50, max_frames=40)
    with pytest.raises(TypeError, match="num_train"):
        SyntheticConfig(num_train=2.5)
    # 150 and 150.0 (YAML, CLI) are the same config and name the same cached dataset
    assert config_hash(SyntheticConfig(mean_frames=150)) == config_hash(
        SyntheticConfig(mean_frames=150.0)
    )
    assert config_hash(SyntheticConfig(seed=1)) != config_hash(SyntheticConfig(seed=2))


# --------------------------------------------------------------------------------------------
# The generative model
# --------------------------------------------------------------------------------------------


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
