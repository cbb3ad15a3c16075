"""Running a function in two processes joined by a gloo process group (DDP on CPU)."""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable
from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp


def run_on_two_ranks(worker: Callable[..., None], *args) -> None:
    """``worker(rank, *args)`` in 2 spawned processes that share a gloo process group;
    ``worker`` must be importable (a module-level function)."""
    mp.spawn(_in_group, args=(worker, _free_port(), args), nprocs=2, join=True)


def run_launched_on_two_ranks(worker: Callable[..., None], *args) -> None:
    """``worker(rank, *args)`` in 2 spawned processes with the environment a DDP launcher
    (torchrun, SLURM) gives its processes, so that ``Trainer(strategy="ddp", devices=2)`` in
    ``worker`` joins them into one gloo group, as it would under a launcher, instead of
    re-running the command for rank 1; ``worker`` must be importable (a module-level function)."""
    mp.spawn(_launched, args=(worker, _free_port(), args), nprocs=2, join=True)


def _launched(rank: int, worker: Callable[..., None], port: int, args: tuple) -> None:
    # A spawned child inherits the "spawn" start method; a launched process has the platform's
    # default, so that DataLoader workers start as fast as they do under a launcher.
    multiprocessing.set_start_method(None, force=True)
    # Lightning's default cluster environment reads these: LOCAL_RANK set means the processes
    # were created outside Lightning.
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE="2",
        NODE_RANK="0",
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    worker(rank, *args)


def _in_group(rank: int, worker: Callable[..., None], port: int, args: tuple) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=60),
    )
    try:
        worker(rank, *args)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
