"""Runs a run trains first: the teachers of serial distillation (:mod:`vidistill.runs.teachers`)
and the video-level model of segment finetuning. Each is trained once, in the run's own directory or, in a multirun, in a
directory its jobs share (named by a hash of the run's config, locked while it trains), and
reused while its record and checkpoint are there."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from vidistill.layout import (
    METRICS_FILE,
    PRETRAINED_DIR,
    SHARED_PRETRAINED_DIR,
)
from vidistill.runs.builders import config_record, in_multirun
from vidistill.runs.resume import AUTO

log = logging.getLogger(__name__)

# Trains one run from its config; ``overrides`` None: the run is identified by its directory.
TrainRun = Callable[[DictConfig, "list[str] | None"], Any]
# The parts of a run's config that decide what model it trains.
RUN_IDENTITY = (
    "model",
    "data",
    "trainer",
    "callbacks",
    "distill",
    "seed",
    "num_classes",
    "pretrained",
    "optimized_metric",
    "test",
)
# Data config keys that say how batches are loaded (processes, pinned memory, prefetch), not
# which: runs differing only there train the same model.
LOADER_KEYS = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")
# Callbacks (by their key under `callbacks`) that act on a distillation objective, so are left
# out of the run that trains the teacher first.
DISTILLATION_CALLBACKS = ("loss_schedule",)
# Trainer settings of a debugging run (conf/debug/) that the runs it trains first inherit, so
# that a smoke test of a student stays a smoke test.
DEBUG_TRAINER_KEYS = (
    "fast_dev_run",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "overfit_batches",
    "detect_anomaly",
    "profiler",
)


def train_pretrained_first(cfg: DictConfig, train_run: TrainRun) -> dict[str, Any]:
    """Train this run's model on video-level labels first (``pretrain.enabled``), or reuse
    the one found in its directory; points ``cfg.pretrained`` at its best checkpoint and
    returns its record.

    The pretraining run is the training config composed with this job's model, distill and
    data choices and T, then ``pretrain.overrides``; its backbone is this run's (so the weights
    fit) and it reads this run's synthetic data. It lives in ``pretrain.shared_dir`` (in a
    multirun, by default ``<sweep dir>/pretrained``, shared by the jobs that need the same
    one) or else ``<run>/pretrained``.
    """
    run_config = functools.partial(_pretraining_run_config, cfg)
    directory, shared = shared_directory(
        cfg,
        run_config,
        cfg.pretrain.get("shared_dir"),
        own=PRETRAINED_DIR,
        shared=SHARED_PRETRAINED_DIR,
    )
    record = train_once(directory, run_config, train_run, shared, "video-level model")
    with open_dict(cfg):
        cfg.pretrained = record["best_checkpoint"]
    return {
        "directory": str(directory),
        **{key: record[key] for key in ("metrics", "best_checkpoint", "epochs")},
    }


def _pretraining_run_config(cfg: DictConfig, directory: Path) -> DictConfig:
    if not (GlobalHydra.instance().is_initialized() and HydraConfig.initialized()):
        raise RuntimeError("pretrain.enabled: the pretraining run is composed inside train.py")
    choices = HydraConfig.get().runtime.choices
    video_data = choices.get("data", "synthetic").removesuffix("_segments")
    stage = compose(
        config_name="config",
        overrides=[
            f"model={choices['model']}",
            f"distill={choices['distill']}",
            f"data={video_data}",
            f"T={cfg.T}",
            f"seed={cfg.seed}",
            *cfg.pretrain.overrides,
        ],
    )
    with open_dict(stage):
        stage.model.backbone = copy.deepcopy(cfg.model.backbone)
        stage.paths = copy.deepcopy(cfg.paths)
        stage.paths.output_dir = str(directory)
        stage.data.num_workers = cfg.data.num_workers
        if "generator" in stage.data and "generator" in cfg.data:
            stage.data.generator = copy.deepcopy(cfg.data.generator)
        stage.task_name = f"{cfg.task_name}/{PRETRAINED_DIR}"
        for key in DEBUG_TRAINER_KEYS:
            if cfg.trainer.get(key) is not None:
                stage.trainer[key] = cfg.trainer[key]
        stage.pretrain.enabled = False
        stage.ckpt_path = AUTO
    return stage


def train_once(
    directory: Path,
    run_config: Callable[[Path], DictConfig],
    train_run: TrainRun,
    shared: bool = False,
    what: str = "run",
) -> dict[str, Any]:
    """Train the run ``run_config(directory)`` configures with ``train_run`` unless
    ``directory`` holds it finished (its record and checkpoint); returns the run's record.

    A shared directory is locked while its run trains: jobs of a sweep that need the same run
    wait for the one training it, and a job that dies releases the lock (the next one resumes
    the run from its last checkpoint)."""
    record_path = directory / METRICS_FILE
    with _exclusive(directory) if shared else contextlib.nullcontext():
        if not _usable_record(record_path):
            log.info("training the %s first, in %s", what, directory)
            stage = run_config(directory)
            with open_dict(stage):
                stage.skip_finished = False  # a record without its checkpoint is retrained
            # Such a run's identity is its directory, not the job that happens to train it.
            train_run(stage, None)
        else:
            log.info("reusing the %s trained in %s", what, directory)
    record = json.loads(record_path.read_text())
    if not record.get("best_checkpoint"):
        raise RuntimeError(f"{record_path}: the {what} run saved no checkpoint to start from")
    return record


def _usable_record(path: Path) -> bool:
    """Whether a prerequisite run's record is there with the checkpoint it names (records are
    kept as evidence without their checkpoints; such a run is trained again)."""
    if not path.is_file():
        return False
    best = json.loads(path.read_text()).get("best_checkpoint")
    if best and not Path(best).is_file():
        log.warning("%s names %s, which is gone: training that run again", path, best)
        return False
    return True


def shared_directory(
    cfg: DictConfig,
    run_config: Callable[[Path], DictConfig],
    shared_dir: str | None,
    own: str,
    shared: str,
) -> tuple[Path, bool]:
    """Where a run this run depends on is trained, and whether other runs share it.

    ``shared_dir`` (in a multirun, by default ``<sweep dir>/<shared>``) holds one directory per
    such run, named by its backbone and a hash of everything it depends on, so every job of a
    sweep that needs the same one uses the same directory. A single run, or a job whose
    processes SLURM or torchrun started (each of them would take the lock), trains its own in
    ``<run>/<own>``.
    """
    if shared_dir is None and in_multirun():
        shared_dir = Path(HydraConfig.get().sweep.dir) / shared
    if shared_dir is None or _started_as_one_of_many_processes():
        return Path(cfg.paths.output_dir) / own, False
    return Path(shared_dir) / _run_name(run_config(Path("run"))), True


def _run_name(run: DictConfig) -> str:
    """``<backbone class>-<hash>``, the hash over the run's resolved config less what does not
    change the trained model (where it is written, data loading processes, the progress bar
    and loggers)."""
    resolved = config_record(run)
    identity = {key: resolved[key] for key in RUN_IDENTITY if key in resolved}
    for key in LOADER_KEYS:  # how the data is read, not what
        identity["data"].pop(key, None)
    # A callback switched off (the student's loss schedule, in a teacher's run) is no callback.
    identity["callbacks"] = {
        name: callback
        for name, callback in (identity.get("callbacks") or {}).items()
        if callback is not None and name != "rich_progress_bar"
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    backbone = str(run.model.backbone._target_).rsplit(".", 1)[-1]
    return f"{backbone}-{digest.hexdigest()[:12]}"


def _started_as_one_of_many_processes() -> bool:
    """Whether this process is one of several that a cluster launcher (SLURM tasks, torchrun)
    started for one job: they all train the shared run together, so none may wait on a lock."""
    return any(int(os.environ.get(name, "1")) > 1 for name in ("WORLD_SIZE", "SLURM_NTASKS"))


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<directory>.lock`` (a POSIX record lock: it works across
    the nodes of a shared file system and is released when the holding process dies)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f"{directory.name}.lock", "a") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("waiting for another job to finish training %s", directory)
            fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)
