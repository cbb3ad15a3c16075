"""What the entry points run: build everything from the config, then fit and evaluate
(``train.py``), evaluate a checkpoint (``eval.py``) or write its predictions (``predict.py``)."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra import compose
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from vidistill.checkpoints import (
    FRAME_SELECTION_KEYS,
    RunConfigInCheckpoint,
    check_resume_compatible,
    load_backbone,
    load_backbone_weights,
    load_model,
    stored_overrides,
)
from vidistill.data.synthetic import SyntheticConfig
from vidistill.inference import Predictor, predict_to_file
from vidistill.models.base import count_parameters
from vidistill.models.mixture import subtree
from vidistill.predict import check_output

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
# ckpt_path value: resume the run directory's last checkpoint if it has one.
AUTO = "auto"
# What Lightning names the checkpoint it saves in the trainer's root directory (the run
# directory) before SLURM requeues a job.
HPC_CHECKPOINT_PREFIX = "hpc_ckpt_"
TEACHER_DIR = "teacher"
# In a multirun, the teachers that serial jobs train, shared between jobs: <sweep dir>/teachers.
SHARED_TEACHERS_DIR = "teachers"
# The video-level model a run with `pretrain` trains first: <run>/pretrained, or in a multirun
# shared between jobs in <sweep dir>/pretrained.
PRETRAINED_DIR = "pretrained"
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
# Callbacks (by their key under `callbacks`) that act on a distillation objective, so are left
# out of the run that trains the teacher first.
DISTILLATION_CALLBACKS = ("loss_schedule",)
PREDICTIONS_FILE = "predictions.csv"
# A run whose trainer kept no checkpoint saves its final weights under this name.
FINAL_CHECKPOINT = "final.ckpt"
# Trainer settings of a debugging run (conf/debug/) that the runs it trains first (teacher,
# video-level pretraining) inherit, so that a smoke test of a student stays a smoke test.
DEBUG_TRAINER_KEYS = (
    "fast_dev_run",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "overfit_batches",
    "detect_anomaly",
    "profiler",
)
# What predict.py prints of its summary.
SUMMARY_SHOWN = ("videos", "skipped_records", "seconds", "videos_per_second")

# The synthetic generator's knobs as a typed config node, so `data.generator.num_trian=...` is
# rejected by name instead of silently ignored.
ConfigStore.instance().store(group="data/generator", name="synthetic", node=SyntheticConfig)


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


def train(cfg: DictConfig) -> float | None:
    """Fit the configured model, evaluate its best checkpoint, write ``metrics.json``.

    Serial distillation without a teacher checkpoint first trains the teacher the same way (in
    ``<output_dir>/teacher``, or in a multirun a directory its jobs share, see
    :func:`teacher_directory`; skipped when that holds a finished teacher run). With
    ``cfg.skip_finished``, a run directory that already holds the ``metrics.json`` of the same
    job is not trained again (unless ``ckpt_path`` names a checkpoint to resume); with
    ``ckpt_path=auto`` an interrupted one resumes from its last checkpoint.
    Returns the value of ``cfg.optimized_metric`` for sweepers (None if it was not logged).
    """
    return _train(cfg, job_overrides())


def _train(cfg: DictConfig, overrides: list[str] | None) -> float | None:
    """:func:`train`, the run identified by ``overrides`` (None: any) for skipping and
    resuming."""
    finished = _finished_record(cfg, overrides)
    if finished is not None:
        # A sweep run again into its directory fills in only the jobs that did not finish.
        value = finished["metrics"].get(cfg.get("optimized_metric"))
        return None if value is None or math.isnan(value) else value
    # Started before the teacher's (or pretraining) run, which happens inside this call, so the
    # wall_time covers training it too (not when it reuses a finished one).
    start = time.perf_counter()
    datamodule = build_datamodule(cfg)
    teacher_record = pretrained_record = None
    if _needs_teacher_run(cfg) or cfg.pretrain.enabled:
        # Every setting of this run is checked before a run it depends on spends its epochs.
        build(cfg.model, objective=build_objective(cfg))
    if _needs_teacher_run(cfg):
        teacher_record = train_teacher_first(cfg)
    ckpt_path = resume_path(cfg, overrides)
    if ckpt_path is None and cfg.get("pretrained") is None and cfg.pretrain.enabled:
        pretrained_record = train_pretrained_first(cfg)
    # Seeded after the runs above, so this run's randomness is the same whether it trained
    # them or found them trained.
    pl.seed_everything(cfg.seed, workers=True)
    model = build(cfg.model, objective=build_objective(cfg))
    if ckpt_path is not None:
        check_resume_compatible(model, ckpt_path)
    elif cfg.get("pretrained"):
        start_from_pretrained(model, cfg.pretrained)
    callbacks = instantiate_group(cfg.get("callbacks"))
    callbacks.append(
        RunConfigInCheckpoint(
            model_config=OmegaConf.to_container(cfg.model, resolve=True),
            data_config={
                **{key: cfg.data.get(key) for key in (*FRAME_SELECTION_KEYS, "mode")},
                "num_classes": cfg.num_classes,
            },
            overrides=overrides,
        )
    )
    trainer = _trainer(cfg, callbacks)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    best = _best_checkpoint(trainer) or _save_final_checkpoint(trainer, cfg)
    metrics: dict[str, float] = {}
    metrics.update(
        _first(trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False))
    )
    if cfg.get("test") and datamodule.files.get("test") is not None:
        metrics.update(
            _first(trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False))
        )

    _write_metrics(
        trainer,
        cfg,
        {
            "metrics": metrics,
            "best_checkpoint": best,
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "config": config_record(cfg),
            "overrides": overrides,
            "params": count_parameters(model.backbone),  # the student's alone when distilling
            "wall_time": time.perf_counter() - start,
            "git_commit": git_commit(),
            **({"teacher": teacher_record} if teacher_record else {}),
            **({"pretrained": pretrained_record} if pretrained_record else {}),
        },
    )
    value = metrics.get(cfg.get("optimized_metric"))
    return None if value is None or math.isnan(value) else value


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


def job_overrides() -> list[str] | None:
    """The running Hydra job's command-line overrides (None when Hydra is not running)."""
    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def _finished_record(cfg: DictConfig, overrides: list[str] | None) -> dict[str, Any] | None:
    """The ``metrics.json`` record of this run directory when ``cfg.skip_finished`` says the
    run is not trained again: it exists, no explicit checkpoint asks to resume, and it was
    written by a job with the same overrides (an Optuna study re-run into an old directory
    samples other parameters for the same job number)."""
    path = Path(cfg.paths.output_dir) / METRICS_FILE
    if (
        not cfg.get("skip_finished")
        or cfg.get("ckpt_path") not in (None, AUTO)
        or not path.is_file()
    ):
        return None
    record = json.loads(path.read_text())
    if _same_job(record.get("overrides"), overrides):
        log.info("skip_finished: %s exists, the run is not trained again", path)
        return record
    log.warning(
        "%s holds a run of other overrides (%s); training this job (%s) in its place",
        path,
        " ".join(record.get("overrides") or []),
        " ".join(overrides or []),
    )
    return None


