"""Streaming inference (vidistill.inference, predict.py) against the evaluation loop, on
checkpoints trained on the tiny synthetic set: same predictions, only the picked frames
dequantized, mixture members, bad checkpoints and corrupt shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hydra_helpers import compose_config
from vidistill.data import FrameSelection
from vidistill.data.framing import CorruptRecordError, scan_offsets
from vidistill.inference import Predictor, predict_to_file
from vidistill.inference import predictor as inference
from vidistill.inference.export import export
from vidistill.lit.checkpoints import CHECKPOINT_KEY, load_model
from vidistill.models.mixture import subtree
from vidistill.runs import build_datamodule, train, write_predictions

K = 5
NUM_TEST = 48


def trained_checkpoint(root: Path, overrides: list[str]) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDISTILL_CACHE", str(root / "cache"))
        train(compose_config(root, [*overrides, "trainer.max_epochs=1", "test=false"]))
    return json.loads((root / "run" / "metrics.json").read_text())["best_checkpoint"]


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> tuple[Path, str]:
    """A NeXtVLAD trained on Uniform-5 frames: (root with data/, best checkpoint)."""
    root = tmp_path_factory.mktemp("student")
    small = ["model.backbone.clusters=4", "model.backbone.hidden_size=16"]
    return root, trained_checkpoint(root, [*small, "data.sampler=uniform", f"k={K}"])


@pytest.fixture(scope="module")
def mixture(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("mixture")
    small = ["model.backbone.leaf.clusters=4", "model.backbone.leaf.hidden_size=16"]
    return root, trained_checkpoint(root, ["model=mix", "distill=online", *small])


def shards_of(root: Path) -> list[str]:
    return sorted(str(path) for path in root.glob("data/synthetic/*/frame/test*.tfrecord"))


def test_streaming_predictions_equal_the_evaluation_loop(student):
    """Every video's whole ranking (top-k over all 20 classes) from the streaming predictor
    equals the model run over the datamodule's loader of the same split (the training path's
    reading, batching and dequantization)."""
    root, checkpoint = student
    predictor = Predictor(checkpoint, device="cpu")
    assert predictor.frames == FrameSelection("uniform", K)
    streamed = list(predictor.stream(predictor.dataset(shards_of(root), batch_size=7), top_k=20))

    model, info = load_model(checkpoint)
    cfg = compose_config(
        root,
        [
            *(
                f"data.{key}={value}"
                for key, value in info["data"]["frames"].items()
                if key in ("sampler", "k", "seed")
            ),
            "data.predict_files=frame/test*.tfrecord",
        ],
        run="eval",
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup("predict")
    model.eval()
    evaluated = []
    with torch.no_grad():
        for index, batch in enumerate(datamodule.predict_dataloader()):
            # The training path's dequantization (after the transfer to the device).
            batch = datamodule.on_after_batch_transfer(batch, index)
            scores = torch.sigmoid(model(batch["frames"], batch["mask"]).logits)
            top = scores.topk(20, dim=1)
            evaluated.append({"ids": batch["ids"], "classes": top.indices, "scores": top.values})

    def by_id(batches, ids, classes, scores):
        return {
            video: (c, s)
            for batch in batches
            for video, c, s in zip(ids(batch), classes(batch), scores(batch), strict=True)
        }

    ours = by_id(streamed, lambda b: b.ids, lambda b: b.classes, lambda b: b.scores)
    theirs = by_id(
        evaluated,
        lambda b: b["ids"],
        lambda b: b["classes"].numpy(),
        lambda b: b["scores"].numpy(),
    )
    assert ours.keys() == theirs.keys() and len(ours) == NUM_TEST
    for video, (classes, scores) in ours.items():
        np.testing.assert_array_equal(classes, theirs[video][0])
        np.testing.assert_allclose(scores, theirs[video][1], atol=1e-6)


def test_unselected_frames_are_never_dequantized(student, monkeypatch):
    """Uniform-5: every batch reaches dequantization as uint8 [B, 5, 1152], so the floats made
    are 5 frames per video, whatever the videos' lengths (20 to 80 frames here)."""
    root, checkpoint = student
    seen = []
    dequantize = inference.dequantize_batch

    def spy(batch, *args):
        seen.append((batch["frames"].dtype, tuple(batch["frames"].shape)))
        return dequantize(batch, *args)

    monkeypatch.setattr(inference, "dequantize_batch", spy)
    predictor = Predictor(checkpoint, device="cpu")
    videos = sum(len(b.ids) for b in predictor.stream(predictor.dataset(shards_of(root))))
    assert videos == NUM_TEST
    assert {dtype for dtype, _ in seen} == {torch.uint8}
    assert {shape[1:] for _, shape in seen} == {(K, 1152)}
    assert sum(shape[0] for _, shape in seen) == NUM_TEST


