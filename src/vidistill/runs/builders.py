"""Building a run's objects from its config: data, model and objective, trainer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from vidistill.data.frames import teacher_view
from vidistill.lit.checkpoints import load_backbone, load_backbone_weights

log = logging.getLogger(__name__)


def build(config: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, but a mistake the constructor reports (ValueError, TypeError,
    KeyError, FileNotFoundError) surfaces as itself: its message names the problem, and Hydra's
    wrapper would bury it under the call's description."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while isinstance(cause, InstantiationException):  # nested targets wrap once per level
            cause = cause.__cause__
        if isinstance(cause, ValueError | TypeError | KeyError | FileNotFoundError):
            raise cause from None
        raise


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """Instantiate the data and settle ``cfg.num_classes`` against its vocabulary."""
    datamodule = build(cfg.data, _convert_="all")
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
    return [build(entry) for entry in group.values() if entry and "_target_" in entry]


def build_objective(cfg: DictConfig) -> Any:
    """The training objective of ``cfg.distill``. A teacher-student objective gets its teacher
    backbones (``distill.teacher``, or each of ``distill.teachers`` with its ``weight``; see
    :mod:`vidistill.runs.teachers`), each from its ``checkpoint`` (whose weights must fit its
    ``model`` when that is set), else built from its ``model`` or, when null, the student's
    own ``model`` config."""
    if "teacher" not in cfg.distill and "teachers" not in cfg.distill:
        return build(cfg.distill)
    config = OmegaConf.to_container(cfg.distill, resolve=True)
    # The specs become backbones, passed in their place.
    several = bool(config.pop("teachers", None))
    config.pop("teacher", None)
    specs = teacher_specs(cfg.distill)
    if not specs:
        return build(config, teacher=None)  # the objective says what is missing
    backbones = [_teacher_backbone(cfg, spec) for spec in specs]
    if not several:
        return build(config, teacher=backbones[0])
    # A weight left out is 1; a weight of 0 stays 0 (that teacher is then not followed).
    weights = [1.0 if spec.get("weight") is None else spec.weight for spec in specs]
    return build(config, teacher=backbones, teacher_weights=weights)


def teacher_specs(distill: DictConfig) -> list[DictConfig]:
    """The teachers of a distillation config: ``distill.teachers`` when given (a non-empty
    list), else ``[distill.teacher]``; [] for an objective without teachers."""
    teachers = distill.get("teachers")
    if teachers:
        if not isinstance(teachers, ListConfig):
            raise ValueError(f"distill.teachers must be a list of teacher specs, got {teachers!r}")
        return list(teachers)
    spec = distill.get("teacher")
    return [] if spec is None else [spec]


def _teacher_backbone(cfg: DictConfig, spec: DictConfig) -> Any:
    model = spec.get("model")
    if spec.get("checkpoint") is None:
        return build((model or cfg.model).backbone)
    try:
        teacher, trained = load_backbone(
            spec.checkpoint, model.backbone if model is not None else None
        )
    except ValueError as error:
        raise ValueError(f"distill.teacher.checkpoint: {error}") from None
    _warn_on_teacher_frames(spec.checkpoint, trained["data"]["frames"].get("sampler"), cfg)
    return teacher


def start_from_pretrained(model: pl.LightningModule, path: str) -> None:
    """Start the model's backbone from the weights of another run's checkpoint (segment
    finetuning starts from a video-level model); the output biases are then not reset to the
    class priors."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"pretrained={path}: no such checkpoint file")
    try:
        load_backbone_weights(model.backbone, path)
    except ValueError as error:
        raise ValueError(f"pretrained: {error}") from None
    model.hparams.init_output_bias = False
    log.info("backbone weights from %s", path)


def build_trainer(cfg: DictConfig, callbacks: list[Any]) -> pl.Trainer:
    """The trainer of ``cfg.trainer`` with ``callbacks`` and the configured loggers."""
    loggers = instantiate_group(cfg.get("logger"))
    overrides = {}
    accelerator = cfg.trainer.get("accelerator", "auto")
    on_cuda = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()
    )
    if cfg.trainer.get("sync_batchnorm") and not on_cuda:
        # torch's SyncBatchNorm runs on CUDA only; DDP on CPU (gloo) keeps per-process statistics.
        log.warning("sync_batchnorm is CUDA-only: off for this %s run", accelerator)
        overrides["sync_batchnorm"] = False
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)
    if _relaunches_the_command(trainer) and in_multirun():
        # Plain DDP starts its other processes by running the command line again, which in a
        # multirun is the whole sweep: every job would start the sweep anew. Spawned processes
        # run this job's function instead.
        log.info(
            "strategy=ddp inside a Hydra multirun: the job's processes are spawned (ddp_spawn)"
        )
        trainer = build(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            **{**overrides, "strategy": "ddp_spawn"},
        )
    return trainer


def describe_device(trainer: pl.Trainer) -> str:
    """Where the trainer computes, as the line printed before training says it: the device
    type (and the GPU's name), the number of devices, the precision; and a GPU a CPU run
    leaves idle (the default trainer is ``trainer=cpu``)."""
    device = trainer.strategy.root_device
    name = device.type
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    count = trainer.num_devices * trainer.num_nodes
    text = f"{name} ({count} device{'s' if count > 1 else ''}, precision {trainer.precision})"
    if device.type == "cpu" and torch.cuda.is_available():
        text += " [a CUDA GPU is available: trainer=gpu trains on it]"
    return text


def display_path(path: str | Path) -> str:
    """``path`` relative to the working directory when below it (``logs/train/runs/...``, as
    a user typed it), else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _relaunches_the_command(trainer: pl.Trainer) -> bool:
    """Whether the trainer's strategy starts its processes by running the script again (plain
    DDP on one machine, not when SLURM or torchrun started them)."""
    return isinstance(getattr(trainer.strategy, "launcher", None), _SubprocessScriptLauncher)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def config_record(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config without Hydra's own node, as plain containers for a record."""
    return OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True
    )


def _warn_on_teacher_frames(checkpoint: str, trained_sampler: str | None, cfg: DictConfig) -> None:
    view = teacher_view(cfg.data)
    wanted = view.sampler if view is not None else None
    if trained_sampler != wanted:
        log.warning(
            "the teacher %s was trained on sampler=%s frames but sees data.teacher_sampler=%s "
            "frames here",
            checkpoint,
            trained_sampler,
            wanted,
        )