def _same_job(stored: list[str] | None, current: list[str] | None) -> bool:
    """Whether a record written with ``stored`` overrides belongs to the ``current`` job;
    records from outside Hydra (None) are taken as the same job."""
    return stored is None or current is None or sorted(stored) == sorted(current)


def build_objective(cfg: DictConfig) -> Any:
    """The training objective of ``cfg.distill``. A teacher-student objective gets its teacher
    backbone: from ``distill.teacher.checkpoint`` (whose weights must fit
    ``distill.teacher.model`` when that is set), else built from ``distill.teacher.model`` or,
    when null, the student's own ``model`` config."""
    if "teacher" not in cfg.distill:
        return build(cfg.distill)
    spec = cfg.distill.teacher
    if spec is None:
        return build(cfg.distill, teacher=None)  # the objective says what is missing
    model = spec.get("model")
    if spec.get("checkpoint") is None:
        return build(cfg.distill, teacher=build((model or cfg.model).backbone))
    try:
        teacher, trained = load_backbone(
            spec.checkpoint, model.backbone if model is not None else None
        )
    except ValueError as error:
        raise ValueError(f"distill.teacher.checkpoint: {error}") from None
    _warn_on_teacher_frames(spec.checkpoint, trained["data"].get("sampler"), cfg)
    return build(cfg.distill, teacher=teacher)


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


def train_teacher_first(cfg: DictConfig) -> dict[str, Any]:
    """Train the teacher of a serial distillation run (plain BCE on the teacher's frames), or
    reuse the finished teacher run found in its directory (see :func:`teacher_directory`);
    points ``cfg.distill.teacher.checkpoint`` at its best checkpoint and returns its record."""
    directory, record = _train_once(
        cfg, "teacher", functools.partial(_teacher_run_config, cfg), *teacher_directory(cfg)
    )
    with open_dict(cfg):
        cfg.distill.teacher.checkpoint = record["best_checkpoint"]
    if cfg.get("ckpt_path") == "last" and not _last_checkpoint(cfg).is_file():
        log.info("ckpt_path=last: the run stopped while training the teacher; the student starts")
        cfg.ckpt_path = None
    return {
        "directory": str(directory),
        **{key: record[key] for key in ("metrics", "best_checkpoint", "epochs")},
    }


