"""Training a run: ``train.py``'s work. Build everything from the config, train what the run
depends on first, fit, evaluate the best checkpoint and write the run's record."""

from __future__ import annotations

import functools
import logging
import math
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vidistill.data.frames import FrameSelection
from vidistill.host_memory import kept_while
from vidistill.layout import final_checkpoint, write_record
from vidistill.lit.checkpoints import RunConfigInCheckpoint, check_resume_compatible
from vidistill.models.base import count_parameters
from vidistill.runs.builders import (
    build,
    build_datamodule,
    build_objective,
    build_trainer,
    config_record,
    describe_device,
    display_path,
    instantiate_group,
    start_from_pretrained,
)
from vidistill.runs.compilation import compile_backbone
from vidistill.runs.prerequisites import train_pretrained_first
from vidistill.runs.resume import finished_record, resume_callbacks, resume_path
from vidistill.runs.teachers import (
    expand_teacher_presets,
    needs_teacher_run,
    train_teachers_first,
)
from vidistill.runs.trackers import log_record, tracking

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Fit the configured model, evaluate its best checkpoint, write ``metrics.json``.

    Serial distillation without a teacher checkpoint first trains the teacher the same way, and
    ``pretrain.enabled`` a video-level model (see :mod:`vidistill.runs.prerequisites`). With
    ``cfg.skip_finished``, a run directory that already holds the ``metrics.json`` of the same
    job is not trained again (unless ``ckpt_path`` names a checkpoint to resume); with
    ``ckpt_path=auto`` an interrupted one resumes from its last checkpoint.
    Returns the value of ``cfg.optimized_metric`` for sweepers (None if it was not logged).
    """
    return train_run(cfg, job_overrides())


def job_overrides() -> list[str] | None:
    """The running Hydra job's command-line overrides (None when Hydra is not running)."""
    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def train_run(cfg: DictConfig, overrides: list[str] | None) -> float | None:
    """:func:`train`, the run identified by ``overrides`` (None: by its directory alone) for
    skipping and resuming."""
    with kept_while():
        return _train_run(cfg, overrides)


def _train_run(cfg: DictConfig, overrides: list[str] | None) -> float | None:
    finished = finished_record(cfg, overrides)
    if finished is not None:
        # A sweep run again into its directory fills in only the jobs that did not finish.
        return _optimized(cfg, finished["metrics"])
    # Started before the runs this one trains first, so wall_time covers them (not when it
    # reuses finished ones).
    start = time.perf_counter()
    datamodule = build_datamodule(cfg)
    ckpt_path, prerequisites = _prerequisites(cfg, overrides)
    # Seeded after the runs above, so this run's randomness is the same whether it trained
    # them or found them trained.
    pl.seed_everything(cfg.seed, workers=True)
    model = build(cfg.model, objective=build_objective(cfg))
    if ckpt_path is not None:
        check_resume_compatible(model, ckpt_path)
    elif cfg.get("pretrained"):
        start_from_pretrained(model, cfg.pretrained)
    if cfg.get("compile"):
        compile_backbone(model, backend=cfg.get("compile_backend") or "inductor")
    trainer = build_trainer(cfg, _callbacks(cfg, overrides, datamodule.frames))
    if trainer.is_global_zero:  # before this run trains: on what, and where it all goes
        print(f"training on {describe_device(trainer)}")
        print(f"run directory: {display_path(cfg.paths.output_dir)}")
    with tracking(trainer, overrides):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        best = _best_checkpoint(trainer) or _save_final_checkpoint(trainer, cfg)
        metrics = _evaluate_best(cfg, trainer, model, datamodule, best)
        record = {
            "metrics": metrics,
            "best_checkpoint": best,
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "config": config_record(cfg),
            "overrides": overrides,
            "params": count_parameters(model.backbone),  # the student's alone when distilling
            "wall_time": time.perf_counter() - start,
            "git_commit": git_commit(),
            **prerequisites,
        }
        write_run_record(trainer, cfg, record)
    return _optimized(cfg, metrics)


def _prerequisites(
    cfg: DictConfig, overrides: list[str] | None
) -> tuple[str | None, dict[str, Any]]:
    """Train (or find) the teacher and the video-level model this run starts from; returns the
    checkpoint to resume and their records (``teacher``, ``pretrained``)."""
    records = {}
    expand_teacher_presets(cfg)
    if needs_teacher_run(cfg) or cfg.pretrain.enabled:
        # Every setting of this run is checked before a run it depends on spends its epochs.
        build(cfg.model, objective=build_objective(cfg))
    if needs_teacher_run(cfg):
        records.update(train_teachers_first(cfg, train_run))
    ckpt_path = resume_path(cfg, overrides)
    if ckpt_path is None and cfg.get("pretrained") is None and cfg.pretrain.enabled:
        records["pretrained"] = train_pretrained_first(cfg, train_run)
    return ckpt_path, records


def _callbacks(cfg: DictConfig, overrides: list[str] | None, frames: FrameSelection) -> list[Any]:
    """The configured callbacks, the one that makes checkpoints describe their run (its
    model, and ``frames``: what the data module picks), and those of an exact resume."""
    return [
        *instantiate_group(cfg.get("callbacks")),
        *resume_callbacks(cfg),
        RunConfigInCheckpoint(
            model_config=OmegaConf.to_container(cfg.model, resolve=True),
            frames=frames,
            mode=cfg.data.get("mode"),
            num_classes=cfg.num_classes,
            overrides=overrides,
        ),
    ]


def _evaluate_best(
    cfg: DictConfig, trainer: pl.Trainer, model: pl.LightningModule, datamodule: Any, best: str
) -> dict[str, float]:
    """Validation metrics of the best checkpoint, and test metrics when the data has a test
    split and ``cfg.test``."""
    metrics = first_results(
        trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    )
    if cfg.get("test") and datamodule.files.get("test") is not None:
        metrics.update(
            first_results(trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False))
        )
    return metrics


def _optimized(cfg: DictConfig, metrics: Mapping[str, float]) -> float | None:
    value = metrics.get(cfg.get("optimized_metric"))
    return None if value is None or math.isnan(value) else value


def _save_final_checkpoint(trainer: pl.Trainer, cfg: DictConfig) -> str:
    """Save the trained weights when no checkpoint callback did (``fast_dev_run`` switches
    checkpointing off, so does ``callbacks=none``): the run is evaluated from this file, and a
    student or finetuning run that trained it first starts from it."""
    path = final_checkpoint(cfg.paths.output_dir)
    trainer.save_checkpoint(path)  # every rank calls it; the global zero writes
    return str(path)


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    return path or None


def first_results(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(value) for key, value in (results[0] if results else {}).items()}


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """The metrics as an aligned two-column table, sorted by name: floats with 4 decimals,
    anything else (counts) as it is."""
    width = max((len(key) for key in metrics), default=0)
    return "\n".join(
        f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}"
        for key, value in sorted(metrics.items())
    )


def write_run_record(trainer: pl.Trainer, cfg: DictConfig, record: dict[str, Any]) -> None:
    """The run's ``metrics.json`` (from the global zero rank only), also to the experiment
    trackers (:func:`vidistill.runs.trackers.log_record`), and its metrics printed."""
    if not trainer.is_global_zero:
        return
    path = write_record(cfg.paths.output_dir, record)
    log.info("metrics written to %s", path)
    log_record(trainer, path, record)
    print(format_metrics(record["metrics"]))


@functools.cache
def git_commit() -> str | None:
    """The commit of the code running, ``<sha>-dirty`` with uncommitted changes to tracked
    files, None outside a git checkout (an installed package)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha
