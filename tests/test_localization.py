"""Temporal localization (MOD paper): segment cutting, score combination, per-class top K,
candidates and their recall, the video model's frames, and localize.py end to end on a tiny
synthetic set."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from hydra_helpers import compose_config, segment_finetune
from vidistill.checkpoints import CHECKPOINT_KEY
from vidistill.data import YT8MDataset, build_sampler, dequantize_batch, read_records
from vidistill.localization import (
    ClassTopK,
    LocalizationSettings,
    VideoFrames,
    candidate_classes,
    candidate_hits,
    combine_scores,
    localize,
    positive_pairs,
    read_whitelist,
    run,
    segments_of,
)
from vidistill.metrics.segments import read_segment_ratings, read_submission_csv, segment_map_at_k
from vidistill.models.base import masked_mean
from vidistill.runner import predict, train

NUM_CLASSES = 20
NEXTVLAD = ["model=nextvlad", "model.backbone.clusters=4", "model.backbone.hidden_size=16"]


# --------------------------------------------------------------------------------------------
# Segments, scores, candidates
# --------------------------------------------------------------------------------------------


def _batch(lengths: list[int], width: int, dim: int = 3, seed: int = 0) -> tuple:
    """frames [B, width, dim] (0.0 past each length) and mask [B, width]."""
    frames = torch.randn(len(lengths), width, dim, generator=torch.Generator().manual_seed(seed))
    mask = torch.arange(width) < torch.tensor(lengths)[:, None]
    return frames.masked_fill(~mask.unsqueeze(-1), 0.0), mask


@pytest.mark.parametrize("width", [13, 15])  # padded to a multiple of 5, or already one
def test_segments_of_cuts_five_frame_segments_and_a_short_last_one(width):
    frames, mask = _batch([13, 5, 3], width)
    segments = segments_of(frames, mask)
    assert segments.video.tolist() == [0, 0, 0, 1, 2]
    assert segments.number.tolist() == [0, 1, 2, 0, 0]
    assert segments.frames.shape == (5, 5, 3)
    # video 0: [0, 5), [5, 10), then [10, 13) with 3 valid frames and 0.0 padding
    assert torch.equal(segments.frames[1], frames[0, 5:10])
    assert torch.equal(segments.frames[2, :3], frames[0, 10:13])
    assert torch.equal(segments.mask[2], torch.tensor([True, True, True, False, False]))
    assert torch.all(segments.frames[2, 3:] == 0.0)
    # a video of exactly 5 frames has one full segment; one shorter than 5 still has one
    assert segments.mask[3].all()
    assert segments.mask[4].tolist() == [True, True, True, False, False]
    assert torch.equal(segments.frames[4, :3], frames[2, :3])


def test_combine_scores_on_hand_values():
    p_video = torch.tensor([0.8, 0.5, 1.0, 0.0])
    p_segment = torch.tensor([0.5, 0.25, 0.1, 0.9])
    expected = [0.8**0.05 * 0.5**0.95, 0.5**0.05 * 0.25**0.95, 0.1**0.95, 0.0]
    combined = combine_scores(p_video, p_segment, 0.05, 0.95)
    assert combined.tolist() == pytest.approx(expected, rel=1e-6)
    # a = 1, b = 0: every segment inherits its video's score exactly, no segment scores needed
    assert torch.equal(combine_scores(p_video, None, 1.0, 0.0), p_video)
    assert torch.equal(combine_scores(p_video, p_segment, 1.0, 0.0), p_video)
    # a = 0, b = 1: the segment model alone
    assert torch.equal(combine_scores(p_video, p_segment, 0.0, 1.0), p_segment)
    with pytest.raises(ValueError, match="needs segment probabilities"):
        combine_scores(p_video, None, 0.05, 0.95)


def test_candidates_and_their_recall_on_a_hand_made_case():
    p_video = torch.tensor(
        [
            [0.1, 0.9, 0.3, 0.3, 0.0],  # tie at the cut: class 2 before class 3
            [0.7, 0.2, 0.2, 0.6, 0.8],
        ]
    )
    classes, probabilities = candidate_classes(p_video, 2)
    assert classes.tolist() == [[1, 2], [4, 0]]
    assert torch.equal(probabilities, torch.tensor([[0.9, 0.3], [0.8, 0.7]]))
    assert candidate_classes(p_video, 9)[0].shape == (2, 5)  # at most every class

    ratings = [
        ("a:0", 1, 1.0),  # hit
        ("a:5", 1, 1.0),  # same (video, class) pair: counted once
        ("a:5", 3, 1.0),  # miss: class 3 lost the tie
        ("a:10", 4, 0.0),  # negative: not a positive pair
        ("b:0", 0, 1.0),  # hit
        ("b:0", 2, 1.0),  # miss
        ("c:0", 1, 1.0),  # a video never scored: a miss
    ]
    positives = positive_pairs(ratings)
    assert positives == {"a": {1, 3}, "b": {0, 2}, "c": {1}}
    assert candidate_hits(["a", "b"], classes, positives) == 2  # recall 2 / 5


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="top_candidates=0"):
        LocalizationSettings(top_candidates=0)
    with pytest.raises(ValueError, match="video_exponent=-0.1"):
        LocalizationSettings(video_exponent=-0.1)
    with pytest.raises(ValueError, match="segment_exponent=nan"):
        LocalizationSettings(segment_exponent=float("nan"))
    with pytest.raises(ValueError, match="both 0"):
        LocalizationSettings(video_exponent=0, segment_exponent=0)
    with pytest.raises(ValueError, match="segments_per_class=0"):
        LocalizationSettings(segments_per_class=0)
    assert not LocalizationSettings(video_exponent=1, segment_exponent=0).uses_segment_model


def test_read_whitelist(tmp_path):
    path = tmp_path / "segment_label_ids.csv"
    path.write_text("Index\n7\n3\n\n")
    assert read_whitelist(path, 10).tolist() == [3, 7]
    path.write_text("Index\n3\n12\n")
    with pytest.raises(ValueError, match=r"classes \[12\] are outside the vocabulary of 10"):
        read_whitelist(path, 10)
    path.write_text("Index\n")
    with pytest.raises(ValueError, match="no class index"):
        read_whitelist(path, 10)
    path.write_text("Index\nthree\n")
    with pytest.raises(ValueError, match="line 2"):
        read_whitelist(path, 10)


# --------------------------------------------------------------------------------------------
# Per-class top K
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The video model's frames and the core pipeline, with stand-in models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sampler", "k", "max_frames"), [("random", 4, 300), ("uniform", 3, 20), ("all", None, 300)]
)
def test_video_frames_are_those_the_data_layer_picks(shards, sampler, k, max_frames):
    directory, _ = shards
    files = str(directory / "*.tfrecord")

    def batches(**selection):
        dataset = YT8MDataset(files, num_classes=10, batch_size=8, seed=3, **selection)
        return [dequantize_batch(batch) for batch in dataset]

    picked = batches(sampler=sampler, k=k, max_frames=max_frames)
    every = batches(sampler="all")
    view = VideoFrames(build_sampler(sampler, k), max_frames, seed=3)
    for mine, theirs in zip(every, picked, strict=True):
        frames, mask = view(mine["frames"], mine["mask"], mine["ids"])
        assert torch.equal(mask, theirs["mask"])
        assert torch.equal(frames, theirs["frames"])


class MeanModel(nn.Module):
    """A stand-in classifier with known outputs: logits = the mean valid frame's first C
    features."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.calls = 0

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> SimpleNamespace:
        self.calls += 1
        return SimpleNamespace(logits=masked_mean(frames, mask)[:, : self.num_classes])


