"""vidistill.analysis: tables, logs and model outputs of tiny real runs (trained once per
module, in process), and the pure helpers on hand-made inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hydra_helpers import NEXTVLAD, compose_config
from vidistill import analysis
from vidistill.lit.checkpoints import load_model
from vidistill.runs import evaluate, train

# A mixture of two tiny NeXtVLADs (model=mix has three) is enough to tell members apart.
MIX = [
    "model=mix",
    "model.backbone.branching=[2]",
    "model.backbone.leaf.clusters=4",
    "model.backbone.leaf.groups=4",
    "model.backbone.leaf.hidden_size=16",
]
# Three training steps of one epoch, each logged; validation and test on every video. Batches
# are padded to the tiny set's longest video (80 frames), not 300.
TINY_RUN = [
    "data.max_frames=80",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "trainer.log_every_n_steps=1",
    "test=true",
]
CLASSIFIER_DECAY = 1e-3


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A serial distillation run (its teacher trained first in <run>/teacher; the student on
    uniform 6 frames) and a mixture of two NeXtVLADs with online distillation at T = 20,
    three training steps each, every one logged."""
    root = tmp_path_factory.mktemp("analysis")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDISTILL_CACHE", str(root / "cache"))
        train(compose_config(root, [*NEXTVLAD, *TINY_RUN, "distill=serial", "k=6"], run="serial"))
        # The mixture on 10 uniform frames: cheaper, and what a checkpoint stores is exercised.
        mix = [*MIX, *TINY_RUN, "distill=online", "T=20", "data.sampler=uniform", "k=10"]
        train(
            compose_config(
                root, [*mix, f"model.classifier_weight_decay={CLASSIFIER_DECAY}"], run="mix"
            )
        )
    return {"root": root, "serial": root / "serial", "mix": root / "mix"}


def backbone_embeddings(checkpoint: Path, run_dir: Path) -> tuple[list[str], torch.Tensor]:
    """The test videos' ids and embeddings [N, E] as the training code path computes them:
    the run's data module with the checkpoint's frame selection, its test loader and device
    hook, then the model's backbone."""
    model, info = load_model(checkpoint)
    config = json.loads((run_dir / "metrics.json").read_text())["config"]["data"]
    config.update(info["data"]["frames"])
    config.update(teacher_sampler=None, teacher_k=None)
    from hydra.utils import instantiate

    datamodule = instantiate(config, _convert_="all")
    datamodule.setup("test")
    ids, embeddings = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            batch = datamodule.on_after_batch_transfer(batch, 0)
            embeddings.append(model.backbone(batch["frames"], batch["mask"]).embedding)
            ids.extend(batch["ids"])
    return ids, torch.cat(embeddings)


