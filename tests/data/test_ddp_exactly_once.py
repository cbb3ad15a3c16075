"""Exactly-once reading under real DDP: Lightning ``strategy="ddp"`` on 2 gloo processes x 2
DataLoader workers, on shards of unequal sizes.

* Training: per epoch, every video is read by at most one reader, and the videos no rank read are
  exactly the remainder that the sharding log names as dropped to keep the ranks equal.
* Validation and test: the ranks together score each video of the split exactly once, the
  synced metrics hold exactly N videos, and GAP, mAP, Hit@1 and PERR equal a single-process
  evaluation of the same checkpoint to 1e-6.
* The evaluation loss and the test GAP's bootstrap interval equal it too (both once differed:
  Lightning's truncated batch-size sync, and resamples drawn by the order videos were scored in).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.strategies import DDPStrategy

from ddp_helpers import run_launched_on_two_ranks
from shardtools import write_shards
from vidistill.data.datamodule import YT8MDataModule
from vidistill.lit.classifier import VideoClassifier
from vidistill.metrics._common import cat_state
from vidistill.models.logistic import FrameMeanLogistic

NUM_CLASSES = 10
# Unequal shards. Training: 26 videos over 2 ranks x 2 workers = 4 readers of 6, 2 dropped.
# Evaluation, in batches of 2: 17 validation videos, read 4 + 4 by rank 0 and 4 + 5 by rank 1
# (4 and 5 batches); 13 test videos, 3 + 3 and 3 + 4 (4 batches each). The DataLoader interleaves
# its two workers' batches, so the synced videos are not in file order.
SIZES = {"train": [7, 3, 11, 5], "val": [6, 2, 9], "test": [9, 0, 4]}
READERS = 4
EPOCHS = 3
RANKING = ("gap", "map", "hit1", "perr")  # the official video-level metrics
DROPPED = re.compile(r"records are dropped this epoch: (.*)$")

# One DDP run (about 20-40 s) serves every test of the module; pytest-timeout counts it in the
# first test's time.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


class IdRecorder(pl.Callback):
    """Records the ids of every batch this rank trains on or scores, per pass, and how many
    videos the evaluation metrics hold once synced over the ranks."""

    def __init__(self) -> None:
        self.ids: dict[str, list[str]] = defaultdict(list)
        self.videos_scored: dict[str, dict[str, int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.ids[f"train/{trainer.current_epoch}"] += batch["ids"]

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.ids[self._validation_pass(trainer)] += batch["ids"]

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.ids["test"] += batch["ids"]

    # Callbacks' epoch-end hooks run before the module's, which computes and resets the metrics.
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.videos_scored[self._validation_pass(trainer)] = _videos_in(pl_module.val_metrics)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self.videos_scored["test"] = _videos_in(pl_module.test_metrics)

    @staticmethod
    def _validation_pass(trainer: pl.Trainer) -> str:
        return f"val/{trainer.current_epoch}" if trainer.state.fn == "fit" else "validate"


def _videos_in(metrics) -> dict[str, int]:
    """Videos each metric's state holds once synced over the ranks (a collective call)."""
    counts = {}
    for name, metric in metrics.items(keep_base=True):
        with metric.sync_context():
            if name == "gap":
                counts[name] = len(cat_state(metric.video_positives))
            elif name == "map":  # top-k entries per video
                counts[name] = len(cat_state(metric.top_classes)) // min(metric.top_k, NUM_CLASSES)
            else:
                counts[name] = int(metric.hit_videos if name == "hit1" else metric.perr_videos)
    return counts


def _datamodule(root: Path, num_workers: int) -> YT8MDataModule:
    return YT8MDataModule(
        **{f"{split}_files": str(root / split / "*.tfrecord") for split in SIZES},
        num_classes=NUM_CLASSES,
        max_frames=40,
        batch_size=4,
        eval_batch_size=2,
        num_workers=num_workers,
        shuffle_buffer=4,
        index_cache=str(root / "index"),
    )