def test_predict_py_streams_to_csv_and_parquet(student):
    root, checkpoint = student
    csv = write_predictions(
        compose_config(
            root, [f"ckpt={checkpoint}", "data.glob=frame/test*.tfrecord"], "predict", run="p1"
        )
    )
    summary = json.loads(Path(f"{csv}.summary.json").read_text())
    assert summary["videos"] == NUM_TEST and summary["skipped_records"] == 0
    assert summary["frames"]["k"] == K
    parquet = write_predictions(
        compose_config(
            root, [f"ckpt={checkpoint}", "output=" + str(root / "p.parquet")], "predict", run="p2"
        )
    )
    table = pd.read_parquet(parquet)
    rows = {
        line.split(",")[0]: [int(v) for v in line.split(",")[1].split()[::2]]
        for line in csv.read_text().splitlines()[1:]
    }
    assert len(table) == NUM_TEST
    for video, classes in zip(table["id"], table["classes"], strict=True):
        assert list(classes) == rows[video]
    with pytest.raises(FileExistsError, match="overwrite=true"):
        write_predictions(
            compose_config(root, [f"ckpt={checkpoint}", f"output={csv}"], "predict", run="p3")
        )


def test_one_member_of_a_mixture(mixture):
    """member=[1]: the second NeXtVLAD of the MixNeXtVLAD alone, as subtree() gives it."""
    root, checkpoint = mixture
    predictor = Predictor(checkpoint, member=[1], device="cpu")
    batch = next(iter(predictor.dataset(shards_of(root), batch_size=8, num_workers=0)))
    model, _ = load_model(checkpoint)
    alone = subtree(model.backbone, [1])
    from vidistill.data.batching import dequantize_batch

    view = dequantize_batch(dict(batch))
    with torch.no_grad():
        expected = torch.sigmoid(alone(view["frames"], view["mask"]).logits)
        whole = torch.sigmoid(model.backbone(view["frames"], view["mask"]).logits)
    got = predictor.probabilities(view["frames"], view["mask"])
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, whole)  # the member, not the mixture


def test_a_checkpoint_without_frame_selection_asks_for_k(student, tmp_path):
    _, checkpoint = student
    stored = torch.load(checkpoint, weights_only=True)
    for key in ("sampler", "k"):
        stored[CHECKPOINT_KEY]["data"]["frames"][key] = None
    bare = tmp_path / "bare.ckpt"
    torch.save(stored, bare)
    with pytest.raises(ValueError, match=r"bare\.ckpt does not record which frames.*k=30"):
        Predictor(bare, device="cpu")
    frames = Predictor(bare, device="cpu", frames={"k": 3}).frames
    assert frames.sampler == "uniform" and frames.k == 3
    assert Predictor(bare, device="cpu", frames={"sampler": "all"}).frames.sampler == "all"


def test_a_corrupt_record_mid_stream(student, tmp_path):
    """on_corrupt=raise stops naming the file and record (no complete-looking output);
    on_corrupt=skip predicts the other videos and counts the skipped record in the summary."""
    root, checkpoint = student
    shards = tmp_path / "shards"
    shards.mkdir()
    for path in shards_of(root):
        shutil.copy(path, shards)
    broken = sorted(shards.iterdir())[0]
    offsets, _ = scan_offsets(str(broken))
    data = bytearray(broken.read_bytes())
    data[offsets[3] + 40] ^= 0xFF  # inside record 3's payload
    broken.write_bytes(bytes(data))

    predictor = Predictor(checkpoint, device="cpu")
    output = tmp_path / "out.csv"
    with pytest.raises(CorruptRecordError, match=rf"{broken.name}.*record 3"):
        predict_to_file(predictor, str(shards / "*.tfrecord"), output, num_workers=2)
    assert not output.exists()
    summary = predict_to_file(
        predictor,
        str(shards / "*.tfrecord"),
        output,
        num_workers=2,
        on_corrupt="skip",
        overwrite=True,
    )
    assert summary["skipped_records"] == 1 and summary["videos"] == NUM_TEST - 1
    assert len(output.read_text().splitlines()) == NUM_TEST


