"""Stopping on a preemption signal and resuming, in process: the checkpoint saved at the batch
boundary resumes to the weights of a fit never stopped (NeXtVLAD: dropout and BatchNorm)."""

from __future__ import annotations

import random
import signal
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from ddp_helpers import run_launched_on_two_ranks
from preemption_helpers import SignalAt, fit_resumable
from shardtools import write_shards
from vidistill.lit import VideoClassifier
from vidistill.lit.preemption import Preempted, random_states, set_random_states


def fit(
    directory, shards, before=(), after=(), ckpt_path=None
) -> tuple[pl.Trainer, VideoClassifier]:
    """Two epochs over the 21 test videos in batches of 3 (7 an epoch); ``before`` and ``after``:
    callbacks whose hooks run before and after StopOnPreemption's."""
    return fit_resumable(
        directory,
        shards,
        epochs=2,
        batch_size=3,
        before=before,
        after=after,
        ckpt_path=ckpt_path,
    )


@pytest.mark.parametrize(
    ("signum", "late"),
    [(signal.SIGTERM, False), (signal.SIGUSR1, False), (signal.SIGTERM, True)],
    ids=["SIGTERM", "SIGUSR1", "SIGTERM-after-the-batch-check"],
)
def test_a_signalled_fit_saves_at_the_batch_boundary_and_resumes_exactly(
    tmp_path, shards, signum, late
):
    """``late``: the signal comes after StopOnPreemption looked at the batch end; Lightning stops
    the loop before the next batch (SIGTERMException, status 0) and the save happens then."""
    directory, _ = shards
    _, straight = fit(tmp_path / "straight", directory)
    signaller = SignalAt(signum, epoch=1, batch=2)
    with pytest.raises(SystemExit) as stopped:
        fit(
            tmp_path / "stopped",
            directory,
            [] if late else [signaller],
            [signaller] if late else [],
        )
    assert stopped.value.code == (None if late else 128 + signum)
    checkpoint = torch.load(tmp_path / "stopped" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 7 + 3  # saved after batch 2 of the second epoch
    (loader_state,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["epoch"] == 1
    assert loader_state["ranks"] == [{"batches": [3], "next_reader": 0}]
    # The handlers the process had are back once the fit stopped.
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)
    trainer, resumed = fit(
        tmp_path / "stopped", directory, ckpt_path=tmp_path / "stopped" / "last.ckpt"
    )
    assert trainer.global_step == 14
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_random_states_round_trip():
    states = random_states()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    set_random_states(states)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def _fit_on_rank(rank: int, directory: Path, shards: Path, mode: str) -> None:
    """One rank of a 2-rank DDP fit (2 DataLoader workers each): ``straight``, ``stop`` (rank 0
    alone gets SIGUSR1 after batch 2 of epoch 1) or ``resume`` (from the checkpoint ``stop``
    saved). Rank 0 writes the final weights to ``<directory>/<mode>.pt``."""
    signaller = [SignalAt(signal.SIGUSR1, epoch=1, batch=2)] if mode == "stop" and rank == 0 else []
    checkpoint = directory / "last.ckpt" if mode == "resume" else None
    try:
        _, model = fit_resumable(
            directory,
            shards,
            epochs=2,
            batch_size=2,
            num_workers=2,
            before=signaller,
            ckpt_path=checkpoint,
            devices=2,
            strategy=DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=60)),
            limit_val_batches=0,  # no validation: spawned processes are slow enough
        )
    except Preempted as stopped:
        (directory / f"stopped{rank}").write_text(str(stopped.code))
        return
    if rank == 0:
        torch.save(model.state_dict(), directory / f"{mode}.pt")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ddp_ranks_stop_together_and_resume_each_at_its_own_position(tmp_path):
    """2 ranks x 2 workers: rank 0 alone is signalled, both ranks save and stop after the same
    batch, the checkpoint holds both ranks' positions and random states, and the resumed fit
    ends with the weights of one never stopped."""
    directory = tmp_path / "shards"
    write_shards(directory, num_files=4, per_file=8)  # 8 videos a reader: 4 batches of 2
    for mode in ("straight", "stop", "resume"):
        run_launched_on_two_ranks(_fit_on_rank, tmp_path, directory, mode)
    assert [(tmp_path / f"stopped{rank}").read_text() for rank in (0, 1)] == ["138", "138"]
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    (loader,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    # Stopped after 3 batches of the epoch on each rank: two from worker 0, one from worker 1.
    assert loader["ranks"] == [{"batches": [2, 1], "next_reader": 1}] * 2
    assert len(checkpoint["callbacks"]["RandomStateInCheckpoint"]["ranks"]) == 2
    straight = torch.load(tmp_path / "straight.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resume.pt", weights_only=True)
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
