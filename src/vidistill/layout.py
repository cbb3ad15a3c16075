"""Where a run keeps what: the run directory's layout and its ``metrics.json`` record.

Importable without torch (results tables and the claims report read runs with it). A run
directory holds::

    metrics.json               the record train.py / eval.py write when a run finishes
    checkpoints/last.ckpt      Lightning's last checkpoint (and the best, epoch_<n>.ckpt)
    checkpoints/final.ckpt     the weights of a run whose trainer kept no checkpoint
    hpc_ckpt_<n>.ckpt          Lightning's checkpoint before a SLURM requeue
    .hydra/overrides.yaml      the job's command-line overrides (Hydra)
    teacher/  pretrained/      runs trained first for this one (a single run's own;
                               teacher0/, teacher1/... with several teachers)

and a multirun's directory shares ``teachers/<name>`` and ``pretrained/<name>`` between jobs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vidistill.atomic import atomic_write

METRICS_FILE = "metrics.json"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
# A run whose trainer kept no checkpoint (fast_dev_run, callbacks=none) saves its final weights.
FINAL_CHECKPOINT = "final.ckpt"
# What Lightning names the checkpoint it saves in the run directory before SLURM requeues a job.
HPC_CHECKPOINT_PREFIX = "hpc_ckpt_"
TEACHER_DIR = "teacher"
PRETRAINED_DIR = "pretrained"
# In a multirun directory, the teachers and pretraining runs that jobs share.
SHARED_TEACHERS_DIR = "teachers"
SHARED_PRETRAINED_DIR = "pretrained"
HYDRA_DIR = ".hydra"
# The repository's Hydra config tree (conf/), for code that composes a preset by name; this file
# is src/vidistill/layout.py.
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
OVERRIDES_FILE = "overrides.yaml"
PREDICTIONS_FILE = "predictions.csv"


def read_record(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's ``metrics.json`` record, or None when it has none (not finished)."""
    path = Path(run_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_record(run_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write the run's ``metrics.json`` (values JSON cannot hold become strings); it appears
    only when complete, as a finished run's marker must."""
    return atomic_write(Path(run_dir) / METRICS_FILE, json.dumps(record, indent=2, default=str))


def last_checkpoint(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / LAST_CHECKPOINT


def final_checkpoint(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / FINAL_CHECKPOINT
