"""The debug config group (debug=fdr|overfit|profiler), and smoke tests of commands that train
a teacher or a video-level model first."""

from __future__ import annotations

import json
import subprocess

import pandas as pd

from hydra_helpers import NEXTVLAD, compose_config, run_sweep
from vidistill.layout import FINAL_CHECKPOINT
from vidistill.runs import train


def record(path) -> dict:
    return json.loads((path / "metrics.json").read_text())


def test_fast_dev_run_of_a_teacher_first_command(tmp_path):
    """A serial student under debug=fdr: the teacher is trained first, one batch, under
    fast_dev_run too (no checkpoint callback), and the student starts from its final weights."""
    cfg = compose_config(tmp_path, [*NEXTVLAD, "distill=serial", "k=5", "debug=fdr"])
    assert cfg.trainer.fast_dev_run and cfg.data.num_workers == 0 and not cfg.skip_finished
    train(cfg)
    teacher = record(tmp_path / "run" / "teacher")
    assert teacher["best_checkpoint"].endswith(f"teacher/checkpoints/{FINAL_CHECKPOINT}")
    assert teacher["global_step"] == 1 and teacher["config"]["trainer"]["fast_dev_run"]
    student = record(tmp_path / "run")
    assert student["global_step"] == 1
    assert student["config"]["distill"]["teacher"]["checkpoint"] == teacher["best_checkpoint"]
    assert 0 <= student["metrics"]["test/gap"] <= 1
    # The record names the code that made it.
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert student["git_commit"].removesuffix("-dirty") == head.strip()


def test_fast_dev_run_of_a_pretraining_first_command(tmp_path):
    """Segment finetuning that pretrains on video-level labels first (train.py composes that
    run, hence a real command): the pretraining inherits fast_dev_run instead of training its
    full epochs."""
    sweep = run_sweep(
        tmp_path, [*NEXTVLAD, "experiment=segment_finetune", "debug=fdr", "data.batch_size=16"]
    )
    (pretrained,) = [path for path in (sweep / "pretrained").iterdir() if path.is_dir()]
    assert record(pretrained)["global_step"] == 1
    assert record(pretrained)["best_checkpoint"].endswith(FINAL_CHECKPOINT)
    finetuned = record(sweep / "0")
    assert finetuned["global_step"] == 1
    assert finetuned["config"]["pretrained"] == record(pretrained)["best_checkpoint"]


def test_overfit_drives_the_training_loss_down_on_fixed_batches(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            *NEXTVLAD,
            "debug=overfit",
            "trainer.overfit_batches=2",
            "trainer.max_epochs=25",
            "trainer.log_every_n_steps=1",
            "model.optimizer.lr=0.01",
            "test=false",
        ],
    )
    assert not cfg.data.shuffle
    train(cfg)
    log = pd.read_csv(tmp_path / "run" / "csv" / "metrics.csv")
    loss = log["train/loss"].dropna().to_numpy()
    assert len(loss) == 50  # 2 batches x 25 epochs, the same two batches each epoch
    # The loss of one batch at the start and at the end (its steps alternate with the other's).
    assert loss[-2] < 0.2 * loss[0] and loss[-1] < 0.2 * loss[1]


def test_profiler_debug_run(tmp_path):
    cfg = compose_config(
        tmp_path, [*NEXTVLAD, "debug=profiler", "+trainer.limit_train_batches=2", "test=false"]
    )
    train(cfg)
    report = (tmp_path / "run" / "fit-profile.txt").read_text()
    assert "Profiler Report" in report and "run_training_epoch" in report


def test_a_teacher_kept_without_its_checkpoint_is_trained_again(tmp_path):
    """Evidence directories keep a teacher's record but not its checkpoint: a student that
    needs it trains it again instead of failing on the missing file."""
    shared = tmp_path / "teachers"
    overrides = [
        *NEXTVLAD,
        "distill=serial",
        "k=5",
        "debug=fdr",
        f"distill.teacher.shared_dir={shared}",
    ]
    train(compose_config(tmp_path, overrides, run="first"))
    (teacher,) = [path for path in shared.iterdir() if path.is_dir()]
    checkpoint = teacher / "checkpoints" / FINAL_CHECKPOINT
    assert checkpoint.is_file()
    checkpoint.unlink()
    train(compose_config(tmp_path, overrides, run="second"))
    assert checkpoint.is_file()
    assert record(tmp_path / "second")["teacher"]["best_checkpoint"] == str(checkpoint)
