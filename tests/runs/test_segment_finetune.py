"""Segment finetuning: masked BCE, a video-level start, and validation by segment MAP@K."""

from __future__ import annotations

import json

import pytest
import torch

from hydra_helpers import compose_config, segment_finetune
from vidistill.distill import multilabel_bce
from vidistill.lit.checkpoints import read_checkpoint
from vidistill.runs import (
    build,
    build_datamodule,
    build_objective,
    start_from_pretrained,
    train,
)

NEXTVLAD = ["model=nextvlad", "model.backbone.clusters=4", "model.backbone.hidden_size=16"]


def test_unrated_pairs_give_no_gradient():
    logits = torch.randn(3, 4, requires_grad=True)
    labels = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    rated = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    multilabel_bce(logits, labels, rated).backward()
    assert torch.all(logits.grad[rated == 0] == 0)
    assert torch.all(logits.grad[rated == 1] != 0)
    # the rated pairs' loss is the plain BCE of those pairs, summed per row, averaged over rows
    expected = (
        torch.nn.functional.binary_cross_entropy_with_logits(
            logits[rated == 1], labels[rated == 1], reduction="sum"
        )
        / 3
    )
    assert multilabel_bce(logits, labels, rated).item() == pytest.approx(expected.item())


def test_three_rated_splits_train_select_and_report(tmp_path):
    """data=synthetic_segments trains on segment/validate, selects checkpoints on segment/tune
    and reports the segment model's own MAP@K on segment/test, the split localize.py reports
    on, which neither training nor selection reads."""
    cfg = compose_config(tmp_path, [*NEXTVLAD, "experiment=segment_finetune"])
    assert cfg.data.mode == "segment"
    assert cfg.data.train_files == "segment/validate*.tfrecord"
    assert cfg.data.val_files == "segment/tune*.tfrecord"
    assert cfg.optimized_metric == "val/map_at_k"
    localize = compose_config(tmp_path, [], config_name="localize", run="localize")
    assert localize.files == cfg.data.test_files == "segment/test*.tfrecord"
    datamodule = build_datamodule(cfg)
    directory = datamodule.directory
    matched = {
        split: {p.name for p in directory.glob(pattern)}
        for split, pattern in (
            ("train", cfg.data.train_files),
            ("val", cfg.data.val_files),
            ("test", localize.files),
        )
    }
    assert all(matched.values())
    assert not (matched["train"] & matched["val"] or matched["val"] & matched["test"])
    assert not matched["train"] & matched["test"]


@pytest.mark.slow
def test_finetune_from_a_video_level_checkpoint(tmp_path):
    train(compose_config(tmp_path, [*NEXTVLAD, "trainer.max_epochs=1", "test=false"], run="video"))
    video = json.loads((tmp_path / "video" / "metrics.json").read_text())["best_checkpoint"]
    cfg = compose_config(tmp_path, [*NEXTVLAD, *segment_finetune(video, epochs=2)], run="segment")
    # the finetuned model starts from the video-level backbone, weight for weight
    build_datamodule(cfg)  # settles num_classes from the data's vocabulary
    model = build(cfg.model, objective=build_objective(cfg))
    start_from_pretrained(model, video)
    pretrained = read_checkpoint(video)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, pretrained[key]), key
    assert not model.hparams.init_output_bias  # the trained biases are kept
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.75]

    train(cfg)
    record = json.loads((tmp_path / "segment" / "metrics.json").read_text())
    assert 0.0 < record["metrics"]["val/map_at_k"] <= 1.0
    assert record["config"]["data"]["mode"] == "segment"
    wrong = ["experiment=segment_finetune", "model=hrnn", f"pretrained={video}"]
    with pytest.raises(ValueError, match="pretrained: .*does not fit the configured model HRNN"):
        train(compose_config(tmp_path, [*wrong, "data.batch_size=16"], run="wrong"))


@pytest.mark.slow
def test_finetune_a_mixture_with_online_distillation(tmp_path):
    mix = ["model=mix", "model.backbone.leaf.clusters=4", "model.backbone.leaf.hidden_size=16"]
    common = [*mix, "distill=online", "T=20"]
    train(compose_config(tmp_path, [*common, "trainer.max_epochs=1", "test=false"], run="video"))
    video = json.loads((tmp_path / "video" / "metrics.json").read_text())["best_checkpoint"]
    train(
        compose_config(
            tmp_path,
            [*common, *segment_finetune(video), "trainer.log_every_n_steps=1"],
            run="segment",
        )
    )
    record = json.loads((tmp_path / "segment" / "metrics.json").read_text())
    assert 0.0 < record["metrics"]["val/map_at_k"] <= 1.0
    header = (tmp_path / "segment" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/kl/level1" in header and "train/bce/level1" in header
