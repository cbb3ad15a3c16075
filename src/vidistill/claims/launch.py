"""Running a study's sweeps: each a ``train.py -m`` (or ``localize.py -m``) over the study's
seeds, two one-thread jobs at a time through Hydra's joblib launcher.

Resuming: every job's directory is named by its overrides (``hydra.job.override_dirname``), so a
job keeps its directory whatever else the sweep lists, and ``skip_finished`` (train.py) or the
ablation's finished stages (localize.py) leave finished jobs alone. A study stopped at any point
is resumed by the same command. Serial students and segment finetuning share their teachers and
video-level pretraining study-wide (``runs/teachers``, ``runs/pretrained``), one per seed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from vidistill.claims.studies import Study, Sweep

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
JOBS_AT_ONCE = 2
# How long a stopped sweep's processes get to exit on SIGTERM before SIGKILL.
GRACE_SECONDS = 10.0
# What the jobs' directory names leave out: the same for every job of a sweep.
HIDDEN_KEYS = ("hydra", "experiment", "pretrain.shared_dir", "distill.teacher.shared_dir")


def sweep_command(study: Study, sweep: Sweep, directory: Path, quick: bool) -> list[str]:
    """The command line of one sweep of ``study`` into ``directory/runs/<sweep>``."""
    seeds = study.seeds[:1] if quick else study.seeds
    overrides = list(sweep.quick if quick else sweep.overrides)
    runs = directory / "runs"
    shared = []
    if sweep.script == "train.py":
        shared.append(f"pretrain.shared_dir={runs / 'pretrained'}")
        if sweep.teachers:
            shared.append(f"distill.teacher.shared_dir={runs / 'teachers'}")
    recipe = list(study.localize_recipe if sweep.script == "localize.py" else study.recipe)
    hidden = sorted({*HIDDEN_KEYS, *(_key(o) for o in recipe)})
    return [
        sys.executable,
        sweep.script,
        "-m",
        *recipe,
        *overrides,
        *shared,
        f"seed={','.join(map(str, seeds))}",
        f"hydra.sweep.dir={runs / sweep.name}",
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
        f"hydra.job.config.override_dirname.exclude_keys=[{','.join(hidden)}]",
        "hydra/launcher=local_parallel",
        f"hydra.launcher.n_jobs={JOBS_AT_ONCE}",
    ]


def _key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def run_sweep(study: Study, sweep: Sweep, directory: Path, quick: bool) -> int:
    """Run one sweep to the end (its jobs one thread each); returns the command's exit code.
    Its output goes to ``directory/logs/<sweep>.log``."""
    command = sweep_command(study, sweep, directory, quick)
    logs = directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log.info("sweep %s: %s", sweep.name, " ".join(command))
    with open(logs / f"{sweep.name}.log", "a") as output:
        return run_as_group(command, env, output)


def run_as_group(command: list[str], env: dict[str, str], output: IO) -> int:
    """Run ``command`` in a process group of its own and wait for it. If this process is stopped
    meanwhile (Ctrl-C, or SIGTERM turned into KeyboardInterrupt by the command line), the whole
    group goes too: the sweep's launcher and the joblib workers it started, which would otherwise
    outlive it and keep training. A study stopped this way resumes with the same command."""
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        return process.wait()
    except BaseException:
        _stop_group(process)
        raise


def _stop_group(process: subprocess.Popen, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to the process group; after the launcher exits (or ``grace`` seconds), SIGKILL
    to whatever is left of the group: a worker busy in a kernel may not act on SIGTERM, and it
    keeps the group alive after its parent is gone."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # nothing left in the group
        os.killpg(group, sig)