class NeverRun(nn.Module):
    def forward(self, frames: torch.Tensor, mask: torch.Tensor):
        raise AssertionError("the segment model must not run")


def _video_batch(ids: list[str], lengths: list[int], values: list[list[float]]) -> dict:
    """Videos whose every valid frame is ``values[i]`` (C features), padded to 15 frames."""
    frames = torch.tensor(values, dtype=torch.float32)[:, None, :].repeat(1, 15, 1)
    mask = torch.arange(15) < torch.tensor(lengths)[:, None]
    return {"frames": frames.masked_fill(~mask.unsqueeze(-1), 0.0), "mask": mask, "ids": ids}


def test_video_scores_only_ranks_by_video_then_segment_id_and_never_runs_the_segment_model():
    # Videos b and a look alike: all their segments tie; c is sure of class 0, unsure of 1.
    same = [2.0, 0.0, -1.0]
    batches = [
        _video_batch(["b", "a"], [12, 7], [same, same]),
        _video_batch(["c"], [3], [[3.0, -2.0, 0.0]]),
    ]
    settings = LocalizationSettings(
        top_candidates=2, video_exponent=1, segment_exponent=0, segments_per_class=4
    )
    video_model = MeanModel(3)
    result = localize(batches, video_model, NeverRun(), [0, 1], settings)
    assert video_model.calls == 2
    # class 0: c first (higher score), then the tied segments of a before b, by start
    assert result.submission[0] == ["c:0", "a:0", "a:5", "b:0"]
    # class 1 is a candidate of a and b only (c's candidates are 0 and 2); class 2 is not listed
    assert result.submission[1] == ["a:0", "a:5", "b:0", "b:5"]
    assert result.counts == {
        "videos": 3,
        "segments": 6,
        "candidate_pairs": 11,
        "classes_with_entries": 2,
    }
    assert result.candidate_recall is None
    # the order of the input does not change the ranking
    reordered = localize(batches[::-1], MeanModel(3), None, [0, 1], settings)
    assert reordered.submission == result.submission


