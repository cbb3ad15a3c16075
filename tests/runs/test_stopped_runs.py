"""A real `train.py` stopped mid-epoch by SIGTERM or SIGUSR1, as a cluster stops a job (the
signal goes to the whole process group, DataLoader workers included), then started again with
the same command: it trains on exactly the batches an uninterrupted run trains on, in the same
order, none twice, and ends with the same weights; teacher-first and pretraining-first runs too,
stopped in either stage."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hydra_helpers import CONFIG_DIR, NEXTVLAD, TINY_DATA

# Tiny data (96 training videos) in batches of 8 read by two workers: 12 batches an epoch.
BATCHES_PER_EPOCH = 12
COMMON = [
    *[o for o in TINY_DATA if not o.startswith(("data.batch_size", "data.num_workers"))],
    "data.batch_size=8",
    "data.num_workers=2",
    "data.shuffle_buffer=16",
    *NEXTVLAD,
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "test=false",
    "callbacks.rich_progress_bar=null",
    # Lightning rewrites last.ckpt only when it saves a top-k checkpoint: keeping every epoch's
    # makes last.ckpt the final weights, the ones compared.
    "callbacks.model_checkpoint.save_top_k=-1",
    # The ids of every training batch as its step takes it, at DEBUG (vidistill.data.datamodule).
    "+hydra.job_logging.loggers={vidistill.data.trained_ids:{level:DEBUG}}",
]
SERIAL = ["distill=serial", "k=5"]
# Segment finetuning that pretrains a video-level model first: the finetuning reads segments,
# whose stream resumes by reading its start again (segment mode): 32 rated segments in batches
# of 5, 7 batches an epoch (two workers: 15 and 17 segments).
PRETRAINING_FIRST = [
    "experiment=segment_finetune",
    "data.batch_size=5",
    "data.eval_batch_size=16",
    "trainer.max_epochs=2",
    "pretrain.overrides=['data.batch_size=8','trainer.max_epochs=2',"
    "'callbacks.model_checkpoint.save_top_k=-1']",
]
SEGMENT_BATCHES, SEGMENTS = 7, 32
TRAINED = re.compile(r"trained_ids\]\[DEBUG\] - epoch (\d+) batch (\d+) ids (.*)$")


@dataclass
class Process:
    """One `train.py` process: its exit status and the training batches it logged, in order, as
    (epoch, batch index in the epoch, video ids)."""

    returncode: int
    batches: list[tuple[int, int, tuple[str, ...]]]
    output: str


def command(data_dir: Path, run_dir: Path, overrides: list[str]) -> list[str]:
    return [
        sys.executable,
        "train.py",
        *COMMON,
        f"paths.root_dir={run_dir.parent}",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


def run(
    argv: list[str],
    stop: tuple[signal.Signals, int, int, int] | None = None,
    env: dict[str, str] | None = None,
) -> Process:
    """Run ``argv`` in its own process group, with ``env`` added to the environment;
    ``stop = (signal, epoch, batch, occurrence)`` sends the signal to the group once that
    training batch was logged for the ``occurrence``-th time (1: in the first training stage,
    2: in the second)."""
    process = subprocess.Popen(
        argv,
        cwd=Path(CONFIG_DIR).parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    lines, batches, seen = [], [], 0
    for line in process.stdout:
        lines.append(line)
        if match := TRAINED.search(line.rstrip("\n")):
            epoch, batch = int(match[1]), int(match[2])
            batches.append((epoch, batch, tuple(match[3].split())))
            if stop is not None and (epoch, batch) == stop[1:3]:
                seen += 1
                if seen == stop[3]:
                    os.killpg(process.pid, stop[0])
    returncode = process.wait(timeout=300)
    return Process(returncode, batches, "".join(lines))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    """The runs never stopped, one per command, trained on first use."""
    runs: dict[str, tuple[Path, Process]] = {}

    def get(name: str, overrides: list[str]) -> tuple[Path, Process]:
        if name not in runs:
            run_dir = tmp_path_factory.mktemp("straight") / name
            finished = run(command(data_dir, run_dir, overrides))
            assert finished.returncode == 0, finished.output[-3000:]
            runs[name] = (run_dir, finished)
        return runs[name]

    return get


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


def largest_difference(ours: Path, theirs: Path) -> float:
    a, b = weights(ours), weights(theirs)
    assert a.keys() == b.keys()
    return max(
        ((a[key].double() - b[key].double()).abs().max().item() for key in a if a[key].numel()),
        default=0.0,
    )


def stopped_and_resumed(data_dir, run_dir, overrides, stop, env=None) -> tuple[Process, Process]:
    """The command stopped by ``stop`` (see :func:`run`), then the same command again."""
    argv = command(data_dir, run_dir, overrides)
    first = run(argv, stop, env)
    assert first.returncode == 128 + stop[0], first.output[-3000:]
    assert not (run_dir / "metrics.json").exists()
    second = run(argv, env=env)
    assert second.returncode == 0, second.output[-3000:]
    return first, second


def check_same_training(
    first: Process, second: Process, straight: Process, batches: int = 12, samples: int = 96
) -> None:
    """The two processes trained, between them, exactly the uninterrupted run's batches: the
    first stopped mid-epoch, the second went on at the next batch, and the interrupted epoch
    (``batches`` of them, ``samples`` videos or segments) trained on each sample once."""
    assert first.batches + second.batches == straight.batches
    epoch, batch, _ = first.batches[-1]
    assert 0 <= batch < batches - 1  # stopped mid-epoch
    assert second.batches[0][:2] == (epoch, batch + 1)
    # The interrupted epoch: its start from the first process, its rest from the second.
    rest = next(i for i, b in enumerate(second.batches) if b[:2] == (epoch, batches - 1)) + 1
    interrupted = [ids for _, _, ids in first.batches[-(batch + 1) :] + second.batches[:rest]]
    videos = [video for ids in interrupted for video in ids]
    assert len(interrupted) == batches and len(set(videos)) == len(videos) == samples


def slurm_job(directory: Path) -> dict[str, str]:
    """The environment of a one-task SLURM job, which makes Lightning install its requeue
    handler for SIGUSR1, with a fake ``scontrol`` that writes its arguments to
    ``<directory>/scontrol.log``."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {directory / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        **dict.fromkeys(("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID"), "0"),
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
        "SLURM_NODELIST": "localhost",
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "under_slurm"),
    [(signal.SIGTERM, False), (signal.SIGUSR1, False), (signal.SIGUSR1, True)],
    ids=["SIGTERM", "SIGUSR1", "SIGUSR1-under-SLURM"],
)
def test_a_run_stopped_mid_epoch_resumes_at_the_next_batch_with_equal_weights(
    tmp_path, data_dir, uninterrupted, signum, under_slurm
):
    """Under SLURM Lightning's own SIGUSR1 handler runs too, at the same batch boundary: it saves
    hpc_ckpt_1.ckpt, the newer file, which the requeued job resumes, and requeues the job."""
    straight_dir, straight = uninterrupted("single", [])
    run_dir = tmp_path / "stopped"
    env = slurm_job(tmp_path) if under_slurm else None
    first, second = stopped_and_resumed(data_dir, run_dir, [], (signum, 1, 3, 1), env)
    resumed = run_dir / ("hpc_ckpt_1.ckpt" if under_slurm else "checkpoints/last.ckpt")
    assert f"resuming {resumed}" in second.output and "not read again" in second.output
    if under_slurm:
        assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    check_same_training(first, second, straight)
    last = Path("checkpoints") / "last.ckpt"
    assert largest_difference(run_dir / last, straight_dir / last) <= 1e-6


