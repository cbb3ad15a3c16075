"""The localization pipeline: its settings, localize() with stand-in models, and localize.py
end to end on a tiny synthetic set."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from hydra_helpers import compose_config, segment_finetune
from vidistill.data import read_records
from vidistill.lit.checkpoints import CHECKPOINT_KEY
from vidistill.localization.pipeline import LocalizationSettings, localize, run
from vidistill.localization.scoring import positive_pairs
from vidistill.localization.submission import (
    read_segment_ratings,
    read_submission_csv,
    read_whitelist,
)
from vidistill.metrics.segments import segment_map_at_k
from vidistill.models.base import masked_mean
from vidistill.runs import train, write_predictions

NUM_CLASSES = 20
NEXTVLAD = ["model=nextvlad", "model.backbone.clusters=4", "model.backbone.hidden_size=16"]


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


# --------------------------------------------------------------------------------------------
# The core pipeline, with stand-in models
# --------------------------------------------------------------------------------------------


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
    predictions = write_predictions(
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