def test_combined_scores_with_a_segment_model():
    # One video of 7 frames: segment [0, 5) shows class 1, the short segment [5, 7) class 0.
    frames = torch.zeros(1, 10, 2)
    frames[0, :5] = torch.tensor([-1.0, 2.0])
    frames[0, 5:7] = torch.tensor([3.0, -1.0])
    mask = torch.arange(10) < 7
    batch = {"frames": frames, "mask": mask[None], "ids": ["v"]}
    settings = LocalizationSettings(top_candidates=2, segments_per_class=5)
    result = localize(
        [batch], MeanModel(2), MeanModel(2), [0, 1], settings, positives={"v": {1}, "w": {0}}
    )
    assert result.submission == {0: ["v:5", "v:0"], 1: ["v:0", "v:5"]}
    assert result.candidate_recall == 0.5  # w was never seen

    p_video = torch.sigmoid(masked_mean(frames, mask[None]))[0]
    p_segment = torch.sigmoid(torch.tensor([[-1.0, 2.0], [3.0, -1.0]]))
    expected = p_video**0.05 * p_segment**0.95
    assert expected[1, 0] > expected[0, 0] and expected[0, 1] > expected[1, 1]


def test_localize_rejects_inputs_it_cannot_use():
    batch = _video_batch(["a", "a"], [5, 5], [[1.0, 0.0], [1.0, 0.0]])
    settings = LocalizationSettings(video_exponent=1, segment_exponent=0)
    with pytest.raises(ValueError, match="'a' appears twice"):
        localize([batch], MeanModel(2), None, [0], settings)
    batch = _video_batch(["a:1"], [5], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="cannot go into a segment id"):
        localize([batch], MeanModel(2), None, [0], settings)
    batch = _video_batch(["a"], [5], [[1.0, 0.0]])
    with pytest.raises(ValueError, match=r"whitelist classes \[2\] are outside"):
        localize([batch], MeanModel(2), None, [0, 2], settings)
    with pytest.raises(ValueError, match="needs a segment model"):
        localize([batch], MeanModel(2), None, [0], LocalizationSettings())


# --------------------------------------------------------------------------------------------
# localize.py end to end
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, str, str]:
    """A tiny video-level NeXtVLAD (one epoch, 5 uniform frames) and a segment model finetuned
    from it (one epoch); returns the directory (data under ``data/``) and both checkpoints."""
    root = tmp_path_factory.mktemp("localize")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDISTILL_CACHE", str(root / "cache"))
        video_run = [*NEXTVLAD, "data.sampler=uniform", "k=5", "trainer.max_epochs=1", "test=false"]
        train(compose_config(root, video_run, run="video"))
        video = json.loads((root / "video" / "metrics.json").read_text())["best_checkpoint"]
        train(compose_config(root, [*NEXTVLAD, *segment_finetune(video)], run="segment"))
        segment = json.loads((root / "segment" / "metrics.json").read_text())["best_checkpoint"]
    return root, video, segment


def _localize(root: Path, run_name: str, overrides: list[str]) -> dict:
    return run(compose_config(root, overrides, config_name="localize", run=run_name))


