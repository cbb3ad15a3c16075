"""The distillation commands end to end on a tiny synthetic set, and their bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hydra_helpers import NEXTVLAD, compose_config
from vidistill.runs import evaluate, teachers, train

HRNN = ["model=hrnn", "model.backbone.lower_size=16", "model.backbone.upper_size=16"]
ONE_EPOCH = ["trainer.max_epochs=1", "test=false"]


def record_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def header_of(run_dir: Path) -> list[str]:
    return (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")


@pytest.mark.slow
def test_serial_trains_the_teacher_first_then_a_student_that_stands_alone(tmp_path):
    """`python train.py model=hrnn distill=serial k=30`, small: the teacher is trained on all
    frames in <run>/teacher, the student on k frames; the student's checkpoint has no teacher in
    it and evaluates on its own k frames."""
    cfg = compose_config(
        tmp_path, [*HRNN, "distill=serial", "k=8", "trainer.log_every_n_steps=1", "test=true"]
    )
    train(cfg)
    run = tmp_path / "run"
    teacher, student = record_of(run / "teacher"), record_of(run)
    assert teacher["config"]["data"]["sampler"] == "all"
    assert teacher["config"]["distill"]["_target_"] == "vidistill.distill.LabelLoss"
    assert student["teacher"]["metrics"] == teacher["metrics"]
    assert student["config"]["data"]["sampler"] == "uniform"
    assert student["config"]["distill"]["teacher"]["checkpoint"] == teacher["best_checkpoint"]
    for key in ("test/gap", "test/map", "val/gap"):
        assert 0.0 < student["metrics"][key] <= 1.0
    assert {"train/rep", "train/pred", "train/ce"} <= set(header_of(run))
    weights = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not [key for key in weights if key.startswith("objective.teacher")]
    again = evaluate(
        compose_config(tmp_path, [f"ckpt={student['best_checkpoint']}"], "eval", run="eval")
    )
    assert again["test/gap"] == pytest.approx(student["metrics"]["test/gap"])


@pytest.mark.slow
def test_serial_run_interrupted_while_training_the_teacher_resumes_there(tmp_path):
    """The teacher stage stopped after its first epoch (its last.ckpt exists, no metrics.json,
    no student yet): `ckpt_path=last` resumes the teacher, then trains the student from scratch."""
    common = [*HRNN, "distill=serial", "k=8", "test=false"]
    train(compose_config(tmp_path, [*common, "trainer.max_epochs=1"], run="run"))
    run = tmp_path / "run"
    (run / "teacher" / "metrics.json").unlink()
    (run / "metrics.json").unlink()
    for path in (run / "checkpoints").iterdir():
        path.unlink()
    train(compose_config(tmp_path, [*common, "trainer.max_epochs=2", "ckpt_path=last"]))
    assert record_of(run / "teacher")["epochs"] == 2
    assert record_of(run)["global_step"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        [*NEXTVLAD, "distill=parallel", "k=5", "data.sampler=uniform"],
        [*HRNN, "k=8", "data.sampler=first"],
        [
            *NEXTVLAD,
            "distill=two_stage",
            "callbacks.loss_schedule.stages.0.epochs=1",
        ],
        [
            *HRNN,
            "distill=serial",
            "k=8",
            "+model@distill.teacher.model=nextvlad",
            *[f"distill.teacher.{override}" for override in NEXTVLAD[1:]],
        ],
    ],
    ids=[
        "parallel",
        "first-k-baseline",
        "two-stage-with-teacher-checkpoint",
        "nextvlad-teacher-hrnn-student",
    ],
)
def test_distillation_commands_run_end_to_end(tmp_path, command):
    if "distill=two_stage" in command:  # a teacher checkpoint given on the command line
        teacher = compose_config(tmp_path, [*NEXTVLAD, *ONE_EPOCH], run="teacher")
        train(teacher)
        command = [
            *command,
            f"distill.teacher.checkpoint={record_of(tmp_path / 'teacher')['best_checkpoint']}",
        ]
    train(
        compose_config(tmp_path, [*command, "trainer.max_epochs=2", "trainer.log_every_n_steps=1"])
    )
    run = tmp_path / "run"
    record = record_of(run)
    assert 0.0 < record["metrics"]["test/gap"] <= 1.0
    header = header_of(run)
    if "distill=parallel" in command:
        assert "train/teacher/ce" in header
    if "+model@distill.teacher.model=nextvlad" in command:
        teacher = record_of(run / "teacher")["config"]["model"]["backbone"]["_target_"]
        assert teacher == "vidistill.models.NeXtVLAD" and "train/rep" in header
    if "distill=two_stage" in command:
        assert not (run / "teacher").exists()  # the given checkpoint was used
        rows = (run / "csv" / "metrics.csv").read_text().splitlines()[1:]
        logged = [dict(zip(header, row.split(","), strict=True)) for row in rows]
        stage_of = {
            int(row["epoch"]): ("rep" if row["train/rep"] else "ce")
            for row in logged
            if row.get("train/rep") or row.get("train/ce")
        }
        assert stage_of == {0: "rep", 1: "ce"}


@pytest.mark.slow
def test_online_mixture_command(tmp_path):
    """`python train.py model=mod distill=online T=20`, with tiny leaves, its four mixtures
    placed (all on the CPU here)."""
    cfg = compose_config(
        tmp_path,
        [
            "model=mod",
            "model.backbone.leaf.clusters=4",
            "model.backbone.leaf.hidden_size=16",
            "distill=online",
            "T=20",
            "model.placement=[cpu,cpu,cpu,cpu]",  # the model-parallel path, on one device type
            "trainer.max_epochs=1",
            "trainer.log_every_n_steps=1",
        ],
    )
    train(cfg)
    record = record_of(tmp_path / "run")
    assert 0.0 < record["metrics"]["test/gap"] <= 1.0
    assert {"train/kl/level1", "train/kl/level2"} <= set(header_of(tmp_path / "run"))


@pytest.mark.slow
def test_bad_distillation_input_fails_before_training(tmp_path):
    teacher = compose_config(tmp_path, [*NEXTVLAD, *ONE_EPOCH], run="nextvlad")
    train(teacher)
    nextvlad_checkpoint = record_of(tmp_path / "nextvlad")["best_checkpoint"]
    cases = [
        (["distill=serial", "+distill.weights.l_rep=1"], ValueError, "unknown loss term.*l_rep"),
        (
            [
                *HRNN,
                "distill=serial",
                "+model@distill.teacher.model=hrnn",
                f"distill.teacher.checkpoint={nextvlad_checkpoint}",
            ],
            ValueError,
            "teacher.checkpoint: .*trained as VideoClassifier\\(backbone=NeXtVLAD\\).* "
            "does not fit the configured model HRNN",
        ),
        (
            ["distill=serial", "k=10", "data.teacher_sampler=first", "+data.teacher_k=5"],
            ValueError,
            "student sees up to 10 frames .* teacher only 5",
        ),
        (
            ["distill=serial", "distill.teacher=null"],
            ValueError,
            "serial distillation needs a teacher",
        ),
        (["model=mix", "distill=online", "T=-1"], ValueError, "T must be >= 0"),
        (
            ["distill=serial", "distill.terms.pred.distance=l1"],
            ValueError,
            "one of bernoulli_kl, mse, softmax_kl",
        ),
    ]
    for i, (overrides, error, message) in enumerate(cases):
        run = f"bad{i}"
        with pytest.raises(error, match=message):
            train(compose_config(tmp_path, [*overrides, *ONE_EPOCH], run=run))
        assert not (tmp_path / run / "checkpoints").exists(), overrides
        assert not (tmp_path / run / "teacher").exists(), overrides


@pytest.mark.slow
def test_resumed_parallel_run_matches_an_uninterrupted_one(tmp_path):
    """The teacher trained alongside and the L_rep projection live in the checkpoint: one epoch
    then a resume from last.ckpt equals two epochs straight, weights and metrics."""
    common = [
        *NEXTVLAD,
        "distill=parallel",
        "k=5",
        # a teacher of its own size, so L_rep has a projection
        "+model@distill.teacher.model=nextvlad",
        *[
            f"distill.teacher.{override.partition('=')[0]}={override.partition('=')[2]}"
            for override in NEXTVLAD[1:]
        ],
        "distill.teacher.model.backbone.hidden_size=24",
        "test=false",
    ]
    train(compose_config(tmp_path, [*common, "trainer.max_epochs=2"], run="straight"))
    train(compose_config(tmp_path, [*common, "trainer.max_epochs=1"], run="interrupted"))
    train(
        compose_config(
            tmp_path, [*common, "trainer.max_epochs=2", "ckpt_path=last"], run="interrupted"
        )
    )
    assert (
        record_of(tmp_path / "interrupted")["metrics"]
        == record_of(tmp_path / "straight")["metrics"]
    )
    weights = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for run in ("straight", "interrupted")
    ]
    assert any(key.startswith("objective.terms.rep.projections.0") for key in weights[0])
    assert any(key.startswith("objective.teacher.") for key in weights[0])
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_a_shared_teacher_is_named_by_what_it_depends_on(tmp_path):
    """Serial runs that differ only in the student's settings (k, loss weights, T) share a
    teacher directory; a teacher setting (its size, the seed, the data) makes another one."""

    def directory(*overrides: str) -> Path:
        cfg = compose_config(
            tmp_path,
            ["distill=serial", f"distill.teacher.shared_dir={tmp_path / 'teachers'}", *overrides],
        )
        path, shared = teachers.teacher_directory(cfg)
        assert shared and path.parent == tmp_path / "teachers"
        return path

    base = directory("k=10")
    assert directory("k=30", "distill.weights.pred=0.01", "T=5") == base
    # the two-stage losses add a loss schedule, a student's callback the teacher runs without
    assert directory("losses=rep") == directory("losses=pred_ce") == base
    for loading in ("data.num_workers=2", "data.pin_memory=true", "data.prefetch_factor=4"):
        assert directory(loading) == base  # how data is read, not what
    for other in ("model.backbone.clusters=16", "seed=1", "data.generator.num_train=64"):
        assert directory(other) != base, other
    single, shared = teachers.teacher_directory(compose_config(tmp_path, ["distill=serial"]))
    assert not shared and single == tmp_path / "run" / "teacher"
