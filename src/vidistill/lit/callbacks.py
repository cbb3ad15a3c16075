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


class LossWeightSchedule(pl.Callback):
    """Sets the objective's loss weights at the start of every training epoch, stage by stage.

    Args:
        stages: ``[{"epochs": n, "weights": {...}}, ...]``: each stage's weights hold for ``n``
            epochs (the last stage's ``epochs`` may be null: until the end). Terms a stage does
            not name get weight 0. E.g. the fewer-frames paper's two-stage training:
            ``[{"epochs": 2, "weights": {"rep": 1}}, {"epochs": None, "weights": {"ce": 1}}]``.

    The weights depend only on the epoch number, so a resumed run continues in the right stage.
    The objective must have a ``weights`` attribute (as
    :class:`vidistill.distill.TeacherStudentDistillation`), checked when training starts.
    """

    def __init__(self, stages: list[dict]):
        if not stages:
            raise ValueError("LossWeightSchedule needs at least one stage")
        for i, stage in enumerate(stages):
            epochs = stage.get("epochs")
            if "weights" not in stage or (epochs is None and i < len(stages) - 1):
                raise ValueError(
                    f"stage {i} of the loss schedule needs 'weights' and, unless it is the last, "
                    f"'epochs': got {dict(stage)}"
                )
            if epochs is not None and epochs < 1:
                raise ValueError(f"stage {i} of the loss schedule lasts {epochs} epochs")
        self.stages = [
            (stage.get("epochs"), {name: float(w) for name, w in stage["weights"].items()})
            for stage in stages
        ]

    def weights_at(self, epoch: int) -> dict[str, float]:
        """The weights of the stage that ``epoch`` (0-based) falls in."""
        end = 0
        for epochs, weights in self.stages:
            end = end + epochs if epochs is not None else epoch + 1
            if epoch < end:
                return weights
        return self.stages[-1][1]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        objective = pl_module.objective
        if not hasattr(objective, "weights"):
            raise TypeError(
                f"LossWeightSchedule needs an objective with loss weights; "
                f"{type(objective).__name__} has none (use it with distill=serial or parallel)"
            )
        for _, weights in self.stages:  # unknown term names fail now, not epochs later
            objective.weights = self._complete(objective, weights)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        objective = pl_module.objective
        objective.weights = self._complete(objective, self.weights_at(trainer.current_epoch))

    @staticmethod
    def _complete(objective, weights: dict[str, float]) -> dict[str, float]:
        return {**dict.fromkeys(objective.weights, 0.0), **weights}