def teacher_directory(cfg: DictConfig) -> tuple[Path, bool]:
    """Where a serial run's teacher is trained, and whether other runs share it:
    ``distill.teacher.shared_dir`` (in a multirun, by default ``<sweep dir>/teachers``) holds
    one directory per teacher (see :func:`_shared_directory`); a single run trains its own in
    ``<run>/teacher``."""
    return _shared_directory(
        cfg,
        functools.partial(_teacher_run_config, cfg),
        cfg.distill.teacher.get("shared_dir"),
        own=TEACHER_DIR,
        shared=SHARED_TEACHERS_DIR,
    )


def train_pretrained_first(cfg: DictConfig) -> dict[str, Any]:
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
    directory, record = _train_once(
        cfg,
        "video-level model",
        run_config,
        *_shared_directory(
            cfg,
            run_config,
            cfg.pretrain.get("shared_dir"),
            own=PRETRAINED_DIR,
            shared=PRETRAINED_DIR,
        ),
    )
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


def _train_once(
    cfg: DictConfig,
    what: str,
    run_config: Callable[[Path], DictConfig],
    directory: Path,
    shared: bool,
) -> tuple[Path, dict[str, Any]]:
    """Train the run ``run_config(directory)`` configures unless ``directory`` holds it
    finished; returns the directory and the run's record.

    A shared directory is locked while its run trains: jobs of a sweep that need the same run
    wait for the one training it, and a job that dies releases the lock (the next one resumes
    the run from its last checkpoint)."""
    record_path = directory / METRICS_FILE
    with _exclusive(directory) if shared else contextlib.nullcontext():
        if not _usable_record(record_path):
            log.info("%s: training the %s first, in %s", cfg.task_name, what, directory)
            # Such a run's identity is its directory, not the job that happens to train it.
            stage = run_config(directory)
            with open_dict(stage):
                stage.skip_finished = False  # a record without its checkpoint is retrained
            _train(stage, overrides=None)
        else:
            log.info("%s: reusing the %s trained in %s", cfg.task_name, what, directory)
    record = json.loads(record_path.read_text())
    if not record.get("best_checkpoint"):
        raise RuntimeError(f"{record_path}: the {what} run saved no checkpoint to start from")
    return directory, record


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


def _shared_directory(
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
    if shared_dir is None and _in_multirun():
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
    identity["data"].pop("num_workers", None)
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


def _needs_teacher_run(cfg: DictConfig) -> bool:
    spec = cfg.distill.get("teacher")
    return (
        spec is not None
        and not cfg.distill.get("parallel", False)
        and spec.get("checkpoint") is None
    )


def _teacher_run_config(cfg: DictConfig, directory: Path) -> DictConfig:
    """The student's run config turned into the teacher's: its model, all its frames, plain
    BCE, its own directory; resumed from its last checkpoint when the student run resumes."""
    teacher = copy.deepcopy(cfg)
    with open_dict(teacher):
        teacher.model = cfg.distill.teacher.model or cfg.model
        teacher.distill = {"_target_": "vidistill.distill.LabelLoss"}
        teacher.data.sampler = cfg.data.teacher_sampler
        teacher.data.k = cfg.data.get("teacher_k")
        teacher.data.teacher_sampler = None
        teacher.data.teacher_k = None
        teacher.paths.output_dir = str(directory)
        for name in DISTILLATION_CALLBACKS:
            if teacher.get("callbacks") and name in teacher.callbacks:
                teacher.callbacks[name] = None
        teacher.task_name = f"{cfg.task_name}/{TEACHER_DIR}"
        # The teacher of a resumed student run resumes too, if it was interrupted.
        teacher.ckpt_path = AUTO if cfg.get("ckpt_path") in ("last", AUTO) else None
    return teacher


def _warn_on_teacher_frames(checkpoint: str, trained_sampler: str | None, cfg: DictConfig) -> None:
    wanted = cfg.data.get("teacher_sampler")
    if trained_sampler != wanted:
        log.warning(
            "the teacher %s was trained on sampler=%s frames but sees data.teacher_sampler=%s "
            "frames here",
            checkpoint,
            trained_sampler,
            wanted,
        )


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Metrics of the checkpoint ``cfg.ckpt`` on ``cfg.split`` of ``cfg.data``.

    The model is rebuilt from the checkpoint; frame-selection settings left null in ``cfg.data``
    are the checkpoint's. ``cfg.split`` is ``val`` or ``test`` (null: test when the data has
    test files, else val); ``cfg.member`` picks one member of a mixture tree to evaluate alone.
    Writes ``metrics.json`` to the run directory and returns the metrics.
    """
    model, info = load_model(cfg.ckpt)
    model.backbone = subtree(model.backbone, cfg.get("member"))
    datamodule = _datamodule_for(cfg, info)
    split = cfg.get("split") or ("test" if datamodule.files.get("test") is not None else "val")
    if split not in ("val", "test"):
        raise ValueError(f"split={split!r}: expected val or test")
    trainer = _trainer(cfg, [])
    run = trainer.test if split == "test" else trainer.validate
    metrics = _first(run(model, datamodule=datamodule, verbose=False))
    _write_metrics(
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


def predict(cfg: DictConfig) -> Path:
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
        frames={key: cfg.data.get(key) for key in FRAME_SELECTION_KEYS},
    )
    datamodule = _datamodule_for(
        cfg, {"data": {**predictor.frames, "num_classes": predictor.num_classes}}
    )
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
    )
    print(format_metrics({key: summary[key] for key in SUMMARY_SHOWN}))
    return output


def resume_path(cfg: DictConfig, overrides: list[str] | None = None) -> str | None:
    """``cfg.ckpt_path`` as a checked path: ``last`` is this run directory's
    ``checkpoints/last.ckpt``, which must exist; ``auto`` is the newer of that file and the
    checkpoint Lightning saves when SLURM is about to stop a job (``hpc_ckpt_<n>.ckpt`` in the
    run directory), if there is one written by a job with the same ``overrides`` (a sweep
    re-run into its directory, a requeued cluster job), else None (train from scratch)."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return None
    if ckpt_path == AUTO:
        path = _newest_checkpoint(cfg)
        if path is None:
            return None
        if not _same_job(stored_overrides(path), overrides):
            log.warning("%s was written by a job of other overrides: not resumed", path)
            return None
        log.info("ckpt_path=auto: resuming %s", path)
        return str(path)
    if ckpt_path == "last":
        path = _last_checkpoint(cfg)
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last but there is no {path} (last is the run directory's "
                "checkpoints/last.ckpt; point hydra.run.dir at the run to resume)"
            )
        return str(path)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return str(ckpt_path)


