"""train.py end to end on a tiny synthetic set: config -> objects -> fit -> evaluate -> metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hydra_helpers import compose_config
from vidistill.runs import train


def test_default_training_writes_metrics(tmp_path):
    cfg = compose_config(tmp_path, [])
    value = train(cfg)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    metrics = record["metrics"]
    assert value == pytest.approx(metrics["val/gap"])
    for key in ("val/gap", "val/map", "val/hit1", "val/perr", "test/gap", "test/map"):
        assert 0.0 <= metrics[key] <= 1.0
    assert record["config"]["num_classes"] == 20  # read from the generated vocabulary.csv
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert Path(record["best_checkpoint"]).exists()


def test_k_frame_baseline_and_bad_overrides(tmp_path):
    cfg = compose_config(
        tmp_path, ["data.sampler=uniform", "k=5", "trainer.max_epochs=1", "test=false"]
    )
    assert train(cfg) is not None
    with pytest.raises(ValueError, match="num_classes=7 but the data's vocabulary has 20"):
        train(compose_config(tmp_path / "b", ["num_classes=7"]))
    with pytest.raises(ValueError, match="unknown frame sampler 'unifrom'"):
        train(compose_config(tmp_path / "c", ["data.sampler=unifrom"]))
    with pytest.raises(Exception, match="num_trian"):
        compose_config(tmp_path / "d", ["data.generator.num_trian=5"])
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        train(compose_config(tmp_path / "e", ["data.sampler=uniform", "k=0"]))
    with pytest.raises(ValueError, match="k=400 frames but videos are truncated to max_frames=300"):
        train(compose_config(tmp_path / "f", ["data.sampler=first", "k=400"]))
    with pytest.raises(Exception, match="cluster"):  # a typo in a model key is refused by name
        compose_config(tmp_path / "g", ["model=nextvlad", "model.backbone.cluster=8"])
