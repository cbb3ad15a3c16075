"""End-to-end inference: what a fewer-frames student saves from TFRecord shards to top-20
predictions, against its teacher on all frames, measured in one run.

For the CPU NeXtVLAD and H-RNN, a teacher reading every frame and students reading Uniform-10
and Uniform-30 frames (H-RNN students with the paper's 5 blocks), and NeXtVLAD students whose 10
or 30 frames a learned selector picks (``selector=audio``: it reads every frame's audio, then
only the chosen frames' rgb is dequantized; its scoring is in the FLOPs), each predict the same shards
with :func:`vidistill.inference.predict_to_file` (2 reader workers, batches of 128, top-20
CSV), taking turns pass after pass (:func:`vidistill.inference.timing.alternating_best_rates`):
videos per second end to end, the speed-up over the teacher, and the FLOPs ratio
(:func:`vidistill.models.flops.count`, every layer, at the set's mean length for the teacher).
Then, in one process, where a pass spends its time: reading (file bytes and both checksums of
every record), decoding (the picked frames out of the protobuf, batching) and the model
(dequantization, forward pass, top-k).

The shards hold YT8M-like videos: 120 to 300 frames, mean 230 (YT8M's videos are 120 to 500
seconds long, features cut at 300), 200 classes. Weights are random: speed does not depend on
them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from training import CONFIG_DIR, NUM_CLASSES

from vidistill.data import FrameSelection, read_records
from vidistill.data.framing import iter_payloads
from vidistill.data.sharding import expand_files
from vidistill.data.synthetic import SyntheticConfig, ensure_dataset
from vidistill.inference import Predictor
from vidistill.inference.timing import alternating_best_rates
from vidistill.lit.checkpoints import RunConfigInCheckpoint
from vidistill.models.flops import count

BENCH_DATA = SyntheticConfig(
    seed=2,
    num_classes=NUM_CLASSES,
    num_train=600,
    num_validate=0,
    num_test=0,
    num_segment=0,
    train_shards=4,
    min_frames=120,
    max_frames=300,
    mean_frames=230.0,
)
MODELS = ("nextvlad", "hrnn")
STUDENT_FRAMES = (10, 30)
# Students whose frames a learned selector picks, by model: (k, "learned") rows.
LEARNED = {"nextvlad": (10, 30)}
# The fewer-frames paper's H-RNN students read 5 blocks (its teacher 20; the CPU preset, the
# teacher here, 10): the upper LSTM's steps are a per-video cost a student need not keep.
STUDENT_OVERRIDES = {"hrnn": ["model.backbone.num_blocks=5"]}
BATCH_SIZE = 128
WORKERS = 2
# The targets at k = 30: at least this end-to-end speed-up, and at least this share of
# the FLOPs ratio.
TARGET_SPEEDUP, TARGET_SHARE = 5.0, 0.8


def run(args: argparse.Namespace) -> None:
    root = ensure_dataset(Path(args.work_dir) / "inference", BENCH_DATA, progress=False)
    files = expand_files(str(root / "frame" / "train*.tfrecord"))
    lengths = [int(length) for length in _video_lengths(files)]
    mean_frames = sum(lengths) / len(lengths)
    print(
        f"{len(lengths)} videos, {mean_frames:.0f} frames on average ({min(lengths)}-"
        f"{max(lengths)}), {WORKERS} reader workers, batches of {BATCH_SIZE}, "
        f"{torch.get_num_threads()} torch threads"
    )
    header = (
        f"{'model':<10} {'frames':>10} {'videos/s':>9} {'speed-up':>9} {'FLOPs ratio':>12} "
        f"{'read':>6} {'decode':>7} {'model':>6}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as scratch:
        for preset in MODELS:
            views = [(None, False), *((k, False) for k in STUDENT_FRAMES)]
            views += [(k, True) for k in LEARNED.get(preset, ())]
            predictors = [
                Predictor(_checkpoint(Path(scratch), preset, k, learned), device="cpu")
                for k, learned in views
            ]
            # Teacher and students take turns, so that load from elsewhere hits them alike.
            rates = alternating_best_rates(
                predictors, files, args.repeats, BATCH_SIZE, WORKERS, scratch=scratch
            )
            rows = []
            for (k, learned), predictor, rate in zip(views, predictors, rates, strict=True):
                flops = count(predictor.backbone, round(mean_frames) if k is None else k)
                total = flops["flops_total"]
                if learned:
                    total += predictor.selector.flops_per_video(round(mean_frames))
                label = "all" if k is None else f"{'learned-' if learned else ''}{k}"
                rows.append((label, rate, total, _time_shares(predictor, files)))
            _print_rows(preset, rows)


def _print_rows(preset: str, rows: list) -> None:
    teacher_rate, teacher_flops = rows[0][1], rows[0][2]
    for label, rate, flops, shares in rows:
        speedup, ratio = rate / teacher_rate, teacher_flops / flops
        print(
            f"{preset:<10} {label:>10} {rate:>9.0f} {speedup:>8.2f}x "
            f"{ratio:>11.2f}x {shares['read']:>6.0%} {shares['decode']:>7.0%} "
            f"{shares['model']:>6.0%}"
        )
        if label == "30":
            share = speedup / ratio
            met = speedup >= TARGET_SPEEDUP and share >= TARGET_SHARE
            print(
                f"{'':<10} k = 30: {speedup:.2f}x end to end, {share:.2f} of the FLOPs ratio "
                f"{ratio:.2f}x (target: speed-up >= {TARGET_SPEEDUP:.0f}x and >= "
                f"{TARGET_SHARE} of the FLOPs ratio): {'met' if met else 'NOT met'}"
            )


def _checkpoint(directory: Path, preset: str, k: int | None, learned: bool = False) -> Path:
    """A checkpoint of the CPU ``preset`` (random weights) reading all frames (``k`` None),
    Uniform-k, or k frames a learned selector picks, as ``train.py`` would have written it;
    H-RNN students get the paper's student blocks."""
    overrides = [f"model={preset}", f"num_classes={NUM_CLASSES}"]
    if k is not None:
        overrides += [f"k={k}", *STUDENT_OVERRIDES.get(preset, [])]
    if learned:
        overrides.append("selector=audio")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    model = instantiate(cfg.model)
    path = directory / f"{preset}-{'learned-' if learned else ''}{k or 'all'}.ckpt"
    checkpoint = {"state_dict": model.state_dict(), "epoch": 0, "global_step": 0}
    # The entry train.py's callback adds to every checkpoint it saves.
    RunConfigInCheckpoint(
        model_config=OmegaConf.to_container(cfg.model, resolve=True),
        frames=FrameSelection("all" if k is None else "learned" if learned else "uniform", k),
        mode="frame",
        num_classes=NUM_CLASSES,
    ).on_save_checkpoint(None, model, checkpoint)
    torch.save(checkpoint, path)
    return path


def _time_shares(predictor: Predictor, files: list[str]) -> dict[str, float]:
    """Shares of one single-process pass: reading, decoding (with batching), the model."""
    start = time.perf_counter()
    for path in files:
        for _ in iter_payloads(path):
            pass
    read = time.perf_counter() - start
    dataset = predictor.dataset(files, batch_size=BATCH_SIZE, num_workers=0)
    start = time.perf_counter()
    batches = list(dataset)
    data = time.perf_counter() - start
    start = time.perf_counter()
    for batch in batches:
        probabilities = predictor.batch_probabilities(
            batch["frames"], batch["mask"], batch["num_frames"]
        )
        probabilities.topk(20, dim=1)
    model = time.perf_counter() - start
    total = data + model
    return {"read": read / total, "decode": (data - read) / total, "model": model / total}


def _video_lengths(files: list[str]) -> list[int]:
    return [
        len(video.rgb)
        for path in files
        for video in read_records(path, schema="frame", num_classes=NUM_CLASSES)
    ]
