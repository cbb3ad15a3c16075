"""Helpers for tests of stopping on a preemption signal and resuming from the saved checkpoint."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from vidistill.data.datamodule import YT8MDataModule
from vidistill.lit import VideoClassifier
from vidistill.lit.callbacks import ReseedEachEpoch
from vidistill.lit.preemption import RandomStateInCheckpoint, StopOnPreemption
from vidistill.models import build_backbone


class SignalAt(pl.Callback):
    """A preemption at a known point: ``signum`` to this process when training batch ``batch``
    of ``epoch`` ends. Only the main process is signalled, as a scheduler would; DataLoader
    workers must not be the ones to notice."""

    def __init__(self, signum: int, epoch: int, batch: int):
        self.signum, self.epoch, self.batch = signum, epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), self.signum)


def fit_resumable(
    directory: Path,
    shards: Path,
    *,
    epochs: int,
    batch_size: int,
    num_workers: int = 0,
    persistent_workers: bool = False,
    before: Sequence[pl.Callback] = (),
    after: Sequence[pl.Callback] = (),
    ckpt_path: Path | None = None,
    **trainer_options: Any,
) -> tuple[pl.Trainer, VideoClassifier]:
    """Fits a small NeXtVLAD VideoClassifier (10 classes, 4 clusters) on the CPU for ``epochs``
    over the ``*.tfrecord`` files in ``shards`` (training and validation both), with the
    callbacks a preemptible run has: ReseedEachEpoch(0), StopOnPreemption saving to
    ``<directory>/last.ckpt`` and RandomStateInCheckpoint. ``before`` and ``after``: callbacks
    whose hooks run before and after StopOnPreemption's. ``ckpt_path``: a checkpoint to resume.
    ``trainer_options``: more of pl.Trainer's arguments (a DDP fit's devices and strategy).

    The seed and deterministic kernels let a stopped-and-resumed fit be compared weight for
    weight with one never stopped; Lightning's own checkpointing is off so that the only
    checkpoint in ``directory`` is the one the preemption saved."""
    pl.seed_everything(0)
    model = VideoClassifier(build_backbone("nextvlad", 10, clusters=4, hidden_size=16), 10)
    files = str(shards / "*.tfrecord")
    datamodule = YT8MDataModule(
        train_files=files,
        val_files=files,
        num_classes=10,
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=persistent_workers,
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_options,
        callbacks=[
            ReseedEachEpoch(0),
            *before,
            StopOnPreemption(directory / "last.ckpt"),
            RandomStateInCheckpoint(),
            *after,
        ],
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, model
