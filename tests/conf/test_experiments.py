"""Experiment presets (conf/experiment/): every preset composes, its sweep lists what the paper's
table needs, and a tiny sweep of each runs through ``train.py -m``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from hydra_helpers import CONFIG_DIR, run_sweep
from vidistill.analysis.results import collect
from vidistill.configs import register_configs

PRESETS = sorted(
    p.stem
    for p in Path(CONFIG_DIR, "experiment").glob("*.yaml")
    if p.stem.startswith(("fewer_frames", "mod_"))
)
SMALL_NEXTVLAD = ["model.backbone.clusters=4", "model.backbone.hidden_size=16"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_with_its_sweep(preset):
    register_configs()

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params, preset
    assert cfg.task_name == preset
    assert params.seed == "0,1,2", preset  # every arm over three seeds by default
    if preset.startswith("fewer_frames_baselines"):
        assert params["data.sampler"].split(",") == [
            "uniform",
            "random",
            "first",
            "middle",
            "last",
            "first_middle_last",
        ]
        assert params.k == "6,10,15,20,30"
    if preset.startswith("fewer_frames_losses"):
        assert params.distill == "serial,parallel"
        assert len(params.losses.split(",")) == 5
    if preset == "mod_temperature":
        assert params.variant.split(",") == [
            "mix_t0",
            "mix_t1",
            "mix_t10",
            "mix_t20",
            "nextvlad",
            "nextvlad_leaf",
            "mod_t20",
        ]
    if preset.endswith("_paper"):
        assert cfg.trainer.accelerator == "gpu" and "yt8m" in cfg.data._target_.lower()
    if "variant" in params:
        for arm in params.variant.split(","):
            check_arm(preset, arm)


def check_arm(preset: str, arm: str) -> None:
    """An arm composes with its preset; the paper's arms are paper-sized (2048-wide NeXtVLADs)
    and the CPU arms are not; pretrained arms pretrain."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}", f"variant={arm}"])
    backbone = cfg.model.backbone
    hidden = (backbone.leaf if "leaf" in backbone else backbone).get("hidden_size")
    if "dbof" not in arm:
        assert (hidden == 2048) == preset.endswith("_paper"), arm
    assert cfg.pretrain.enabled == ("pretrained" in arm), arm
    assert cfg.T == 20 or arm.endswith(("t0", "t1", "t10")), arm


@pytest.mark.slow
def test_baselines_sweep(tmp_path):
    """seed=0,1 on the command line replaces the preset's three seeds."""
    directory = run_sweep(
        tmp_path,
        [
            "experiment=fewer_frames_baselines",
            *SMALL_NEXTVLAD,
            "data.sampler=first,uniform",
            "k=4",
            "seed=0,1",
        ],
    )
    table = collect(directory)
    assert sorted(table["data.sampler"]) == ["first", "first", "uniform", "uniform"]
    assert sorted(table["seed"]) == ["0", "0", "1", "1"]
    assert (table["status"] == "done").all() and table["val/gap"].between(0, 1).all()
    arms = collect(directory, by_arm=True)
    assert sorted(arms["data.sampler"]) == ["first", "uniform"] and (arms["n"] == 2).all()


@pytest.mark.slow
def test_losses_sweep(tmp_path):
    overrides = [
        "experiment=fewer_frames_losses",
        "seed=0",
        *SMALL_NEXTVLAD,
        "k=4",
        "distill=parallel",
        "losses=rep,pred_ce",
        "trainer.log_every_n_steps=1",
    ]
    table = collect(run_sweep(tmp_path, overrides))
    assert sorted(table["losses"]) == ["pred_ce", "rep"]
    assert (table["status"] == "done").all()


@pytest.mark.slow
def test_backbones_sweep(tmp_path):
    overrides = [
        "experiment=fewer_frames_backbones",
        "seed=0",
        "model=hrnn",
        "model.backbone.lower_size=16",
        "model.backbone.upper_size=16",
        "k=4",
    ]
    table = collect(run_sweep(tmp_path, overrides))
    assert len(table) == 1 and table["teacher/val/gap"].between(0, 1).all()