@pytest.mark.slow
def test_a_run_killed_after_a_step_checkpoint_resumes_from_it_exactly(
    tmp_path, data_dir, uninterrupted
):
    """SIGKILL leaves no chance to save: the run resumes from the last checkpoint saved every 4
    steps (mid-epoch: after batch 8 of 12 of the second epoch), trains again the batches after
    it, on the same videos in the same order, and ends with the weights of a run never
    stopped. A loader that restarted its epoch would train batches 0-3 of the epoch instead."""
    straight_dir, straight = uninterrupted("single", [])
    run_dir = tmp_path / "killed"
    argv = command(data_dir, run_dir, ["+callbacks.model_checkpoint.every_n_train_steps=4"])
    first = run(argv, (signal.SIGKILL, 1, 8, 1))
    assert first.returncode == -signal.SIGKILL
    second = run(argv)
    assert second.returncode == 0, second.output[-3000:]
    # Steps 20 (epoch 1, batch 7) was the last checkpoint: batch 8 on comes again.
    assert second.batches[0][:2] == (1, 8)
    resumed_at = straight.batches.index(second.batches[0])
    assert first.batches[:resumed_at] + second.batches == straight.batches
    last = Path("checkpoints") / "last.ckpt"
    assert largest_difference(run_dir / last, straight_dir / last) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_a_teacher_first_run_stopped_in_either_stage_ends_as_an_uninterrupted_one(
    tmp_path, data_dir, uninterrupted, stage
):
    straight_dir, straight = uninterrupted("serial", SERIAL)
    run_dir = tmp_path / "stopped"
    occurrence = 1 if stage == "teacher" else 2
    first, second = stopped_and_resumed(
        data_dir, run_dir, SERIAL, (signal.SIGTERM, 1, 4, occurrence)
    )
    check_same_training(first, second, straight)
    for checkpoint in ("teacher/checkpoints/last.ckpt", "checkpoints/last.ckpt"):
        assert largest_difference(run_dir / checkpoint, straight_dir / checkpoint) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["pretraining", "finetuning"])
def test_a_pretraining_first_run_stopped_in_either_stage_ends_as_an_uninterrupted_one(
    tmp_path, data_dir, uninterrupted, stage
):
    straight_dir, straight = uninterrupted("pretraining_first", PRETRAINING_FIRST)
    run_dir = tmp_path / "stopped"
    occurrence = 1 if stage == "pretraining" else 2
    batch = 3 if stage == "pretraining" else 1
    first, second = stopped_and_resumed(
        data_dir, run_dir, PRETRAINING_FIRST, (signal.SIGTERM, 1, batch, occurrence)
    )
    if stage == "pretraining":
        check_same_training(first, second, straight)
    else:
        check_same_training(first, second, straight, SEGMENT_BATCHES, SEGMENTS)
    for checkpoint in ("pretrained/checkpoints/last.ckpt", "checkpoints/last.ckpt"):
        assert largest_difference(run_dir / checkpoint, straight_dir / checkpoint) <= 1e-6
