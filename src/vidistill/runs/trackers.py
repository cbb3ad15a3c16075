"""Experiment trackers beside the run directory: ``logger=mlflow`` and ``logger=wandb``.

Lightning's loggers send the metrics of every logging step; this module adds what makes a
tracker's run stand for a vidistill run: its name and run directory, the job's Hydra overrides
(MLflow params and an ``overrides.yaml`` artifact, W&B config) when it starts, its record when
it ends (MLflow artifacts: ``metrics.json`` and the resolved ``config.yaml``), and a W&B run
closed with it. :mod:`vidistill.analysis.mlflow_store` reads MLflow runs back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from pytorch_lightning.loggers import MLFlowLogger, WandbLogger

from vidistill.analysis.mlflow_store import (
    CONFIG_ARTIFACT,
    OVERRIDES_ARTIFACT,
    RUN_DIR_TAG,
    allow_file_store,
)

# MLflow param names may hold letters, digits and "_-. /:" only; an override key can also hold
# "@" (a package: model@distill.teacher.model). Params are for people reading the MLflow UI:
# the exact overrides travel in the overrides.yaml artifact.
_NOT_IN_PARAM_NAMES = re.compile(r"[^\w\-. /:]")
# The most params one MLflow request may carry.
MLFLOW_BATCH = 100


def run_label(run_dir: str | os.PathLike, log_dir: str | os.PathLike | None = None) -> str:
    """A run's name in a tracker: its directory relative to ``log_dir`` when below it
    (``train/multirun/2026-12-02_10-00-00/3``), else the directory itself."""
    run_dir = Path(run_dir).resolve()
    if log_dir is not None and run_dir.is_relative_to(Path(log_dir).resolve()):
        return run_dir.relative_to(Path(log_dir).resolve()).as_posix()
    return str(run_dir)


def mlflow_logger(
    experiment_name: str,
    tracking_uri: str,
    run_dir: str,
    log_dir: str | None = None,
    run_name: str | None = None,
    **kwargs: Any,
) -> MLFlowLogger:
    """Lightning's MLFlowLogger for the run in ``run_dir``: named ``run_name`` (default
    :func:`run_label`), tagged with its directory (:data:`RUN_DIR_TAG`, how the results
    table finds a run's row). A file store (``file:...``) is opted in to, which MLflow 3.x
    asks for (see :data:`vidistill.analysis.mlflow_store.FILE_STORE_OPT_IN`)."""
    allow_file_store(tracking_uri)
    tags = {**(kwargs.pop("tags", None) or {}), RUN_DIR_TAG: str(Path(run_dir).resolve())}
    return MLFlowLogger(
        experiment_name=experiment_name,
        tracking_uri=tracking_uri,
        run_name=run_name or run_label(run_dir, log_dir),
        tags=tags,
        **kwargs,
    )


def wandb_logger(
    save_dir: str, log_dir: str | None = None, name: str | None = None, **kwargs: Any
) -> WandbLogger:
    """Lightning's WandbLogger writing under ``save_dir`` (the run directory: offline runs
    land in ``<run>/wandb/offline-run-*``), named ``name`` (default :func:`run_label`)."""
    return WandbLogger(save_dir=save_dir, name=name or run_label(save_dir, log_dir), **kwargs)


@contextlib.contextmanager
def tracking(trainer: pl.Trainer, overrides: list[str] | None) -> Iterator[None]:
    """The trainer's trackers for the span of a run: each starts with the job's
    ``overrides``, and its run is closed when the run ends, failed or not.

    W&B keeps one active run per process and Lightning's WandbLogger joins the active run, so
    without closing it the next job of a sweep (or the student after its teacher) would log
    into this one. Lightning itself ends each MLflow run when a trainer stage ends."""
    if trainer.is_global_zero:
        _start(trainer.loggers, overrides or [])
    try:
        yield
    except BaseException:
        _finish_wandb(trainer.loggers, exit_code=1)
        raise
    _finish_wandb(trainer.loggers, exit_code=0)


def _start(loggers: list[Any], overrides: list[str]) -> None:
    """MLflow: the run is created now, in this process (a ``ddp_spawn`` trainer pickles its
    logger for every process it starts; without a run id each would start its own run),
    with the overrides as params and as ``overrides.yaml``. W&B: the overrides as config."""
    from vidistill.analysis.results import parse_overrides  # pandas and hydra's parser

    params = parse_overrides(overrides)
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            from mlflow.entities import Param

            client, run_id = logger.experiment, logger.run_id
            named = [Param(_NOT_IN_PARAM_NAMES.sub("_", k), v) for k, v in params.items()]
            for start in range(0, len(named), MLFLOW_BATCH):
                client.log_batch(run_id, params=named[start : start + MLFLOW_BATCH])
            client.log_text(run_id, yaml.safe_dump(overrides), OVERRIDES_ARTIFACT)
        elif isinstance(logger, WandbLogger) and params:
            logger.log_hyperparams(params)


def log_record(trainer: pl.Trainer, record_path: Path, record: Mapping[str, Any]) -> None:
    """A finished run's record to its MLflow runs (global zero only, as the record itself):
    ``metrics.json`` and the resolved config (``config.yaml``) as artifacts. (A W&B run's
    summary holds the last value of every metric, which are the record's: the best
    checkpoint's validation and test metrics are logged last.)"""
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            client, run_id = logger.experiment, logger.run_id
            client.log_artifact(run_id, str(record_path))  # named as in the run directory
            config = json.loads(json.dumps(record["config"], default=str))  # YAML-safe values
            client.log_text(run_id, yaml.safe_dump(config, sort_keys=False), CONFIG_ARTIFACT)


def _finish_wandb(loggers: list[Any], exit_code: int) -> None:
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish(exit_code=exit_code)  # a no-op when no run is active (another rank)