@pytest.mark.slow
def test_mod_temperature_sweep(tmp_path):
    overrides = [
        "experiment=mod_temperature",
        "seed=0",
        "variant=mix_t0,mix_t20",
        "model=mix",  # so that the leaf overrides below also fit the config Hydra composes first
        "model.backbone.leaf.clusters=4",
        "model.backbone.leaf.hidden_size=16",
    ]
    table = collect(run_sweep(tmp_path, overrides))
    assert list(table["variant"]) == ["mix_t0", "mix_t20"]
    assert (table["status"] == "done").all() and table["val/gap"].between(0, 1).all()


@pytest.mark.slow
def test_a_sweep_run_again_trains_only_what_did_not_finish(tmp_path):
    """A crashed job does not stop the others; running the sweep again into its directory
    trains only the crashed job (here fixed by then: its k was invalid the first time)."""
    common = ["model=logistic", "data.sampler=uniform"]
    first = tmp_path / "first"
    with pytest.raises(AssertionError):  # the sweep reports the failed job
        run_sweep(first, [*common, "k=0,3"])
    table = collect(first / "multirun")
    assert list(table["status"]) == ["missing", "done"]
    done = first / "multirun" / "1" / "metrics.json"
    stamp = done.stat().st_mtime_ns
    # the same sweep directory, the failed job's setting now valid
    run_sweep(first, [*common, "k=2,3"])
    assert done.stat().st_mtime_ns == stamp  # job 1 (k=3) was not trained again
    assert list(collect(first / "multirun")["status"]) == ["done", "done"]


@pytest.mark.slow
def test_serial_jobs_of_a_sweep_share_one_locked_teacher(tmp_path):
    """Two serial jobs running at once (joblib) need the same teacher: it is trained once, in
    <sweep>/teachers/, while the other job waits for it; both students distill from it."""
    overrides = [
        "experiment=fewer_frames_losses",
        "seed=0",
        *SMALL_NEXTVLAD,
        "k=4",
        "distill=serial",
        "losses=rep_ce,pred_ce",
        "hydra/launcher=local_parallel",
    ]
    directory = run_sweep(tmp_path, overrides)
    log = (tmp_path / "sweep.log").read_text()
    assert log.count("training the teacher first") == 1
    assert log.count("reusing the teacher trained in") == 1
    teachers = [path for path in (directory / "teachers").iterdir() if path.is_dir()]
    assert len(teachers) == 1 and teachers[0].name.startswith("NeXtVLAD-")
    table = collect(directory)
    assert list(table["status"]) == ["done", "done"]  # the teacher is not a row
    records = [json.loads((directory / run / "metrics.json").read_text()) for run in table["run"]]
    assert {record["teacher"]["directory"] for record in records} == {str(teachers[0])}
    assert table["teacher/val/gap"].nunique() == 1


@pytest.mark.slow
def test_mod_finetune_sweep_pretrains_once_and_finetunes(tmp_path):
    """A pretrained arm trains its video-level model first, in <sweep>/pretrained/, and starts
    the segment model from it; a scratch arm does not."""
    overrides = [
        "experiment=mod_finetune",
        "seed=0",
        "variant=scratch_nextvlad,pretrained_nextvlad",
        *SMALL_NEXTVLAD,
        "data.eval_batch_size=16",
        "pretrain.overrides=['trainer.max_epochs=1']",
    ]
    directory = run_sweep(tmp_path, overrides)
    table = collect(directory)
    assert list(table["variant"]) == ["scratch_nextvlad", "pretrained_nextvlad"]
    assert (table["status"] == "done").all() and table["val/map_at_k"].between(0, 1).all()
    pretrained = [path for path in (directory / "pretrained").iterdir() if path.is_dir()]
    assert len(pretrained) == 1 and (pretrained[0] / "metrics.json").is_file()
    scratch, finetuned = (
        json.loads((directory / run / "metrics.json").read_text()) for run in table["run"]
    )
    assert "pretrained" not in scratch and scratch["config"]["pretrained"] is None
    assert finetuned["pretrained"]["directory"] == str(pretrained[0])
    assert finetuned["config"]["pretrained"] == finetuned["pretrained"]["best_checkpoint"]
    video_level = json.loads((pretrained[0] / "metrics.json").read_text())["config"]
    # the video-level task and data (the segment job's own settings are not carried over)
    assert "task" not in video_level["model"] and video_level["data"]["mode"] == "frame"
    assert finetuned["config"]["model"]["task"] == "segment"
    assert video_level["model"]["backbone"] == finetuned["config"]["model"]["backbone"]
