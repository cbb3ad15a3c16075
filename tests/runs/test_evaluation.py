"""eval.py and predict.py end to end on a checkpoint trained on a tiny synthetic set, and the
clear errors for checkpoints that do not fit the model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from hydra_helpers import compose_config
from vidistill.data import FrameSelection, read_records
from vidistill.inference import Predictor
from vidistill.inference.writers import HEADER, KagglePredictionFile
from vidistill.lit.checkpoints import CHECKPOINT_KEY, load_model
from vidistill.runs import evaluate, train, write_predictions

NUM_CLASSES = 20
NUM_TEST = 48
# Frame selection the tests must see restored from the checkpoint: the random sampler's
# evaluation frames depend on the seed too, so a wrong seed also changes the metrics.
TRAINED_AS = ["data.sampler=random", "k=5", "seed=3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One epoch of training; returns the directory (data under ``data/``) and metrics.json."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        # conftest's per-test cache fixture does not reach module fixtures.
        patch.setenv("VIDISTILL_CACHE", str(root / "cache"))
        train(compose_config(root, [*TRAINED_AS, "trainer.max_epochs=1"]))
    return root, json.loads((root / "run" / "metrics.json").read_text())


@pytest.fixture
def best(trained) -> str:
    return trained[1]["best_checkpoint"]


def test_checkpoint_describes_its_run(best):
    stored = torch.load(best, weights_only=True)[CHECKPOINT_KEY]
    assert stored["version"] == 2
    assert stored["model"]["backbone"]["num_classes"] == NUM_CLASSES
    assert stored["data"] == {
        "frames": {"sampler": "random", "k": 5, "max_frames": 300, "seed": 3},
        "mode": "frame",
        "num_classes": NUM_CLASSES,
    }
    assert FrameSelection.from_dict(stored["data"]["frames"]) == FrameSelection("random", 5, seed=3)


def test_checkpoints_written_before_frame_selections_still_load(trained, best, tmp_path):
    """A version 1 checkpoint (its frame selection flat in ``data``, ``stride`` and all) loads
    with the same frames: eval.py reproduces the training metrics from it (random frames, so
    the seed must come through too) and predict.py reads it alike."""
    root, record = trained
    checkpoint = torch.load(best, weights_only=True)
    checkpoint[CHECKPOINT_KEY]["version"] = 1
    checkpoint[CHECKPOINT_KEY]["data"] = {
        "sampler": "random",
        "k": 5,
        "stride": None,
        "max_frames": 300,
        "seed": 3,
        "mode": "frame",
        "num_classes": NUM_CLASSES,
    }
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    _, info = load_model(old)
    assert info["data"]["mode"] == "frame" and info["data"]["num_classes"] == NUM_CLASSES
    assert FrameSelection.from_dict(info["data"]["frames"]) == FrameSelection("random", 5, seed=3)
    metrics = evaluate(compose_config(root, [f"ckpt={old}"], "eval", run="eval_old"))
    expected = {key: value for key, value in record["metrics"].items() if key.startswith("test/")}
    assert metrics.keys() == expected.keys() and expected
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    assert Predictor(old, device="cpu").frames == Predictor(best, device="cpu").frames


def test_eval_reproduces_training_metrics(trained, best):
    root, record = trained
    for split, prefix in (("val", "val/"), (None, "test/")):  # default split: test
        overrides = [f"ckpt={best}"] + ([f"split={split}"] if split else [])
        run = f"eval_{split}"
        metrics = evaluate(compose_config(root, overrides, config_name="eval", run=run))
        expected = {
            key: value for key, value in record["metrics"].items() if key.startswith(prefix)
        }
        assert metrics.keys() == expected.keys() and expected
        for key, value in expected.items():
            assert metrics[key] == pytest.approx(value, abs=1e-6), key
        written = json.loads((root / run / "metrics.json").read_text())
        assert written["metrics"] == metrics
        assert written["checkpoint"] == best
        assert written["config"]["data"]["sampler"] == "random"  # from the checkpoint

    # An explicit override beats the checkpoint's setting.
    cfg = compose_config(root, [f"ckpt={best}", "data.sampler=all"], "eval", run="eval_all")
    assert evaluate(cfg)["test/gap"] != pytest.approx(record["metrics"]["test/gap"], abs=1e-6)


def test_predict_writes_kaggle_csv(trained, best):
    root, record = trained
    cfg = compose_config(root, [f"ckpt={best}", "top_k=3"], config_name="predict", run="predict")
    output = write_predictions(cfg)
    assert output == root / "predict" / "predictions.csv"
    lines = output.read_text().splitlines()
    assert lines[0] == HEADER
    rows = {}
    for line in lines[1:]:
        video_id, pairs = line.split(",")
        assert re.fullmatch(r"\d+ \d\.\d{6}( \d+ \d\.\d{6}){2}", pairs), line
        values = pairs.split()
        labels, scores = [int(v) for v in values[::2]], [float(v) for v in values[1::2]]
        assert all(0 <= label < NUM_CLASSES for label in labels)
        assert scores == sorted(scores, reverse=True)
        rows[video_id] = labels
    assert len(rows) == len(lines) - 1 == NUM_TEST

    # Ids and rows line up with the data: top-1 hits reproduce the test/hit1 of training.
    test_files = sorted((root / "data").glob("synthetic/*/frame/test*.tfrecord"))
    truth = {
        video.id: set(video.labels.tolist())
        for path in test_files
        for video in read_records(str(path), schema="frame", num_classes=NUM_CLASSES)
    }
    assert rows.keys() == truth.keys()
    hit1 = sum(rows[video_id][0] in truth[video_id] for video_id in rows) / len(rows)
    assert hit1 == pytest.approx(record["metrics"]["test/hit1"], abs=1e-6)

    again = [f"ckpt={best}", f"output={output}"]
    with pytest.raises(FileExistsError, match=re.escape(str(output))):
        write_predictions(compose_config(root, again, config_name="predict", run="again"))
    cfg = compose_config(root, [*again, "overwrite=true", "top_k=1"], "predict", run="again2")
    assert len(write_predictions(cfg).read_text().splitlines()[1].split()) == 2


def test_prediction_file_is_complete_or_partial(tmp_path):
    path = tmp_path / "out.csv"
    with KagglePredictionFile(path) as predictions:
        predictions.write("a", [3, 1], [0.9, 0.25])
    assert path.read_text() == f"{HEADER}\na,3 0.900000 1 0.250000\n"
    with pytest.raises(RuntimeError), KagglePredictionFile(path, overwrite=True) as predictions:
        predictions.write("b", [0], [0.5])
        raise RuntimeError("interrupted")
    assert path.read_text().endswith("a,3 0.900000 1 0.250000\n")  # the old file is intact
    assert (tmp_path / "out.csv.partial").read_text() == f"{HEADER}\nb,0 0.500000\n"


def _checkpoint_with_weights_of(best: str, path: Path, **model_changes) -> Path:
    """``best`` with its stored config unchanged but the weights of a model built from the
    stored config with ``model_changes`` applied (``backbone`` replaced, ``num_classes`` set
    everywhere)."""
    checkpoint = torch.load(best, weights_only=True)
    config = json.loads(json.dumps(checkpoint[CHECKPOINT_KEY]["model"]))
    if "num_classes" in model_changes:
        config["num_classes"] = config["backbone"]["num_classes"] = model_changes["num_classes"]
    if "backbone" in model_changes:
        config["backbone"] = model_changes["backbone"]
    checkpoint["state_dict"] = instantiate(config).state_dict()
    torch.save(checkpoint, path)
    return path


def test_load_model_rejects_weights_of_another_model(best, tmp_path):
    model, info = load_model(best)
    assert info["data"]["frames"]["k"] == 5 and info["epoch"] == 0
    assert model.hparams.num_classes == NUM_CLASSES

    wider = _checkpoint_with_weights_of(best, tmp_path / "wider.ckpt", num_classes=30)
    with pytest.raises(ValueError, match=r"wider\.ckpt.*does not fit") as error:
        load_model(wider)
    assert re.search(
        r"shape in checkpoint vs model: backbone\.\S+ \(30\b.* vs \(20\b", str(error.value)
    )

    linear = {"_target_": "torch.nn.Linear", "in_features": 1152, "out_features": 20}
    other = _checkpoint_with_weights_of(best, tmp_path / "other.ckpt", backbone=linear)
    with pytest.raises(ValueError, match=r"other\.ckpt.*does not fit") as error:
        load_model(other)
    message = str(error.value)
    assert "missing from the checkpoint: backbone." in message
    assert "not in the model: backbone.weight, backbone.bias" in message

    checkpoint = torch.load(best, weights_only=True)
    del checkpoint[CHECKPOINT_KEY]
    torch.save(checkpoint, tmp_path / "bare.ckpt")
    with pytest.raises(ValueError, match=r"bare\.ckpt: the checkpoint has no 'vidistill' entry"):
        load_model(tmp_path / "bare.ckpt")


def test_resume_checks_the_checkpoint_before_fitting(trained, best, tmp_path):
    root, _ = trained
    data = [f"paths.data_dir={root / 'data'}"]  # reuse the generated set
    wider = _checkpoint_with_weights_of(best, tmp_path / "wider.ckpt", num_classes=30)
    cfg = compose_config(tmp_path, [*data, f"ckpt_path={wider}"], run="bad")
    with pytest.raises(ValueError, match=r"wider\.ckpt.*VideoClassifier.*does not fit"):
        train(cfg)
    assert not (tmp_path / "bad" / "checkpoints").exists()  # nothing was trained

    with pytest.raises(FileNotFoundError, match="ckpt_path=last but there is no"):
        train(compose_config(tmp_path, [*data, "ckpt_path=last"], run="fresh"))

    # A fitting checkpoint resumes: one more epoch on top of the trained one.
    cfg = compose_config(tmp_path, [*data, *TRAINED_AS, f"ckpt_path={best}"], run="resumed")
    train(cfg)
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and resumed[CHECKPOINT_KEY]["data"]["frames"]["k"] == 5
