"""Beyond both papers, end to end on the tiny synthetic set: a mixture (MOD) teacher trained
first with online distillation, several teachers shared by the jobs of a sweep, and a student
whose frames a learned selector picks (trained, evaluated, streamed and exported)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hydra_helpers import NEXTVLAD, compose_config
from vidistill.inference import Predictor
from vidistill.inference import predictor as inference
from vidistill.inference.export import export
from vidistill.lit.checkpoints import load_model
from vidistill.runs import build_datamodule, build_objective, evaluate, train
from vidistill.runs.teachers import expand_teacher_presets

K = 5
SMALL_MIX = [
    "distill.teacher.model.backbone.leaf.clusters=4",
    "distill.teacher.model.backbone.leaf.hidden_size=16",
]


def record_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def header_of(run_dir: Path) -> list[str]:
    return (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")


def test_a_mixture_teacher_trained_first_with_online_distillation(tmp_path):
    """`python train.py model=nextvlad distill=serial k=10 distill.teacher.model=mix
    distill.teacher.objective=online` (sized down): the mixture is trained first with the MOD
    objective, then guides a single NeXtVLAD; the student's checkpoint then teaches again."""
    common = [*NEXTVLAD, "distill=serial", f"k={K}", "trainer.max_epochs=1"]
    cfg = compose_config(
        tmp_path,
        [
            *common,
            "+model@distill.teacher.model=mix",
            *SMALL_MIX,
            "distill.teacher.objective=online",
            "trainer.log_every_n_steps=1",
        ],
    )
    train(cfg)
    run = tmp_path / "run"
    teacher, student = record_of(run / "teacher"), record_of(run)
    assert teacher["config"]["distill"]["_target_"].endswith("OnlineMixtureDistillation")
    assert teacher["config"]["model"]["backbone"]["_target_"].endswith("mixture_tree")
    assert {"train/kl/level1", "test/member0/gap"} <= set(header_of(run / "teacher"))
    assert {"train/rep", "train/pred", "train/ce"} <= set(header_of(run))
    assert student["teacher"]["best_checkpoint"] == teacher["best_checkpoint"]
    assert 0 < student["metrics"]["test/gap"] <= 1
    weights = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not [key for key in weights if key.startswith("objective.teachers")]
    # the mixture's checkpoint as the teacher of another student, named on the command line
    again = compose_config(
        tmp_path,
        [*common, f"distill.teacher.checkpoint={teacher['best_checkpoint']}"],
        run="again",
    )
    train(again)
    assert "teacher" not in record_of(tmp_path / "again")
    with pytest.raises(ValueError, match="distill.teacher.model: no model preset 'mdo'"):
        train(compose_config(tmp_path, [*common, "distill.teacher.model=mdo"], run="bad"))


def test_several_teachers_by_preset_name_are_trained_once_and_shared(tmp_path):
    """Two jobs with the same teachers (two families, one weighted twice): the first trains
    each teacher in its own shared directory, the second reuses them."""
    shared = tmp_path / "teachers"
    teachers = (
        "distill.teachers=[{model: logistic}, "
        f"{{model: nextvlad, weight: 2, shared_dir: '{shared}'}}]"
    )
    common = [
        *NEXTVLAD,
        "distill=serial",
        teachers,
        f"distill.teacher.shared_dir={shared}",
        "trainer.max_epochs=1",
        "test=false",
    ]
    train(compose_config(tmp_path, [*common, "k=4"], run="a"))
    trained = sorted(path for path in shared.iterdir() if path.is_dir())
    assert [path.name.split("-")[0] for path in trained] == ["FrameMeanLogistic", "NeXtVLAD"]
    stamps = [(path / "metrics.json").stat().st_mtime_ns for path in trained]
    train(compose_config(tmp_path, [*common, "k=6"], run="b"))
    assert [(path / "metrics.json").stat().st_mtime_ns for path in trained] == stamps
    for run in ("a", "b"):
        record = record_of(tmp_path / run)
        assert [Path(t["directory"]) for t in record["teachers"]] == trained
        specs = record["config"]["distill"]["teachers"]
        assert [spec.get("weight") for spec in specs] == [None, 2]
        assert specs[1]["model"]["backbone"]["_target_"].endswith("NeXtVLAD")  # expanded


@pytest.fixture(scope="module")
def selector_student(tmp_path_factory) -> tuple[Path, dict]:
    """A NeXtVLAD whose 5 frames a learned selector picks, distilled from a teacher."""
    root = tmp_path_factory.mktemp("selector")
    cfg = compose_config(
        root,
        [
            *NEXTVLAD,
            "selector=audio",
            "distill=serial",
            f"k={K}",
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=1",
        ],
    )
    train(cfg)
    return root, record_of(root / "run")


def test_the_selector_student_trains_with_its_reward_and_evaluates_again(selector_student):
    root, record = selector_student
    assert record["config"]["data"]["sampler"] == "learned"
    assert {"train/selector", "train/selector_reward", "train/pred"} <= set(header_of(root / "run"))
    model, info = load_model(record["best_checkpoint"])
    assert info["data"]["frames"] == {"sampler": "learned", "k": K, "max_frames": 300, "seed": 0}
    assert model.selector.k == K
    assert model.selector.head.weight.abs().sum() > 0  # trained away from its zero start
    again = evaluate(
        compose_config(root, [f"ckpt={record['best_checkpoint']}"], "eval", run="eval")
    )
    assert again["test/gap"] == pytest.approx(record["metrics"]["test/gap"])