def _model() -> VideoClassifier:
    return VideoClassifier(FrameMeanLogistic(NUM_CLASSES), num_classes=NUM_CLASSES)


def _trainer(root: Path, recorder: IdRecorder, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=EPOCHS,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=[recorder],
        **kwargs,
    )


def _rank_worker(rank: int, root: str) -> None:
    """One DDP rank: train, save a checkpoint, then validate and test from it; writes what it
    read and the synced metrics to ``rank<rank>.json``, the sharding log to ``rank<rank>.log``
    (DataLoader workers are forked and inherit the handler)."""
    root = Path(root)
    handler = logging.FileHandler(root / f"rank{rank}.log")
    sharding_log = logging.getLogger("vidistill.data.sharding")
    sharding_log.addHandler(handler)
    sharding_log.setLevel(logging.INFO)
    pl.seed_everything(0, verbose=False)
    recorder = IdRecorder()
    strategy = DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=120))
    trainer = _trainer(root, recorder, strategy=strategy, devices=2)
    model, datamodule = _model(), _datamodule(root, num_workers=2)
    trainer.fit(model, datamodule)
    checkpoint = str(root / "model.ckpt")
    trainer.save_checkpoint(checkpoint)
    (validated,) = trainer.validate(model, datamodule, ckpt_path=checkpoint, verbose=False)
    (tested,) = trainer.test(model, datamodule, ckpt_path=checkpoint, verbose=False)
    result = {
        "ids": recorder.ids,
        "videos_scored": recorder.videos_scored,
        "metrics": {**validated, **tested},
    }
    (root / f"rank{rank}.json").write_text(json.dumps(result))


def _single_process_evaluation(root: Path) -> tuple[dict, IdRecorder]:
    """Validation and test metrics of the DDP run's checkpoint in this one process, read by the
    main process alone (no DataLoader workers)."""
    recorder = IdRecorder()
    trainer = _trainer(root, recorder, devices=1)
    model, datamodule = _model(), _datamodule(root, num_workers=0)
    checkpoint = str(root / "model.ckpt")
    (validated,) = trainer.validate(model, datamodule, ckpt_path=checkpoint, verbose=False)
    (tested,) = trainer.test(model, datamodule, ckpt_path=checkpoint, verbose=False)
    return {**validated, **tested}, recorder


def _logged_drops(log_file: Path, files: list[str], ids_by_file: dict[str, list[str]]) -> list:
    """The sets of video ids that the sharding log names as dropped, one per logged plan."""
    drops = []
    for line in log_file.read_text().splitlines():
        match = DROPPED.search(line)
        if match is None:
            continue
        dropped = set()
        for item in match.group(1).split(", "):
            name, lo, hi = re.fullmatch(r"(.+)\[(\d+):(\d+)\]", item).groups()
            # A file is named by its path, or as "file #i" by its index in the sorted file list.
            path = files[int(name[len("file #") :])] if name.startswith("file #") else name
            dropped |= set(ids_by_file[path][int(lo) : int(hi)])
        drops.append(frozenset(dropped))
    return drops


def _write_splits(root: Path) -> dict[str, dict[str, list[str]]]:
    """Each split's shards; returns {split: {file path: ids in record order}}."""
    splits = {}
    for seed, (split, sizes) in enumerate(SIZES.items()):
        videos = write_shards(root / split, num_files=len(sizes), per_file=sizes, seed=seed)
        files = sorted(str(p) for p in (root / split).glob("*.tfrecord"))
        splits[split] = {
            f: [v for v in videos if v.startswith(f"v{i:02d}")] for i, f in enumerate(files)
        }
    return splits


