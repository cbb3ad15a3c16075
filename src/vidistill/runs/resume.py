"""Resuming and skipping: which checkpoint a run resumes from, whether a finished run's record
belongs to the job asking (a sweep re-run into its directory, a requeued job), and the callbacks
that make a run stopped mid-epoch resume exactly.

A run stopped by SIGTERM or SIGUSR1 (as a cluster stops or warns a job) saves
``checkpoints/last.ckpt`` at the next training-batch boundary and exits with status 128 + the
signal's number. The same command run again (``ckpt_path=auto``, the default) resumes from it:
the optimizer, schedules and loop counters from Lightning's checkpoint, the streaming loader at
the next batch it had not delivered to training, and the global random states. With
``trainer.deterministic=true`` on the CPU the run ends with the weights of a run never stopped,
bit for bit; a run that trains its teacher or video-level model first resumes whichever stage
it was stopped in."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vidistill.layout import (
    HPC_CHECKPOINT_PREFIX,
    METRICS_FILE,
    last_checkpoint,
)
from vidistill.lit.checkpoints import stored_overrides
from vidistill.lit.preemption import RandomStateInCheckpoint, StopOnPreemption

log = logging.getLogger(__name__)

# ckpt_path value: resume the run directory's last checkpoint if it has one.
AUTO = "auto"


def resume_callbacks(cfg: DictConfig) -> list[Any]:
    """The callbacks every training run has for an exact mid-epoch resume: stopping on a
    preemption signal with ``checkpoints/last.ckpt`` saved, and the random states in
    checkpoints."""
    return [StopOnPreemption(last_checkpoint(cfg.paths.output_dir)), RandomStateInCheckpoint()]


def finished_record(cfg: DictConfig, overrides: list[str] | None) -> dict[str, Any] | None:
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
    if same_job(record.get("overrides"), overrides):
        log.info("skip_finished: %s exists, the run is not trained again", path)
        return record
    log.warning(
        "%s holds a run of other overrides (%s); training this job (%s) in its place",
        path,
        " ".join(record.get("overrides") or []),
        " ".join(overrides or []),
    )
    return None


def same_job(stored: list[str] | None, current: list[str] | None) -> bool:
    """Whether a record written with ``stored`` overrides belongs to the ``current`` job;
    records from outside Hydra (None) are taken as the same job."""
    return stored is None or current is None or sorted(stored) == sorted(current)


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
        if not same_job(stored_overrides(path), overrides):
            log.warning("%s was written by a job of other overrides: not resumed", path)
            return None
        log.info("ckpt_path=auto: resuming %s", path)
        return str(path)
    if ckpt_path == "last":
        path = last_checkpoint(cfg.paths.output_dir)
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last but there is no {path} (last is the run directory's "
                "checkpoints/last.ckpt; point hydra.run.dir at the run to resume)"
            )
        return str(path)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return str(ckpt_path)


def _newest_checkpoint(cfg: DictConfig) -> Path | None:
    candidates = [
        last_checkpoint(cfg.paths.output_dir),
        *Path(cfg.paths.output_dir).glob(f"{HPC_CHECKPOINT_PREFIX}*.ckpt"),
    ]
    existing = [path for path in candidates if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime_ns) if existing else None
