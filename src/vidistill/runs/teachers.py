"""The teachers of a serial distillation run: which they are (``distill.teacher``, or the list
``distill.teachers``), each a checkpoint or a preset trained first, and how a teacher run is
configured from the student's.

A teacher spec has the keys ``model`` (a preset name such as ``mod``, a preset's config, or
null: the checkpoint's architecture, else the student's), ``checkpoint`` (a trained teacher;
null: trained first), ``objective`` (how a teacher trained first is trained: a ``distill``
preset name such as ``online`` for a mixture's online distillation, its config, or null: plain
BCE), ``weight`` (its share of the averaged prediction; ``distill.teachers`` only) and
``shared_dir`` (see ``conf/distill/_teacher_student.yaml``)::

    python train.py model=nextvlad distill=serial k=10 distill.teacher.model=mod \\
        distill.teacher.objective=online
    python train.py model=nextvlad distill=serial k=10 \\
        'distill.teachers=[{model: nextvlad}, {model: netvlad}, {model: hrnn, weight: 2}]'
"""

from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from vidistill.configs import group_preset
from vidistill.data.frames import TEACHER_PREFIX, view_keys
from vidistill.layout import SHARED_TEACHERS_DIR, TEACHER_DIR, last_checkpoint
from vidistill.runs.builders import teacher_specs
from vidistill.runs.prerequisites import (
    DISTILLATION_CALLBACKS,
    TrainRun,
    shared_directory,
    train_once,
)
from vidistill.runs.resume import AUTO

log = logging.getLogger(__name__)

# Spec keys whose value may name a preset of this config group.
PRESET_GROUPS = {"model": "model", "objective": "distill"}
SPEC_KEYS = ("model", "checkpoint", "objective", "weight", "shared_dir")


def expand_teacher_presets(cfg: DictConfig) -> None:
    """Replace every preset named by a teacher spec (``model: mod``, ``objective: online``)
    with its config, in place, so the run's record and a shared teacher's identity hold what
    was trained. ValueError for an unknown spec key or preset name."""
    for index, spec in enumerate(teacher_specs(cfg.get("distill") or DictConfig({}))):
        where = f"distill.teachers[{index}]" if cfg.distill.get("teachers") else "distill.teacher"
        if not isinstance(spec, DictConfig):
            raise ValueError(f"{where} must be a mapping of {', '.join(SPEC_KEYS)}, got {spec!r}")
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; keys: {SPEC_KEYS}")
        with open_dict(spec):
            for key, group in PRESET_GROUPS.items():
                if isinstance(spec.get(key), str):
                    try:
                        spec[key] = group_preset(group, spec[key])
                    except ValueError as error:
                        raise ValueError(f"{where}.{key}: {error}") from None


def needs_teacher_run(cfg: DictConfig) -> bool:
    """Whether a serial run has a teacher without a checkpoint, to train first."""
    if cfg.distill.get("parallel", False):
        return False
    return any(spec.get("checkpoint") is None for spec in teacher_specs(cfg.distill))


def train_teachers_first(cfg: DictConfig, train_run: TrainRun) -> dict[str, Any]:
    """Train every teacher of a serial run that has no checkpoint (each with its preset and
    objective, on the teacher's frames) with ``train_run``, or reuse the finished teacher run
    found in its directory (see :func:`teacher_directory`); points each spec's ``checkpoint``
    at its best checkpoint. Returns the record entry: ``teacher`` (one teacher) or
    ``teachers`` (a list, None for a teacher given as a checkpoint)."""
    records: list[dict[str, Any] | None] = []
    for index, spec in enumerate(teacher_specs(cfg.distill)):
        if spec.get("checkpoint") is not None:
            records.append(None)
            continue
        directory, shared = teacher_directory(cfg, index)
        record = train_once(
            directory,
            functools.partial(_teacher_run_config, cfg, index),
            train_run,
            shared,
            "teacher",
        )
        with open_dict(spec):
            spec.checkpoint = record["best_checkpoint"]
        records.append(
            {
                "directory": str(directory),
                **{key: record[key] for key in ("metrics", "best_checkpoint", "epochs")},
            }
        )
    if cfg.get("ckpt_path") == "last" and not last_checkpoint(cfg.paths.output_dir).is_file():
        log.info("ckpt_path=last: the run stopped while training a teacher; the student starts")
        cfg.ckpt_path = None
    return {"teachers": records} if cfg.distill.get("teachers") else {"teacher": records[0]}


def teacher_directory(cfg: DictConfig, index: int = 0) -> tuple[Path, bool]:
    """Where a serial run's teacher ``index`` is trained, and whether other runs share it: the
    spec's ``shared_dir`` (else ``distill.teacher.shared_dir``; in a multirun, by default
    ``<sweep dir>/teachers``) holds one directory per teacher, named by its backbone and a hash
    of its run's config; a single run trains its own in ``<run>/teacher`` (``teacher<index>``
    with ``distill.teachers``)."""
    spec = teacher_specs(cfg.distill)[index]
    shared_dir = spec.get("shared_dir") or (cfg.distill.get("teacher") or {}).get("shared_dir")
    own = f"{TEACHER_DIR}{index}" if cfg.distill.get("teachers") else TEACHER_DIR
    return shared_directory(
        cfg,
        functools.partial(_teacher_run_config, cfg, index),
        shared_dir,
        own=own,
        shared=SHARED_TEACHERS_DIR,
    )


def _view_as_own_frames(data: DictConfig, student: DictConfig) -> None:
    """Make the student's teacher view (``teacher_sampler``, ``teacher_k``,
    ``teacher_<setting>``) the teacher run's own frames, without a teacher view of its own.

    Only keys the config has are set: the run's identity is a hash of its config, which must
    stay that of the teachers already trained."""
    for key in view_keys():
        view = TEACHER_PREFIX + key
        if key in data or view in data:
            data[key] = student.get(view)
        if view in data:
            data[view] = None


def _teacher_run_config(cfg: DictConfig, index: int, directory: Path) -> DictConfig:
    """The student's run config turned into teacher ``index``'s: its model, its objective
    (plain BCE unless the spec names one), all its frames, no learned frame selector, its own
    directory; resumed from its last checkpoint when the student run resumes."""
    spec = teacher_specs(cfg.distill)[index]
    teacher = copy.deepcopy(cfg)
    with open_dict(teacher):
        teacher.model = copy.deepcopy(spec.get("model") or cfg.model)
        teacher.model.pop("selector", None)
        teacher.distill = copy.deepcopy(spec.get("objective")) or {
            "_target_": "vidistill.distill.LabelLoss"
        }
        _view_as_own_frames(teacher.data, cfg.data)
        teacher.paths.output_dir = str(directory)
        for name in DISTILLATION_CALLBACKS:
            if teacher.get("callbacks") and name in teacher.callbacks:
                teacher.callbacks[name] = None
        teacher.task_name = f"{cfg.task_name}/{directory.name}"
        # The teacher of a resumed student run resumes too, if it was interrupted.
        teacher.ckpt_path = AUTO if cfg.get("ckpt_path") in ("last", AUTO) else None
    return teacher