# --------------------------------------------------------------------------------------------
# Runs and checkpoints
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_embed_gives_the_backbone_output_one_row_per_video(runs):
    run = runs["serial"]
    files = analysis.split_files(run, "test")
    assert len(files) == 2 and all(Path(file).is_file() for file in files)
    student_checkpoint = analysis.best_checkpoint(run)
    student = analysis.embed(student_checkpoint, files, batch_size=10)
    ids, expected = backbone_embeddings(student_checkpoint, run)
    assert student.ids == ids and len(set(ids)) == 48  # every test video once, in file order
    assert student.embeddings.shape == (48, expected.shape[1])
    np.testing.assert_allclose(student.embeddings, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert student.labels.shape == (48, 20) and student.labels.dtype == bool
    assert student.labels.any(1).all()  # every synthetic video has a label
    assert student.frames["sampler"] == "uniform" and student.frames["k"] == 6


@pytest.mark.slow
def test_teacher_and_student_embed_the_same_videos_from_their_own_frames(runs):
    run = runs["serial"]
    files = analysis.split_files(run, "test")
    teacher_checkpoint = analysis.teacher_checkpoint(run)
    assert teacher_checkpoint.parent.parent == run / "teacher"
    teacher = analysis.embed(teacher_checkpoint, files, max_videos=30)
    student = analysis.embed(analysis.best_checkpoint(run), files, max_videos=30)
    assert teacher.ids == student.ids and len(teacher.ids) == 30
    assert teacher.frames["sampler"] == "all" and student.frames["sampler"] == "uniform"
    _, expected = backbone_embeddings(teacher_checkpoint, run / "teacher")
    np.testing.assert_allclose(teacher.embeddings, expected[:30].numpy(), rtol=1e-5, atol=1e-6)
    # The student on all frames computes something else than on its 6: the sampler is applied.
    everything = analysis.embed(analysis.best_checkpoint(run), files, max_videos=30, sampler="all")
    assert not np.allclose(everything.embeddings, student.embeddings)
    gap = analysis.representation_gap(teacher.embeddings, student.embeddings)
    assert gap["same_video"] == pytest.approx(
        ((teacher.embeddings - student.embeddings) ** 2).sum(1).mean(), rel=1e-5
    )
    # Same size, trained without a projection: projection=True changes nothing.
    projected = analysis.embed(analysis.best_checkpoint(run), files, max_videos=30, projection=True)
    np.testing.assert_array_equal(projected.embeddings, student.embeddings)


@pytest.mark.slow
def test_evaluate_members_scores_each_member_as_eval_py_does(runs, tmp_path):
    run, root = runs["mix"], runs["root"]
    checkpoint = analysis.best_checkpoint(run)
    table = analysis.evaluate_members(checkpoint, analysis.split_files(run, "test"))
    assert list(table["member"]) == ["mixture", "[0]", "[1]"]
    assert list(table["depth"]) == [0, 1, 1]
    record = analysis.read_record(run)
    mixture = table.iloc[0]
    assert mixture["gap"] == pytest.approx(record["metrics"]["test/gap"])
    assert mixture["map"] == pytest.approx(record["metrics"]["test/map"])
    eval_overrides = [f"ckpt={checkpoint}", "member=[1]", f"paths.data_dir={root / 'data'}"]
    alone = evaluate(compose_config(tmp_path, eval_overrides, "eval"))
    assert table.iloc[2]["gap"] == pytest.approx(alone["test/gap"])
    assert table.iloc[2]["map"] == pytest.approx(alone["test/map"])
    assert np.isnan(mixture["gate"]) and table["gate"][1:].sum() == pytest.approx(1.0)


@pytest.mark.slow
def test_classifier_l2_is_the_decay_applied_to_the_classifiers(runs):
    checkpoint = analysis.best_checkpoint(runs["mix"])
    model, _ = load_model(checkpoint)
    squares = sum(
        float((parameter.detach().double() ** 2).sum())
        for member in model.backbone.members
        for parameter in member.classifier.parameters()
    )
    l2 = analysis.classifier_l2(checkpoint)
    assert l2["weight_decay"] == CLASSIFIER_DECAY
    assert l2["sum_of_squares"] == pytest.approx(squares)
    assert l2["penalty"] == pytest.approx(CLASSIFIER_DECAY / 2 * squares)
    # Training logged the same penalty at every step (train/l2); its last value was taken
    # before the last optimizer step, which moves each weight by about the learning rate.
    logged = analysis.read_log(runs["mix"])["train/l2"].dropna()
    assert len(logged) == analysis.read_record(runs["mix"])["global_step"]
    assert l2["penalty"] == pytest.approx(logged.iloc[-1], rel=0.1)


@pytest.mark.slow
def test_read_log_merges_each_step_into_one_row(runs):
    run = runs["mix"]
    log = analysis.read_log(run)
    steps = analysis.read_record(run)["global_step"]
    assert log["step"].is_unique and log["step"].is_monotonic_increasing
    for name in ("train/loss", "train/bce/level0", "train/bce/level1", "train/kl/level1"):
        assert name in log
    assert "train/l2" in log  # classifier_weight_decay > 0; logged beside the loss, not in it
    curves = analysis.training_curves(log)
    # Every training step logged (log_every_n_steps=1), and the terms sum to the loss.
    assert list(curves.index) == list(range(steps))
    assert not [column for column in curves if "lr-" in column]
    terms = curves[["train/bce/level0", "train/bce/level1", "train/kl/level1"]].sum(axis=1)
    np.testing.assert_allclose(terms, curves["train/loss"], rtol=1e-4)
    # The epoch's validation shares its step's row with that step's training terms; the best
    # checkpoint's validation and test follow, one step later.
    validated = log.dropna(subset=["val/gap"])
    assert list(validated["step"]) == [steps - 1, steps]
    assert validated["train/loss"].notna().tolist() == [True, False]
    assert log.iloc[-1]["test/gap"] == pytest.approx(
        analysis.read_record(run)["metrics"]["test/gap"]
    )


@pytest.mark.slow
def test_read_log_names_the_missing_file(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "csv" / "metrics.csv")):
        analysis.read_log(tmp_path)
    # A metrics.csv path works as well as its run directory.
    run = runs["serial"]
    log = analysis.read_log(run)
    pd.testing.assert_frame_equal(analysis.read_log(run / "csv" / "metrics.csv"), log)
    assert "train/l2" not in log  # no classifier_weight_decay, no regularization term


