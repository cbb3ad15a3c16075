"""What ``train.py`` runs: build everything from the config, fit, evaluate, record metrics."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from vidistill.data.synthetic import SyntheticConfig

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"

# The synthetic generator's knobs as a typed config node, so `data.generator.num_trian=...` is
# rejected by name instead of silently ignored.
ConfigStore.instance().store(group="data/generator", name="synthetic", node=SyntheticConfig)


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """Instantiate the data and settle ``cfg.num_classes`` against its vocabulary."""
    datamodule = instantiate(cfg.data, _convert_="all")
    num_classes = datamodule.num_classes
    if cfg.get("num_classes") is None:
        with open_dict(cfg):
            cfg.num_classes = num_classes
    elif cfg.num_classes != num_classes:
        raise ValueError(
            f"num_classes={cfg.num_classes} but the data's vocabulary has {num_classes} classes"
        )
    return datamodule


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Objects of a config group whose entries each have a ``_target_`` (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def train(cfg: DictConfig) -> float | None:
    """Fit the configured model, evaluate its best checkpoint, write ``metrics.json``.

    Returns the value of ``cfg.optimized_metric`` for sweepers (None if it was not logged).
    """
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = instantiate(cfg.model)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = _best_checkpoint(trainer)
    metrics: dict[str, float] = {}
    metrics.update(
        _first(trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False))
    )
    if cfg.get("test") and datamodule.files.get("test") is not None:
        metrics.update(
            _first(trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False))
        )

    output_dir = Path(cfg.paths.output_dir)
    record = {
        "metrics": metrics,
        "best_checkpoint": best,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "config": OmegaConf.to_container(
            OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True
        ),
    }
    if trainer.is_global_zero:
        (output_dir / METRICS_FILE).write_text(json.dumps(record, indent=2, default=str))
        log.info("metrics written to %s", output_dir / METRICS_FILE)
        print(format_metrics(metrics))
    value = metrics.get(cfg.get("optimized_metric"))
    return None if value is None or math.isnan(value) else value


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    return path or None


def _first(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(value) for key, value in (results[0] if results else {}).items()}


def format_metrics(metrics: dict[str, float]) -> str:
    """The metrics as an aligned two-column table."""
    width = max((len(key) for key in metrics), default=0)
    return "\n".join(f"{key:<{width}}  {value:.4f}" for key, value in sorted(metrics.items()))
