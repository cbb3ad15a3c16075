"""Using a trained checkpoint: its metrics on a split (``eval.py``) and its predictions to a file
(``predict.py``)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict

from vidistill.data.frames import FrameSelection
from vidistill.inference import Predictor, predict_to_file
from vidistill.inference.predictor import frame_selection
from vidistill.inference.writers import check_output
from vidistill.layout import PREDICTIONS_FILE
from vidistill.lit.checkpoints import load_model
from vidistill.models.mixture import subtree
from vidistill.runs.builders import build_datamodule, build_trainer, config_record
from vidistill.runs.training import first_results, format_metrics, write_run_record

# What predict.py prints of its summary.
SUMMARY_SHOWN = ("videos", "skipped_records", "seconds", "videos_per_second")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Metrics of the checkpoint ``cfg.ckpt`` on ``cfg.split`` of ``cfg.data``.

    The model is rebuilt from the checkpoint; frame-selection keys left null in ``cfg.data`` are
    the checkpoint's (see :func:`vidistill.inference.predictor.frame_selection`). ``cfg.split``
    is ``val`` or ``test`` (null: test when the data has test files, else val); ``cfg.member``
    picks one member of a mixture tree to evaluate alone.
    Writes ``metrics.json`` to the run directory and returns the metrics.
    """
    model, info = load_model(cfg.ckpt)
    model.backbone = subtree(model.backbone, cfg.get("member"))
    frames = frame_selection(cfg.ckpt, info["data"]["frames"], cfg.data)
    datamodule = _datamodule_for(cfg, frames, info["data"]["num_classes"])
    split = cfg.get("split") or ("test" if datamodule.files.get("test") is not None else "val")
    if split not in ("val", "test"):
        raise ValueError(f"split={split!r}: expected val or test")
    trainer = build_trainer(cfg, [])
    run = trainer.test if split == "test" else trainer.validate
    metrics = first_results(run(model, datamodule=datamodule, verbose=False))
    write_run_record(
        trainer,
        cfg,
        {
            "metrics": metrics,
            "checkpoint": str(Path(cfg.ckpt).resolve()),
            "split": split,
            "epoch": info["epoch"],
            "global_step": info["global_step"],
            "config": config_record(cfg),
        },
    )
    return metrics


def write_predictions(cfg: DictConfig) -> Path:
    """Write the top ``cfg.top_k`` classes of the checkpoint ``cfg.ckpt`` (or of its mixture
    member ``cfg.member``) for every video of ``cfg.data.glob`` (default:
    ``cfg.data.predict_files``), streaming (see :mod:`vidistill.inference`); returns the
    output's path.

    The output is ``cfg.output`` (default ``predictions.csv`` in the run directory; a
    ``.parquet`` name writes Parquet), with ``<output>.summary.json`` beside it; an existing
    output is an error unless ``cfg.overwrite``. Frames are picked as the checkpoint's model
    was trained to wherever ``cfg.data`` leaves a frame-selection setting null.
    """
    output = Path(cfg.get("output") or Path(cfg.paths.output_dir) / PREDICTIONS_FILE)
    check_output(output, cfg.overwrite)  # before anything is loaded
    with open_dict(cfg):
        files = cfg.data.pop("glob", None)
    predictor = Predictor(
        cfg.ckpt,
        member=cfg.get("member"),
        device=cfg.get("device", "auto"),
        frames=cfg.data,
    )
    datamodule = _datamodule_for(cfg, predictor.frames, predictor.num_classes)
    files = files or datamodule.files.get("predict")
    if files is None:
        raise ValueError("no files to predict: pass data.glob=... (or data.predict_files)")
    data = datamodule.hparams
    summary = predict_to_file(
        predictor,
        datamodule.resolve(files),
        output,
        top_k=cfg.top_k,
        batch_size=data.eval_batch_size or data.batch_size,
        num_workers=data.num_workers,
        on_corrupt=data.on_corrupt,
        overwrite=cfg.overwrite,
        dequantize_range=tuple(data.dequantize_range),
        compression=data.compression,
    )
    print(format_metrics({key: summary[key] for key in SUMMARY_SHOWN}))
    return output


def _datamodule_for(
    cfg: DictConfig, frames: FrameSelection, num_classes: int
) -> pl.LightningDataModule:
    """The data of ``cfg.data`` read with ``frames`` (the checkpoint's selection with the
    config's overrides, see :func:`frame_selection`), written into ``cfg.data`` so that the
    run's record shows them; checked against the model's ``num_classes``."""
    with open_dict(cfg):
        cfg.data.update(frames.to_dict())
    datamodule = build_datamodule(cfg)
    if cfg.num_classes != num_classes:
        raise ValueError(
            f"{cfg.ckpt}: the model predicts {num_classes} classes but the data's "
            f"vocabulary has {cfg.num_classes}"
        )
    return datamodule
