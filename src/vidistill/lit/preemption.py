"""Stopping on a scheduler's signal and resuming as if the run had never stopped.

A cluster stops a job with SIGTERM (preemption, ``scancel``, the time limit) and, when asked to
(``--signal=USR1@<seconds>``), warns it with SIGUSR1 first; both go to every process of the job.
:class:`StopOnPreemption` saves the run's last checkpoint at the next training-batch boundary and
stops the process; the same command run again resumes it (``ckpt_path=auto``), the streaming
loader at the next unread batch (:class:`vidistill.data.loader.EpochLoader`) and, through
:class:`RandomStateInCheckpoint`, the random streams where they were, so the weights at the end
equal those of a run that was never stopped.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from vidistill.data.loader import from_every_rank

log = logging.getLogger(__name__)

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(SystemExit):
    """A run stopped by a preemption signal once its checkpoint was saved. Its exit status is
    128 + the signal's number, what a shell reports for a process the signal killed, so a
    scheduler or a script sees a run that did not finish."""


class StopOnPreemption(pl.Callback):
    """On SIGTERM or SIGUSR1 during training, save ``checkpoint`` when the training batch under
    way ends, then raise :class:`Preempted`.

    The checkpoint is taken where Lightning's own step-interval checkpoints are (after
    ``on_train_batch_end``), so it resumes at the next batch exactly. A signal that arrives
    during validation lets Lightning stop it (SIGTERM) or waits for the next training batch
    (SIGUSR1); one that arrives when no training batch follows stops the run with the checkpoints
    it already has, which resume exactly too, only from further back.

    Lightning's handlers are kept: its SIGTERM handler runs at once (it stops validation early);
    a SIGUSR1 handler it installed under SLURM (which saves ``hpc_ckpt_<n>.ckpt`` and requeues the
    job) runs at the batch boundary, so its checkpoint is a consistent one too. Under DDP the ranks
    agree at every batch end whether any of them was signalled (one all-reduce of an int), and
    all stop together.
    """

    def __init__(self, checkpoint: str | os.PathLike):
        self.checkpoint = Path(checkpoint)
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Installed after Lightning's handlers (registered when fitting starts, before this hook)
        # so that they are chained, not replaced; Lightning's teardown restores the handlers the
        # process had before fitting.
        if threading.current_thread() is not threading.main_thread():
            return
        self.received = None
        for signum in PREEMPTION_SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info(
            "received %s: saving at the end of this training batch, then stopping",
            signal.Signals(signum).name,
        )
        if self.received is None:
            self.received = signum
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and callable(previous):
            previous(signum, frame)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        signum = self._received_on_any_rank(trainer)
        if not signum:
            return
        self._save(trainer)
        previous = self._previous.get(signum)
        if signum != signal.SIGTERM and callable(previous):
            previous(signum, None)
        raise Preempted(128 + signum)

    def _received_on_any_rank(self, trainer: pl.Trainer) -> int:
        """The signal received (the largest number, if ranks got different ones), 0 if none."""
        received = self.received or 0
        if trainer.world_size > 1:
            mine = torch.tensor(received, device=trainer.strategy.root_device)
            received = int(trainer.strategy.reduce(mine, reduce_op="max"))
        return received

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Lightning stops on SIGTERM after the batch's end hooks: a signal that came after this
        # callback's check is saved here, when the loop stopped between two batches of an
        # epoch (at its end, the epoch-end checkpoints hold that state; during validation, the
        # loops are mid-way). Not under DDP, where a save is a collective that only the ranks
        # that stopped here would join.
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        if (
            isinstance(exception, SIGTERMException)
            and self.received is not None
            and trainer.world_size == 1
            and trainer.training
            and progress.processed == progress.completed < trainer.num_training_batches
        ):
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.checkpoint)
        log.info(
            "preempted at epoch %d, batch %d: saved %s",
            trainer.current_epoch,
            trainer.fit_loop.epoch_loop.batch_progress.current.processed,
            self.checkpoint,
        )


class RandomStateInCheckpoint(pl.Callback):
    """Save every rank's global random states (torch, CUDA, numpy, ``random``) in checkpoints;
    a run resumed from one taken between two training batches sets them back before its first
    batch.

    Dropout and any other global draw then continue as in the run that was not stopped.
    Lightning does not save these states; epoch-end checkpoints need none of this, since
    :class:`vidistill.lit.callbacks.ReseedEachEpoch` reseeds every epoch from (seed, epoch).
    """

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None:
            return {}
        return {
            "epoch": trainer.current_epoch,
            "batches": trainer.fit_loop.epoch_loop.batch_progress.current.processed,
            "ranks": from_every_rank(random_states()),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict) if state_dict else None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # The first batch after a resume, after every epoch-start hook (ReseedEachEpoch's too).
        pending, self._pending = self._pending, None
        if not pending or (pending["epoch"], pending["batches"]) != (
            trainer.current_epoch,
            batch_idx,
        ):
            return
        ranks = pending["ranks"]
        if len(ranks) != trainer.world_size:
            log.warning(
                "the checkpoint holds the random states of %d ranks, this run has %d: dropout "
                "draws will differ from the interrupted run's",
                len(ranks),
                trainer.world_size,
            )
            return
        set_random_states(ranks[trainer.global_rank])


def random_states() -> dict[str, Any]:
    """This process's global random states, as tensors, lists and numbers (checkpoints load
    with ``weights_only``)."""
    numpy_state = np.random.get_state(legacy=False)
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": numpy_state["state"]["key"].tolist(),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": _as_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    """Set the states :func:`random_states` returned."""
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np.asarray(numpy_state["key"], np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_lists(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]