@pytest.fixture(scope="module")
def hrnn_student(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("hrnn")
    small = [
        "model.backbone.lower_size=8",
        "model.backbone.upper_size=8",
        "model.backbone.num_blocks=3",
    ]
    return root, trained_checkpoint(root, ["model=hrnn", *small, "data.sampler=uniform", f"k={K}"])


def exported_equals_predictor(record: dict, predictor: Predictor, root: Path) -> None:
    """Both exported files, fed a real batch as the reader gives it (uint8 frames, mask), give
    the predictor's probabilities."""
    batch = next(iter(predictor.dataset(shards_of(root), batch_size=9, num_workers=0)))
    from vidistill.data.batching import dequantize_batch

    view = dequantize_batch(dict(batch))
    expected = predictor.probabilities(view["frames"], view["mask"])
    scripted = torch.jit.load(record["exports"]["torchscript"]["path"])
    torch.testing.assert_close(scripted(batch["frames"], batch["mask"]), expected)
    import onnxruntime

    session = onnxruntime.InferenceSession(record["exports"]["onnx"]["path"])
    feeds = {"frames": batch["frames"].numpy(), "mask": batch["mask"].numpy()}
    torch.testing.assert_close(torch.from_numpy(session.run(None, feeds)[0]), expected)


@pytest.mark.parametrize("which", ["student", "mixture member", "hrnn_student"])
def test_exported_models_agree_with_pytorch(which, request, tmp_path):
    fixture, member = {
        "student": ("student", None),
        "mixture member": ("mixture", [0]),
        "hrnn_student": ("hrnn_student", None),
    }[which]
    root, checkpoint = request.getfixturevalue(fixture)
    record = export(checkpoint, tmp_path / "model", member=member)
    for name in ("torchscript", "onnx"):
        assert record["exports"][name]["max_abs_difference"] <= 1e-5
    assert json.loads((tmp_path / "model.json").read_text()) == record
    assert record["frames"]["sampler"] == ("all" if fixture == "mixture" else "uniform")
    # An unrolled recurrence is fixed to the example's frames; the others take any T.
    assert record["fixed_frames"] == (K if fixture == "hrnn_student" else None)
    exported_equals_predictor(record, Predictor(checkpoint, member=member, device="cpu"), root)
    with pytest.raises(FileExistsError, match="overwrite=true"):
        export(checkpoint, tmp_path / "model", member=member)
    with pytest.raises(ValueError, match="formats"):
        export(checkpoint, tmp_path / "other", formats=["tflite"])


def test_predictions_from_gzip_shards_over_http(student, tmp_path):
    """predict_to_file on gzip shards (not named .gz: compression="gzip") served over HTTP
    writes the same file as on the local shards."""
    import gzip

    from rangeserver import HttpServer

    root, checkpoint = student
    predictor = Predictor(checkpoint, device="cpu")
    local = shards_of(root)
    served = tmp_path / "served"
    served.mkdir()
    for path in map(Path, local):
        (served / path.name).write_bytes(gzip.compress(path.read_bytes()))
    server = HttpServer(served, tmp_path / "requests.log")
    try:
        urls = [f"{server.url}/{Path(path).name}" for path in local]
        remote = predict_to_file(
            predictor, urls, tmp_path / "remote.csv", num_workers=0, compression="gzip"
        )
    finally:
        server.stop()
    here = predict_to_file(predictor, local, tmp_path / "local.csv", num_workers=0)
    assert remote["videos"] == here["videos"] == NUM_TEST
    assert (tmp_path / "remote.csv").read_text() == (tmp_path / "local.csv").read_text()
