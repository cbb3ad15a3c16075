"""Lightning callbacks shared by every vidistill run."""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch


class ReseedEachEpoch(pl.Callback):
    """Seed torch, numpy and ``random`` from ``(seed, epoch, rank)`` when every training epoch
    starts.

    Dropout draws and anything else random in an epoch then depend only on the seed and the epoch
    number, not on what ran before: a run resumed from an epoch-end checkpoint (``last.ckpt``)
    repeats the remaining epochs exactly as the uninterrupted run would have. The data stream's
    shuffling and random frames are already keyed by (seed, epoch) in the dataset.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = np.random.SeedSequence([self.seed, trainer.current_epoch, trainer.global_rank])
        value = int(state.generate_state(1, np.uint64)[0] >> 1)
        torch.manual_seed(value)
        np.random.seed(value % 2**32)
        random.seed(value)
