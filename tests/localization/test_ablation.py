"""``python localize.py experiment=localization_ablation`` end to end on a tiny synthetic set."""

from __future__ import annotations

import json

import pytest
from hydra import initialize_config_dir
from omegaconf import open_dict

from hydra_helpers import CONFIG_DIR, compose_config
from vidistill.localization import ablation as localization_ablation

TRAIN = [
    "data.batch_size=16",
    "data.eval_batch_size=16",
    "data.num_workers=0",
    "callbacks.rich_progress_bar=null",
    "model.backbone.clusters=4",
    "model.backbone.hidden_size=16",
]


def test_the_ablation_reports_on_rated_files_selection_never_saw(tmp_path):
    """Segment models train on segment/validate and select on segment/tune; the ablation
    reports on segment/test, and refuses files that training or selection used."""
    cfg = compose_config(tmp_path, ["experiment=localization_ablation"], config_name="localize")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        stage = localization_ablation._stage_config(
            cfg, tmp_path / "segment", ["experiment=segment_finetune"]
        )
    assert stage.data.train_files == "segment/validate*.tfrecord"
    assert stage.data.val_files == "segment/tune*.tfrecord"
    assert cfg.files == "segment/test*.tfrecord"
    localization_ablation.check_held_out(cfg, stage)
    # A checkpoint path is set as a value: "=" in a sweep's directory names needs no quoting.
    checkpoint = str(tmp_path / "seed=0" / "video" / "checkpoints" / "epoch=2-step=9.ckpt")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        finetuned = localization_ablation._stage_config(
            cfg, tmp_path / "segment", ["experiment=segment_finetune"], pretrained=checkpoint
        )
    assert finetuned.pretrained == checkpoint
    for leaked in ("segment/tune*.tfrecord", ["segment/test*", "segment/validate0000.tfrecord"]):
        with open_dict(cfg):
            cfg.files = leaked
        with pytest.raises(ValueError, match="held out from training and selection"):
            localization_ablation.check_held_out(cfg, stage)
    with open_dict(cfg):
        cfg.files = "segment/nothing*.tfrecord"
    with pytest.raises(ValueError, match="matches no file"):
        localization_ablation.check_held_out(cfg, stage)


@pytest.mark.slow
def test_ablation_trains_its_models_and_scores_every_variant(tmp_path):
    overrides = [
        "experiment=localization_ablation",
        "ablation.video_epochs=1",
        "ablation.segment_epochs=1",
        "ablation.train_overrides=[" + ",".join(f"'{o}'" for o in TRAIN) + "]",
    ]
    # A sweep job's directory, as `localize.py -m ... seed=0,1,2` names it: its "=" ends up in
    # the checkpoint paths the stages pass on.
    cfg = compose_config(tmp_path, overrides, config_name="localize", run="seed=0")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):  # as localize.py has
        table = localization_ablation.run(cfg)
    run = tmp_path / "seed=0"
    assert set(table) == {
        "video_only",
        "segment_only_finetuned",
        "combined_finetuned",
        "segment_only_scratch",
        "combined_scratch",
    }
    assert json.loads((run / "ablation.json").read_text()) == table
    for name, metrics in table.items():
        assert 0.0 <= metrics["map_at_k"] <= 1.0, name
    # every variant reports on segment/test, a rated split the segment models never used
    for name in table:
        files = json.loads((run / "localize" / name / "metrics.json").read_text())["files"]
        assert files and all("/segment/test" in f for f in files), name
    # every variant ranks candidates of the same video model
    assert len({metrics["candidate_recall"] for metrics in table.values()}) == 1
    finetuned = json.loads((run / "segment_finetuned" / "metrics.json").read_text())
    assert finetuned["config"]["data"]["train_files"] == "segment/validate*.tfrecord"
    assert finetuned["config"]["data"]["val_files"] == "segment/tune*.tfrecord"
    assert (
        finetuned["config"]["pretrained"]
        == json.loads((run / "video" / "metrics.json").read_text())["best_checkpoint"]
    )
    # a second call reuses every stage instead of training again
    before = (run / "video" / "metrics.json").stat().st_mtime_ns
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        assert localization_ablation.run(cfg) == table
    assert (run / "video" / "metrics.json").stat().st_mtime_ns == before