def test_streaming_a_selector_student_dequantizes_only_the_chosen_rgb(
    selector_student, monkeypatch
):
    """The predictor reads the audio of every frame, selects, and dequantizes k frames per
    video; its predictions equal the model's over the evaluation loader."""
    root, record = selector_student
    shards = sorted(str(p) for p in root.glob("data/synthetic/*/frame/test*.tfrecord"))
    seen = []
    dequantize = inference.dequantize_batch

    def spy(batch, *args):
        seen.append((batch["frames"].dtype, tuple(batch["frames"].shape[1:])))
        return dequantize(batch, *args)

    monkeypatch.setattr(inference, "dequantize_batch", spy)
    predictor = Predictor(record["best_checkpoint"], device="cpu")
    streamed = {
        video: scores
        for batch in predictor.stream(predictor.dataset(shards, batch_size=7), top_k=20)
        for video, scores in zip(
            batch.ids,
            np.take_along_axis(batch.scores, np.argsort(batch.classes, 1), 1),
            strict=True,
        )
    }
    assert {shape for _, shape in seen} == {(K, 1152)}
    model, _ = load_model(record["best_checkpoint"])
    cfg = compose_config(
        root,
        ["data.sampler=learned", f"k={K}", "data.predict_files=frame/test*.tfrecord"],
        run="predict",
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup("predict")
    with torch.no_grad():
        for index, batch in enumerate(datamodule.predict_dataloader()):
            batch = datamodule.on_after_batch_transfer(batch, index)
            probabilities = torch.sigmoid(model(batch["frames"], batch["mask"]).logits).numpy()
            for video, row in zip(batch["ids"], probabilities, strict=True):
                np.testing.assert_allclose(streamed.pop(video), row, atol=1e-6)
    assert not streamed


def test_a_selector_student_exports_with_its_selection(selector_student, tmp_path):
    root, record = selector_student
    exported = export(record["best_checkpoint"], tmp_path / "model")
    assert exported["frames"]["sampler"] == "learned"
    for result in exported["exports"].values():
        assert result["max_abs_difference"] < 1e-4
    # the traced graph selects per input: its picks follow the videos' lengths
    scripted = torch.jit.load(exported["exports"]["torchscript"]["path"])
    frames = torch.randint(0, 255, (2, 60, 1152), dtype=torch.uint8)
    short = torch.arange(60).unsqueeze(0) < torch.tensor([[60], [12]])
    model, _ = load_model(record["best_checkpoint"])
    from vidistill.inference.export import QuantizedInputModel

    reference = QuantizedInputModel(model.backbone, selector=model.selector).eval()
    with torch.no_grad():
        torch.testing.assert_close(scripted(frames, short), reference(frames, short))


def test_an_hrnn_student_with_a_selector_and_a_teacher(tmp_path):
    """The selector works for any backbone: an H-RNN over exactly its k chosen frames."""
    hrnn = ["model=hrnn", "model.backbone.lower_size=16", "model.backbone.upper_size=16"]
    cfg = compose_config(
        tmp_path, [*hrnn, "selector=audio", "k=10", "distill=serial", "trainer.max_epochs=1"]
    )
    train(cfg)
    record = record_of(tmp_path / "run")
    assert record["config"]["data"]["sampler"] == "learned"
    assert 0 < record["metrics"]["test/gap"] <= 1


def test_where_the_selector_looks_is_measured_against_uniform_k(selector_student, tmp_path):
    from vidistill.analysis.selection import selector_picks
    from vidistill.claims.picks import picks_lines

    root, record = selector_student
    shards = sorted(str(p) for p in root.glob("data/synthetic/*/frame/test*.tfrecord"))
    picks = selector_picks(record["best_checkpoint"], shards, max_videos=20)
    assert picks["videos"] == 20
    assert 0.0 <= picks["uniform_share"] <= 1.0 and 0.0 <= picks["mean_move_bins"] <= 0.5
    model, _ = load_model(record["best_checkpoint"])
    torch.nn.init.zeros_(model.selector.head.weight)  # an untrained selector: Uniform-k exactly
    torch.nn.init.zeros_(model.selector.head.bias)
    untrained = tmp_path / "untrained.ckpt"
    checkpoint = torch.load(record["best_checkpoint"], weights_only=False)
    checkpoint["state_dict"].update(
        {f"selector.{key}": value for key, value in model.selector.state_dict().items()}
    )
    torch.save(checkpoint, untrained)
    assert selector_picks(untrained, shards, max_videos=20)["uniform_share"] == 1.0
    (tmp_path / "picks.csv").write_text(
        "arm,seed,uniform_share,mean_move_bins,videos\na: k=5,0,0.25,0.2,10\na: k=5,1,0.75,0.1,10\n"
    )
    assert "| `a: k=5` | 50.0% | 0.150 | 2 |" in picks_lines(tmp_path)


def test_teacher_weights_from_the_config_keep_a_zero(tmp_path):
    """A teacher spec's weight is its share as given: left out means 1, and 0 stays 0."""
    cfg = compose_config(
        tmp_path,
        [
            *NEXTVLAD,
            "distill=serial",
            "distill.teachers=[{model: logistic, weight: 0}, {model: logistic}]",
        ],
    )
    build_datamodule(cfg)  # settles num_classes
    expand_teacher_presets(cfg)
    assert build_objective(cfg).teacher_weights == [0.0, 1.0]
