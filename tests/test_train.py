"""train.py end to end on a tiny synthetic set: config -> objects -> fit -> evaluate -> metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from vidistill.runner import train

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
TINY_DATA = [
    "data.generator.num_classes=20",
    "data.generator.num_segment_classes=10",
    "data.generator.num_clusters=5",
    "data.generator.num_train=96",
    "data.generator.num_validate=48",
    "data.generator.num_test=48",
    "data.generator.num_segment=8",
    "data.generator.train_shards=2",
    "data.generator.validate_shards=2",
    "data.generator.test_shards=2",
    "data.generator.segment_shards=1",
    "data.generator.mean_frames=40",
    "data.generator.min_frames=20",
    "data.generator.max_frames=80",
    "data.batch_size=16",
    "data.num_workers=0",
]


def compose_config(tmp_path: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config",
            return_hydra_config=True,
            overrides=[
                *TINY_DATA,
                "trainer.max_epochs=2",
                "callbacks.rich_progress_bar=null",
                f"paths.root_dir={tmp_path}",
                f"paths.data_dir={tmp_path / 'data'}",
                *overrides,
            ],
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    Path(cfg.paths.output_dir).mkdir(parents=True)
    return cfg


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