@pytest.mark.slow
def test_localize_end_to_end(checkpoints, capsys):
    root, video, segment = checkpoints
    started = time.perf_counter()
    models = [f"video_ckpt={video}", f"segment_ckpt={segment}"]
    metrics = _localize(root, "localize", [*models, "top_candidates=5"])
    elapsed = time.perf_counter() - started
    output = root / "localize" / "submission.csv"
    assert "map_at_k" in capsys.readouterr().out
    with capsys.disabled():
        print(f"\nlocalize.py on the tiny segment/test shards: {elapsed:.2f} s")

    submission = read_submission_csv(output)
    files = sorted((root / "data").glob("synthetic/*/segment/test*.tfrecord"))
    ratings = list(read_segment_ratings([str(path) for path in files]))
    whitelist = read_whitelist(
        next((root / "data").glob("synthetic/*/segment_label_ids.csv")), NUM_CLASSES
    ).tolist()
    assert set(submission) <= set(whitelist)
    assert 0.0 <= metrics["map_at_k"] <= 1.0
    assert metrics["map_at_k"] == pytest.approx(
        segment_map_at_k(submission, ratings, k=100_000, classes=whitelist), abs=1e-12
    )
    # The candidates are predict.py's top 5 (the video model on its own 5 uniform frames).
    predictions = predict(
        compose_config(
            root,
            [f"ckpt={video}", "top_k=5", "data.predict_files=segment/test*.tfrecord"],
            config_name="predict",
            run="predict",
        )
    )
    top5 = {
        line.split(",")[0]: set(map(int, line.split(",")[1].split()[::2]))
        for line in predictions.read_text().splitlines()[1:]
    }
    positives = positive_pairs(ratings)
    hits = sum(len(classes & top5[video_id]) for video_id, classes in positives.items())
    total = sum(len(classes) for classes in positives.values())
    assert metrics["candidate_recall"] == pytest.approx(hits / total)
    assert 0.0 < metrics["candidate_recall"] <= 1.0

    # every segment of every video, cut at 5 frames
    lengths = [len(v.rgb) for path in files for v in read_records(str(path), "frame")]
    assert metrics["videos"] == len(lengths)
    assert metrics["segments"] == sum(math.ceil(n / 5) for n in lengths)
    assert metrics["classes_with_entries"] == len(submission)
    assert sum(len(ids) for ids in submission.values()) == metrics["candidate_pairs"]
    record = json.loads((root / "localize" / "metrics.json").read_text())
    assert record["metrics"] == metrics
    assert record["segment_checkpoint"] == segment

    # an existing submission is kept unless overwrite=true
    again = [*models, f"output={output}"]
    with pytest.raises(FileExistsError, match="overwrite=true"):
        _localize(root, "again", again)
    _localize(root, "again", [*again, "overwrite=true", "segments_per_class=3"])
    assert all(len(ids) <= 3 for ids in read_submission_csv(output).values())


@pytest.mark.slow
def test_localize_video_scores_only_with_every_class_a_candidate(checkpoints):
    root, video, _ = checkpoints
    overrides = [
        f"video_ckpt={video}",
        "video_exponent=1",
        "segment_exponent=0",
        f"top_candidates={NUM_CLASSES}",
    ]
    metrics = _localize(root, "dummy", overrides)
    assert metrics["candidate_recall"] == 1.0  # every class is a candidate
    whitelisted = len(read_submission_csv(root / "dummy" / "submission.csv"))
    assert metrics["candidate_pairs"] == metrics["segments"] * whitelisted
    assert json.loads((root / "dummy" / "metrics.json").read_text())["segment_checkpoint"] is None


def _with_classes(checkpoint: str, path: Path, num_classes: int) -> str:
    """``checkpoint`` rebuilt as an untrained model of ``num_classes`` classes."""
    stored = torch.load(checkpoint, weights_only=True)
    entry = stored[CHECKPOINT_KEY]
    entry["model"]["num_classes"] = entry["model"]["backbone"]["num_classes"] = num_classes
    entry["data"]["num_classes"] = num_classes
    stored["state_dict"] = instantiate(entry["model"]).state_dict()
    torch.save(stored, path)
    return str(path)


@pytest.mark.slow
def test_localize_refuses_bad_inputs_before_scoring(checkpoints, tmp_path):
    root, video, segment = checkpoints
    models = [f"video_ckpt={video}", f"segment_ckpt={segment}"]
    wider = _with_classes(segment, tmp_path / "wider.ckpt", 30)
    cases = [
        ([f"video_ckpt={video}", f"segment_ckpt={wider}"], r"predicts 30 classes.*predicts 20"),
        ([*models, "top_candidates=0"], "top_candidates=0"),
        ([*models, "video_exponent=-1"], "video_exponent=-1"),
        ([*models, "segments_per_class=0"], "segments_per_class=0"),
        ([f"video_ckpt={video}"], "segment_ckpt is needed"),
        ([*models, "evaluate=maybe"], "evaluate='maybe'"),
    ]
    whitelist = tmp_path / "segment_label_ids.csv"
    whitelist.write_text("Index\n3\n25\n")
    cases.append(([*models, f"whitelist={whitelist}"], r"classes \[25\] are outside"))
    for number, (overrides, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            _localize(root, f"bad{number}", overrides)
        assert not (root / f"bad{number}" / "submission.csv").exists()
    with pytest.raises(ValueError, match="carries no segment ratings"):
        _localize(root, "unrated", [*models, "files=frame/test*.tfrecord", "evaluate=true"])