@dataclass
class Run:
    """What the DDP run read and reported, and what one process reports on its checkpoint."""

    root: Path
    splits: dict[str, dict[str, list[str]]]  # {split: {file: ids in record order}}
    ranks: list[dict]  # per rank: ids read per pass, videos in the synced metrics, metrics
    single: dict[str, float]  # the single-process evaluation's metrics
    single_ids: dict[str, list[str]]  # and the ids it scored per pass

    def videos(self, split: str) -> set[str]:
        return {v for ids in self.splits[split].values() for v in ids}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("ddp")
    splits = _write_splits(root)
    run_launched_on_two_ranks(_rank_worker, str(root))
    ranks = [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]
    single, recorder = _single_process_evaluation(root)
    return Run(root, splits, ranks, single, dict(recorder.ids))


def test_training_reads_no_video_twice_and_drops_only_the_logged_remainder(run):
    """Per epoch, over both ranks' training batches: no video twice (it would be if both ranks
    read the same shards), equal counts per rank, and the videos not read are exactly the
    remainder the sharding log names for that epoch's plan."""
    everything = run.videos("train")
    missing_per_epoch = []
    for epoch in range(EPOCHS):
        per_rank = [rank["ids"][f"train/{epoch}"] for rank in run.ranks]
        seen = Counter(per_rank[0] + per_rank[1])
        assert max(seen.values()) == 1, f"epoch {epoch}: read twice: {seen.most_common(3)}"
        assert [len(ids) for ids in per_rank] == [len(everything) // READERS * 2] * 2
        missing_per_epoch.append(frozenset(everything - set(seen)))
    files = list(run.splits["train"])
    drops = _logged_drops(run.root / "rank0.log", files, run.splits["train"])
    assert drops, "the sharding log names no dropped records"
    assert all(len(dropped) == len(everything) % READERS for dropped in drops)
    assert set(missing_per_epoch) == set(drops)
    assert len(set(missing_per_epoch)) > 1  # the dropped few change with the epoch's file order
    assert not _logged_drops(run.root / "rank1.log", files, run.splits["train"])  # rank 0 logs


@pytest.mark.parametrize("name", [*(f"val/{e}" for e in range(EPOCHS)), "validate", "test"])
def test_evaluation_scores_every_video_exactly_once(run, name):
    """Each validation pass (during fit, and trainer.validate) and the test pass: the ranks
    share the split and score each of its N videos once; the synced metrics hold N videos."""
    expected = run.videos("test" if name == "test" else "val")
    per_rank = [rank["ids"][name] for rank in run.ranks]
    assert all(per_rank), "a rank scored nothing: the split was not shared"
    seen = Counter(per_rank[0] + per_rank[1])
    assert max(seen.values()) == 1, f"scored twice: {seen.most_common(3)}"
    assert set(seen) == expected
    for rank in run.ranks:
        assert rank["videos_scored"][name] == dict.fromkeys(RANKING, len(expected))


@pytest.mark.parametrize("key", [f"{split}/{m}" for split in ("val", "test") for m in RANKING])
def test_synced_metrics_equal_a_single_process_evaluation(run, key):
    """GAP, mAP, Hit@1 and PERR of the DDP evaluation (synced, on both ranks) equal those of
    one process reading the whole split from the same checkpoint."""
    split = key.partition("/")[0]
    scored = run.single_ids["validate" if split == "val" else "test"]
    assert sorted(scored) == sorted(run.videos(split))
    for rank in run.ranks:
        assert rank["metrics"][key] == pytest.approx(run.single[key], abs=1e-6)


def test_synced_gap_bootstrap_interval_equals_a_single_process_evaluation(run):
    """The test GAP's bootstrap interval, over the same resamples of the same test videos
    whichever ranks and workers scored them."""
    for rank in run.ranks:
        for key in ("test/gap_ci_low", "test/gap_ci_high"):
            assert rank["metrics"][key] == pytest.approx(run.single[key], abs=1e-6)


@pytest.mark.parametrize("key", ["val/loss", "test/loss"])
def test_synced_eval_loss_equals_a_single_process_evaluation(run, key):
    """The evaluation loss, a batch-size weighted mean over the split, synced over the ranks."""
    for rank in run.ranks:  # float32 sums in another order: equal to a relative 1e-6
        assert rank["metrics"][key] == pytest.approx(run.single[key], rel=1e-6)