@pytest.mark.slow
def test_runs_are_described_and_their_teachers_found(runs):
    root = runs["root"]
    frame = analysis.collect_runs([root])
    by_run = frame.set_index("run")
    assert by_run.loc["serial", "method"] == "Serial Lrep, Lpred, LCE"
    assert by_run.loc["serial", "frames"] == 6 and by_run.loc["serial", "family"] == "NeXtVLAD"
    assert by_run.loc["mix", "method"] == "Online T=20"
    assert by_run.loc["mix", "family"] == "MixNeXtVLAD[2]"
    assert by_run.loc["mix", "temperature"] == 20.0
    assert analysis.find_serial_run([root]) == runs["serial"]
    teachers = analysis.teacher_runs(frame)
    assert list(teachers["path"]) == [str(runs["serial"] / "teacher")]
    assert teachers["method"].tolist() == ["All frames"] and teachers["students"].tolist() == [1]
    assert analysis.teacher_run(runs["mix"]) is None
    with pytest.raises(ValueError, match="no trained teacher"):
        analysis.teacher_checkpoint(runs["mix"])


@pytest.mark.slow
def test_a_moved_run_finds_its_checkpoints_under_its_own_directory(runs, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(runs["serial"], moved)
    record_path = moved / "metrics.json"
    record = json.loads(record_path.read_text())
    # As if the run had been trained under another directory, since deleted.
    gone = Path("/nonexistent/run")
    record["best_checkpoint"] = str(gone / "checkpoints" / Path(record["best_checkpoint"]).name)
    teacher = record["teacher"]
    teacher["best_checkpoint"] = str(
        gone / "teacher" / "checkpoints" / Path(teacher["best_checkpoint"]).name
    )
    record_path.write_text(json.dumps(record))
    assert analysis.best_checkpoint(moved).parent == moved / "checkpoints"
    assert analysis.teacher_checkpoint(moved).parent == moved / "teacher" / "checkpoints"
    (moved / "checkpoints" / Path(record["best_checkpoint"]).name).unlink()
    with pytest.raises(FileNotFoundError, match="not found"):
        analysis.best_checkpoint(moved)


def test_a_moved_sweep_finds_the_teacher_its_jobs_shared(tmp_path):
    """Serial jobs of a sweep may share a teacher in <sweep>/teachers/<name>; after the sweep
    was moved, the job's record still points at the old place."""
    sweep = tmp_path / "sweep"
    teacher = sweep / "teachers" / "NeXtVLAD-0123" / "checkpoints" / "epoch_000.ckpt"
    student = sweep / "0" / "checkpoints" / "epoch_000.ckpt"
    for path in (teacher, student):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    old = Path("/elsewhere/sweep")
    record = {
        "best_checkpoint": str(old / student.relative_to(sweep)),
        "teacher": {"best_checkpoint": str(old / teacher.relative_to(sweep))},
        "config": {},
    }
    (sweep / "0" / "metrics.json").write_text(json.dumps(record))
    assert analysis.teacher_checkpoint(sweep / "0") == teacher
    assert analysis.best_checkpoint(sweep / "0") == student


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def config(sampler="uniform", k=10, distill=None, backbone="vidistill.models.NeXtVLAD"):
    return {
        "data": {"sampler": sampler, "k": k, "stride": None, "max_frames": 300},
        "distill": distill or {"_target_": "vidistill.distill.LabelLoss"},
        "model": {"backbone": {"_target_": backbone}},
    }


def test_describe_run_names_methods_as_the_paper():
    student = {
        "_target_": analysis.TEACHER_STUDENT_TARGET,
        "parallel": False,
        "weights": {"rep": 1.0, "rep_blocks": 0.0, "pred": 0.0, "ce": 1.0},
    }
    assert analysis.describe_run(config())["method"] == "Uniform-k"
    assert analysis.describe_run(config("first_middle_last"))["method"] == "First-Middle-Last-k"
    assert analysis.describe_run(config("all"))["frames"] == 300
    assert analysis.describe_run(config(distill=student))["method"] == "Serial Lrep, LCE"
    parallel = {**student, "parallel": True}
    assert (
        analysis.describe_run(config("first", distill=parallel))["method"]
        == "Parallel Lrep, LCE [First-k]"
    )
    mixture = config(
        "all",
        distill={"_target_": analysis.ONLINE_TARGET, "temperature": 10},
        backbone="vidistill.models.mixture_tree",
    )
    mixture["model"]["backbone"].update(
        branching=[4, 3], leaf={"_target_": "vidistill.models.NeXtVLAD"}
    )
    described = analysis.describe_run(mixture)
    assert described["method"] == "Online T=10" and described["temperature"] == 10.0
    assert described["family"] == "MixNeXtVLAD[4, 3]"


def test_fewer_frames_table_is_the_papers_layout():
    def row(method, sampler, frames, gap, status="done"):
        return {
            "status": status,
            "method": method,
            "family": "NeXtVLAD",
            "sampler": sampler,
            "frames": frames,
            "test/gap": gap,
            "test/map": gap / 2,
        }

    frame = pd.DataFrame(
        [
            row("Serial Lrep, Lpred, LCE", "uniform", 10, 0.7),
            row("First-k", "first", 10, 0.4),
            row("Uniform-k", "uniform", 10, 0.6),
            row("Uniform-k", "uniform", 10, 0.5),  # a second seed: averaged
            row("Uniform-k", "uniform", 6, 0.3),
            row("All frames", "all", 300, 0.9),  # a teacher: not a k column
            row("First-k", "first", 6, np.nan, status="missing"),
        ]
    )
    table = analysis.fewer_frames_table(frame)
    assert list(table.index) == ["Uniform-k", "First-k", "Serial Lrep, Lpred, LCE"]
    assert list(table.columns) == [(6, "GAP"), (6, "mAP"), (10, "GAP"), (10, "mAP")]
    assert table.loc["Uniform-k", (10, "GAP")] == pytest.approx(0.55)
    assert table.loc["Uniform-k", (10, "mAP")] == pytest.approx(0.275)
    assert np.isnan(table.loc["First-k", (6, "GAP")])
    flat = analysis.flatten_columns(table)
    assert list(flat.columns) == ["method", "k=6 GAP", "k=6 mAP", "k=10 GAP", "k=10 mAP"]
    assert analysis.pick_split(frame) == "test"
    assert analysis.pick_split(frame.drop(columns=["test/gap"])) == "val"


def test_read_log_keeps_the_last_value_logged_at_a_step(tmp_path):
    path = tmp_path / "csv" / "metrics.csv"
    path.parent.mkdir()
    path.write_text(
        "epoch,lr-Adam,step,train/loss,val/gap\n"
        ",0.1,0,,\n"
        "0,,0,5.0,\n"
        "0,,1,4.0,\n"
        "0,,1,,0.3\n"
        "0,,1,3.5,\n"  # logged again at step 1 (a resumed run repeats it)
    )
    log = analysis.read_log(tmp_path)
    assert log["step"].tolist() == [0, 1]
    assert log["train/loss"].tolist() == [5.0, 3.5]
    assert log["lr-Adam"].tolist()[0] == 0.1 and log["val/gap"].tolist()[1] == 0.3


def test_latest_multirun_and_directories_from_env(tmp_path, monkeypatch):
    for name in ("2026-01-02_10-00-00", "2026-01-10_09-00-00", "2026-01-03_23-59-59"):
        (tmp_path / "logs" / "fewer_frames_baselines" / "multirun" / name).mkdir(parents=True)
    latest = analysis.latest_multirun("fewer_frames_baselines", tmp_path / "logs")
    assert latest.name == "2026-01-10_09-00-00"
    assert analysis.latest_multirun("mod_temperature", tmp_path / "logs") is None
    monkeypatch.delenv("VIDISTILL_TEST_RUNS", raising=False)
    assert analysis.directories_from_env("VIDISTILL_TEST_RUNS", [None, latest]) == [latest]
    with pytest.raises(FileNotFoundError, match="VIDISTILL_TEST_RUNS"):
        analysis.directories_from_env("VIDISTILL_TEST_RUNS", [None])
    monkeypatch.setenv("VIDISTILL_TEST_RUNS", f"{tmp_path}:{latest}")
    assert analysis.directories_from_env("VIDISTILL_TEST_RUNS", []) == [tmp_path, latest]
    monkeypatch.setenv("VIDISTILL_TEST_RUNS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        analysis.directories_from_env("VIDISTILL_TEST_RUNS", [latest])
    # From a notebook's folder inside the checkout, the checkout's root; paths written from
    # the root (logs/...) are found from there.
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("")
    (tmp_path / "notebooks").mkdir()
    assert analysis.project_root(tmp_path / "notebooks") == tmp_path
    monkeypatch.chdir(tmp_path / "notebooks")
    relative = latest.relative_to(tmp_path)
    monkeypatch.setenv("VIDISTILL_TEST_RUNS", str(relative))
    assert analysis.directories_from_env("VIDISTILL_TEST_RUNS", []) == [latest]
    assert analysis.path_from_env("VIDISTILL_TEST_RUNS") == latest
    assert analysis.latest_multirun("fewer_frames_baselines") == latest
    monkeypatch.delenv("VIDISTILL_TEST_RUNS")
    assert analysis.path_from_env("VIDISTILL_TEST_RUNS") is None


def test_videos_of_top_classes_keeps_videos_of_exactly_one():
    labels = np.zeros((6, 5), bool)
    labels[0, [0]] = labels[1, [0, 1]] = labels[2, [1]] = labels[3, [2]] = labels[4, [0]] = True
    labels[5, [4]] = True
    indices, classes = analysis.videos_of_top_classes(labels, num_classes=2)  # classes 0 and 1
    assert indices.tolist() == [0, 2, 4] and classes.tolist() == [0, 1, 0]


def test_joint_tsne_maps_both_sets_together():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(15, 8))
    student = teacher + 0.01 * rng.normal(size=(15, 8))
    first, second = analysis.joint_tsne(teacher, student)
    assert first.shape == second.shape == (15, 2)
    again = analysis.joint_tsne(teacher, student)
    np.testing.assert_allclose(again[0], first)  # seeded
    with pytest.raises(ValueError, match="projection=True"):
        analysis.joint_tsne(teacher, student[:, :4])
