"""The MOD paper's localization ablation on one command:
``python localize.py experiment=localization_ablation``.

Stages, each in a directory of the run (a stage whose ``metrics.json`` is there already is reused,
so an interrupted ablation picks up where it stopped):

1. ``video``: a video-level model (``ablation.model``) trained on the frame-level training split.
2. ``segment_finetuned``: segment finetuning from it (``experiment=segment_finetune``), trained
   on one rated split and selecting its checkpoint on another (``data=synthetic_segments``:
   segment/validate and segment/tune).
3. ``segment_scratch``: the same segment training from a random start.
4. ``localize/<variant>``: the 3-phase pipeline on the rated files (``files``: segment/test, a
   third rated split; the run stops before training the segment models if ``files`` shares a
   file with their training or selection files), scored with
   MAP@K, for the video scores alone (every segment inherits its video's score), each segment
   model alone, and each combined with the video scores (``video_exponent``,
   ``segment_exponent``).

The table goes to ``ablation.json`` in the run directory and is printed.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra import compose
from omegaconf import DictConfig, open_dict

from vidistill.atomic import atomic_write
from vidistill.data.sharding import expand_files
from vidistill.data.shards import is_url
from vidistill.layout import METRICS_FILE
from vidistill.localization import pipeline
from vidistill.runs import build, train_run
from vidistill.runs.prerequisites import train_once

log = logging.getLogger(__name__)

ABLATION_FILE = "ablation.json"


def run(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Train what the ablation needs, localize every variant, return ``{variant: metrics}``.

    Runs inside a Hydra app (``localize.py``): the training stages are composed from the same
    config directory's ``config.yaml``.
    """
    out = Path(cfg.paths.output_dir)
    settings = cfg.ablation
    video = _trained(cfg, out / "video", ["test=false"])
    finetune = ["experiment=segment_finetune", f"trainer.max_epochs={settings.segment_epochs}"]
    check_held_out(cfg, _stage_config(cfg, out / "segment_finetuned", finetune))
    segment = {
        # A path is set as a value, not an override: a sweep's directories (seed=0/...) put "="
        # in it, which the override grammar would not parse.
        "finetuned": _trained(cfg, out / "segment_finetuned", finetune, pretrained=video),
        "scratch": _trained(cfg, out / "segment_scratch", [*finetune, "pretrain.enabled=false"]),
    }
    a, b = cfg.video_exponent, cfg.segment_exponent
    variants = {"video_only": (video, None, 1.0, 0.0)}
    for name, checkpoint in segment.items():
        variants[f"segment_only_{name}"] = (video, checkpoint, 0.0, 1.0)
        variants[f"combined_{name}"] = (video, checkpoint, a, b)
    table = {
        name: _localized(cfg, out / "localize" / name, *variant)
        for name, variant in variants.items()
    }
    atomic_write(out / ABLATION_FILE, json.dumps(table, indent=2))
    print(format_table(table))
    return table


def format_table(table: dict[str, dict[str, Any]]) -> str:
    width = max(len(name) for name in table)
    lines = [f"{'variant':<{width}}  MAP@K   candidate recall"]
    for name, metrics in table.items():
        lines.append(
            f"{name:<{width}}  {metrics['map_at_k']:.4f}  {metrics['candidate_recall']:.4f}"
        )
    return "\n".join(lines)


def _trained(cfg: DictConfig, directory: Path, overrides: list[str], **values: Any) -> str:
    """Train one stage with the training config (``ablation.model`` and
    ``ablation.train_overrides``, the same data as the localization, then ``values`` set on
    the composed config) unless it is done, as the runs a training run depends on are
    (:func:`vidistill.runs.prerequisites.train_once`); returns its best checkpoint."""

    def stage(path: Path) -> DictConfig:
        path.mkdir(parents=True, exist_ok=True)
        return _stage_config(cfg, path, overrides, **values)

    record = train_once(directory, stage, train_run, what=f"ablation stage {directory.name}")
    return record["best_checkpoint"]


def _stage_config(
    cfg: DictConfig, directory: Path, overrides: list[str], **values: Any
) -> DictConfig:
    """The training config of one stage, on the same (synthetic) data as the localization;
    ``values`` are top-level keys set after composing (paths, which need no quoting there)."""
    settings = cfg.ablation
    stage = compose(
        config_name="config",
        overrides=[
            f"model={settings.model}",
            f"seed={cfg.seed}",
            f"trainer.max_epochs={settings.video_epochs}",
            *settings.train_overrides,
            *overrides,
        ],
    )
    with open_dict(stage):
        stage.paths = copy.deepcopy(cfg.paths)
        stage.paths.output_dir = str(directory)
        stage.data.generator = copy.deepcopy(cfg.data.generator)
        for key, value in values.items():
            stage[key] = value
    return stage


def check_held_out(cfg: DictConfig, segment_stage: DictConfig) -> None:
    """Refuse to report MAP@K on rated files the segment models train on or select their
    checkpoint with: a score on the selection split is biased upwards by the selection itself."""
    reported = _matched(cfg.data, cfg.files)
    for role in ("train_files", "val_files"):
        shared = reported & _matched(segment_stage.data, segment_stage.data.get(role))
        if shared:
            raise ValueError(
                f"files={cfg.files} shares {len(shared)} file(s) with the segment models' "
                f"data.{role}={segment_stage.data.get(role)} (e.g. {sorted(shared)[0]}): the "
                "ablation must report on rated files held out from training and selection"
            )
    if not reported:
        raise ValueError(f"files={cfg.files} matches no file")
    log.info(
        "ablation: segment models train on %s, select on %s; MAP@K on %s",
        segment_stage.data.get("train_files"),
        segment_stage.data.get("val_files"),
        cfg.files,
    )


def _matched(data: DictConfig, patterns: Any) -> set[str]:
    """The real paths (or URLs) of the files that ``patterns`` (globs, relative to the synthetic set's
    directory when the data is synthetic) name under the data config ``data``."""
    if not patterns:
        return set()
    resolved = build(data, _convert_="all").resolve(patterns)
    resolved = [resolved] if isinstance(resolved, str) else list(resolved)
    matched = set()
    for pattern in resolved:
        try:
            files = expand_files(pattern)
        except FileNotFoundError:
            continue
        matched.update(path if is_url(path) else os.path.realpath(path) for path in files)
    return matched


def _localized(
    cfg: DictConfig,
    directory: Path,
    video: str,
    segment: str | None,
    video_exponent: float,
    segment_exponent: float,
) -> dict[str, Any]:
    record = directory / METRICS_FILE
    if not record.is_file():
        variant = copy.deepcopy(cfg)
        with open_dict(variant):
            variant.video_ckpt, variant.segment_ckpt = video, segment
            variant.video_exponent, variant.segment_exponent = video_exponent, segment_exponent
            variant.paths.output_dir = str(directory)
            variant.output = None
            variant.ablation = None
        directory.mkdir(parents=True, exist_ok=True)
        pipeline.run(variant)
    return json.loads(record.read_text())["metrics"]
