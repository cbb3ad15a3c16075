"""``python localize.py experiment=localization_ablation`` end to end on a tiny synthetic set."""

from __future__ import annotations

import json

import pytest
from hydra import initialize_config_dir

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


@pytest.mark.slow
def test_ablation_trains_its_models_and_scores_every_variant(tmp_path):
    overrides = [
        "experiment=localization_ablation",
        "ablation.video_epochs=1",
        "ablation.segment_epochs=1",
        "ablation.train_overrides=[" + ",".join(f"'{o}'" for o in TRAIN) + "]",
    ]
    cfg = compose_config(tmp_path, overrides, config_name="localize")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):  # as localize.py has
        table = localization_ablation.run(cfg)
    run = tmp_path / "run"
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
    # every variant ranks candidates of the same video model
    assert len({metrics["candidate_recall"] for metrics in table.values()}) == 1
    finetuned = json.loads((run / "segment_finetuned" / "metrics.json").read_text())
    assert (
        finetuned["config"]["pretrained"]
        == json.loads((run / "video" / "metrics.json").read_text())["best_checkpoint"]
    )
    # a second call reuses every stage instead of training again
    before = (run / "video" / "metrics.json").stat().st_mtime_ns
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        assert localization_ablation.run(cfg) == table
    assert (run / "video" / "metrics.json").stat().st_mtime_ns == before