def _last_checkpoint(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def _newest_checkpoint(cfg: DictConfig) -> Path | None:
    candidates = [
        _last_checkpoint(cfg),
        *Path(cfg.paths.output_dir).glob(f"{HPC_CHECKPOINT_PREFIX}*.ckpt"),
    ]
    existing = [path for path in candidates if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime_ns) if existing else None


def _datamodule_for(cfg: DictConfig, info: dict[str, Any]) -> pl.LightningDataModule:
    """The data of ``cfg.data``, picking frames as the checkpoint's model was trained to
    wherever the config leaves a frame-selection setting null."""
    stored = info["data"]
    for key in FRAME_SELECTION_KEYS:
        if cfg.data.get(key) is None:
            cfg.data[key] = stored.get(key)
    datamodule = build_datamodule(cfg)
    if cfg.num_classes != stored["num_classes"]:
        raise ValueError(
            f"{cfg.ckpt}: the model predicts {stored['num_classes']} classes but the data's "
            f"vocabulary has {cfg.num_classes}"
        )
    return datamodule


def _trainer(cfg: DictConfig, callbacks: list[Any]) -> pl.Trainer:
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
    if _relaunches_the_command(trainer) and _in_multirun():
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


def _relaunches_the_command(trainer: pl.Trainer) -> bool:
    """Whether the trainer's strategy starts its processes by running the script again (plain
    DDP on one machine, not when SLURM or torchrun started them)."""
    return isinstance(getattr(trainer.strategy, "launcher", None), _SubprocessScriptLauncher)


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def config_record(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config without Hydra's own node, as plain containers for a record."""
    return OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True
    )


def _write_metrics(trainer: pl.Trainer, cfg: DictConfig, record: dict[str, Any]) -> None:
    if not trainer.is_global_zero:
        return
    path = Path(cfg.paths.output_dir) / METRICS_FILE
    path.write_text(json.dumps(record, indent=2, default=str))
    log.info("metrics written to %s", path)
    print(format_metrics(record["metrics"]))


def _save_final_checkpoint(trainer: pl.Trainer, cfg: DictConfig) -> str:
    """Save the trained weights when no checkpoint callback did (``fast_dev_run`` switches
    checkpointing off, so does ``callbacks=none``): the run is evaluated from this file, and a
    student or finetuning run that trained it first starts from it."""
    path = Path(cfg.paths.output_dir) / "checkpoints" / FINAL_CHECKPOINT
    trainer.save_checkpoint(path)  # every rank calls it; the global zero writes
    return str(path)


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    return path or None


def _first(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(value) for key, value in (results[0] if results else {}).items()}


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """The metrics as an aligned two-column table, sorted by name: floats with 4 decimals,
    anything else (counts) as it is."""
    width = max((len(key) for key in metrics), default=0)
    return "\n".join(
        f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}"
        for key, value in sorted(metrics.items())
    )
