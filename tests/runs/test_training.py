"""Whole training runs through the real configs: every preset, resume, bad losses, DDP on CPU."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from hydra_helpers import CONFIG_DIR, compose_config
from vidistill.lit import VideoClassifier
from vidistill.models import FrameMeanLogistic
from vidistill.runs import resume, train
from vidistill.runs import training as train_module

# Small enough for seconds per run on 2 CPU cores, large enough to exercise every layer.
SMALL_OVERRIDES = {
    "nextvlad": ["model.backbone.clusters=8", "model.backbone.hidden_size=64"],
    "netvlad": ["model.backbone.clusters=4", "model.backbone.hidden_size=32"],
    "dbof": ["model.backbone.cluster_size=64", "model.backbone.hidden_size=32"],
}
# mod_paper is 12 paper-sized NeXtVLADs, 1.07G parameters: too large to train in the suite.
PRESETS = sorted(
    p.stem for p in Path(CONFIG_DIR, "model").glob("[!_]*.yaml") if p.stem != "mod_paper"
)


def metrics_of(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_fast_dev_run_of_every_model_preset(tmp_path, preset):
    """One training and one validation batch of every conf/model preset, paper sizes included."""
    cfg = compose_config(
        tmp_path,
        [f"model={preset}", "+trainer.fast_dev_run=1", "data.batch_size=4", "test=false"],
    )
    train(cfg)
    metrics = metrics_of(tmp_path / "run")
    assert 0.0 <= metrics["val/gap"] <= 1.0


@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    """Two epochs straight, against one epoch then a resume from last.ckpt: NeXtVLAD has dropout
    and BatchNorm, so this holds only if every epoch's randomness is a function of (seed, epoch)."""
    common = ["model=nextvlad", *SMALL_OVERRIDES["nextvlad"], "test=false"]
    straight = compose_config(tmp_path, [*common, "trainer.max_epochs=2"], run="straight")
    train(straight)
    first = compose_config(tmp_path, [*common, "trainer.max_epochs=1"], run="interrupted")
    train(first)
    resumed = compose_config(
        tmp_path, [*common, "trainer.max_epochs=2", "ckpt_path=last"], run="interrupted"
    )
    train(resumed)
    assert metrics_of(tmp_path / "interrupted") == metrics_of(tmp_path / "straight")
    weights = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for run in ("straight", "interrupted")
    ]
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


class CrashAfterFirstEpoch(pl.Callback):
    """Stands for a killed job: raises as the second epoch starts, the first one's checkpoints
    written."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


class BatchCounter(pl.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.batches += 1


@pytest.mark.slow
def test_an_interrupted_job_run_again_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    """ckpt_path=auto (the default): the same job run again in its directory continues from
    last.ckpt and ends exactly where an uninterrupted run does."""
    common = ["model=nextvlad", *SMALL_OVERRIDES["nextvlad"], "test=false"]
    train(compose_config(tmp_path, common, run="straight"))
    build_trainer = train_module.build_trainer
    with monkeypatch.context() as patch:
        patch.setattr(
            train_module,
            "build_trainer",
            lambda cfg, callbacks: build_trainer(cfg, [*callbacks, CrashAfterFirstEpoch()]),
        )
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(compose_config(tmp_path, common, run="crashed"))
    assert not (tmp_path / "crashed" / "metrics.json").exists()
    counter = BatchCounter()
    with monkeypatch.context() as patch:
        patch.setattr(
            train_module,
            "build_trainer",
            lambda cfg, callbacks: build_trainer(cfg, [*callbacks, counter]),
        )
        train(compose_config(tmp_path, common, run="crashed"))
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert counter.batches == straight["global_step"] // 2  # only the second epoch was trained
    assert metrics_of(tmp_path / "crashed") == metrics_of(tmp_path / "straight")


def test_a_finished_run_is_skipped_only_for_the_same_job(tmp_path):
    """skip_finished compares the job's overrides: the same job is not trained again, another
    job sent to the same directory (an Optuna trial of a new study) is."""
    common = ["model=logistic", "data.sampler=uniform", "trainer.max_epochs=1", "test=false"]
    train(compose_config(tmp_path, [*common, "k=3"]))
    record = tmp_path / "run" / "metrics.json"
    stamp = record.stat().st_mtime_ns
    train(compose_config(tmp_path, [*common, "k=3"]))
    assert record.stat().st_mtime_ns == stamp
    train(compose_config(tmp_path, [*common, "k=4"]))
    written = json.loads(record.read_text())
    assert "k=4" in written["overrides"] and written["config"]["k"] == 4


def test_auto_resumes_the_newer_of_last_and_the_slurm_checkpoint(tmp_path):
    """Lightning saves hpc_ckpt_<n>.ckpt in the run directory before SLURM requeues a job;
    ckpt_path=auto takes whichever of it and last.ckpt was written last, and neither when
    another job wrote them."""
    common = ["model=logistic", "data.sampler=uniform", "k=3", "trainer.max_epochs=1"]
    cfg = compose_config(tmp_path, common)
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    hpc = tmp_path / "run" / "hpc_ckpt_1.ckpt"
    shutil.copy(last, hpc)
    overrides = train_module.job_overrides()
    os.utime(hpc, ns=(last.stat().st_mtime_ns + 10**9,) * 2)
    assert resume.resume_path(cfg, overrides) == str(hpc)
    os.utime(last, ns=(hpc.stat().st_mtime_ns + 10**9,) * 2)
    assert resume.resume_path(cfg, overrides) == str(last)
    assert resume.resume_path(cfg, [*overrides, "k=4"]) is None


def test_non_finite_loss_names_the_step_and_the_term():
    model = VideoClassifier(FrameMeanLogistic(5), num_classes=5)
    with torch.no_grad():
        model.backbone.classifier.linear.bias[2] = float("nan")
    frames = torch.zeros(3, 4, 1152)
    batch = {
        "frames": frames,
        "mask": torch.ones(3, 4, dtype=torch.bool),
        "labels": torch.zeros(3, 5),
        "ids": ["a", "b", "c"],
    }
    with pytest.raises(FloatingPointError, match=r"train/bce is nan at global step 0"):
        model.training_step(batch, 0)


@pytest.mark.slow
def test_two_process_ddp_spawn_on_cpu(tmp_path):
    """trainer=ddp with ddp_spawn on gloo: two processes train, validate with synced metrics
    and rank 0 writes the metrics file and checkpoints."""
    cfg = compose_config(
        tmp_path,
        [
            "trainer=ddp",
            "trainer.strategy=ddp_spawn",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_epochs=1",
            "test=false",
        ],
    )
    train(cfg)
    metrics = metrics_of(tmp_path / "run")
    assert 0.0 < metrics["val/gap"] <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
