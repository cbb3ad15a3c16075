"""Running a function in two processes joined by a gloo process group (DDP on CPU)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp


def run_on_two_ranks(worker: Callable[..., None], *args) -> None:
    """``worker(rank, *args)`` in 2 spawned processes that share a gloo process group;
    ``worker`` must be importable (a module-level function)."""
    mp.spawn(_in_group, args=(worker, _free_port(), args), nprocs=2, join=True)


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
