"""Sweeps through the launchers and the search that conf/ offers: joblib processes, submitit
(its local executor stands in for SLURM, which these machines lack), Optuna."""

from __future__ import annotations

import os

import pytest
import yaml
from omegaconf import OmegaConf

from hydra_helpers import compose_config, run_sweep
from vidistill.analysis.results import collect

LOGISTIC = ["model=logistic", "data.sampler=uniform"]

pytestmark = pytest.mark.slow


def test_local_parallel_jobs_survive_a_crashing_one(tmp_path):
    """hydra/launcher=local_parallel runs the jobs in joblib worker processes; the job with an
    invalid k fails, the sweep reports it, and the other jobs finish."""
    directory = run_sweep(
        tmp_path, [*LOGISTIC, "hydra/launcher=local_parallel", "k=0,2,3"], check=False
    )
    log = (tmp_path / "sweep.log").read_text()
    assert "Joblib.Parallel(n_jobs=2" in log
    assert "k must be a positive integer, got 0" in log
    table = collect(directory)
    assert list(table["status"]) == ["missing", "done", "done"]
    assert list(table["k"]) == ["0", "2", "3"]


def test_submitit_launcher_runs_every_job(tmp_path):
    """The submitit launcher behind hydra/launcher=slurm, with its local executor: each job is
    pickled, run in its own process and logged in the sweep's .submitit folder."""
    directory = run_sweep(tmp_path, [*LOGISTIC, "hydra/launcher=submitit_local", "k=2,3"])
    assert list(collect(directory)["status"]) == ["done", "done"]
    logs = sorted(path.name for path in (directory / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2, logs


def test_slurm_launcher_follows_the_trainer(tmp_path, monkeypatch):
    """hydra/launcher=slurm asks SLURM for one task and one GPU per device on each node, and
    every field is one submitit's SLURM executor accepts."""
    submitit = pytest.importorskip("submitit")
    cfg = compose_config(
        tmp_path,
        [
            "hydra/launcher=slurm",
            "trainer=ddp",
            "trainer.devices=4",
            "trainer.num_nodes=2",
            "hydra.launcher.partition=gpu",
        ],
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (4, 4, 2)
    # What the plugin hands to submitit, which checks every name against sbatch's options and
    # writes the sbatch script; submitit looks for srun first, a stand-in is enough for that.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    executor = submitit.AutoExecutor(cluster="slurm", folder=str(tmp_path / "submitit"))
    base = {
        "timeout_min",
        "cpus_per_task",
        "gpus_per_node",
        "tasks_per_node",
        "mem_gb",
        "nodes",
        "name",
    }
    skip = {"_target_", "submitit_folder", "max_num_timeout", "stderr_to_stdout"}
    launcher["name"] = "job"
    executor.update_parameters(
        **{
            key if key in base else f"slurm_{key}": value
            for key, value in launcher.items()
            if key not in skip
        }
    )
    script = executor._executor._make_submission_file_text("python train.py", "0")
    for line in (
        "--ntasks-per-node=4",
        "--gpus-per-node=4",
        "--nodes=2",
        "--partition=gpu",
        "--time=1440",
    ):
        assert f"#SBATCH {line}" in script, script


def test_optuna_search_maximizes_val_gap(tmp_path):
    """hparams_search=optuna: every trial is a job whose val/gap Optuna is told; a crashing
    trial (k=0) is recorded as failed and the search goes on; the best trial reported is the
    best finished job."""
    trials = 4
    directory = run_sweep(
        tmp_path,
        [
            "model=logistic",
            "hparams_search=optuna",
            f"hydra.sweeper.n_trials={trials}",
            "data.sampler=uniform",
            "k=choice(0,3)",
        ],
    )
    table = collect(directory)
    assert len(table) == trials
    failed = table[table["status"] == "missing"]
    done = table[table["status"] == "done"]
    # with the sampler's seed (the run's seed) one trial draws k=0
    assert set(failed["k"]) == {"0"} and set(done["k"]) == {"3"}
    result = yaml.safe_load((directory / "optimization_results.yaml").read_text())
    best = done.loc[done["val/gap"].idxmax()]
    assert result["best_value"] == pytest.approx(best["val/gap"])
    assert float(result["best_params"]["model.optimizer.lr"]) == pytest.approx(
        float(best["model.optimizer.lr"])
    )


def test_ddp_in_a_multirun_runs_the_job_once(tmp_path):
    """trainer=ddp in train.py -m: the job trains on two gloo processes that it spawns itself,
    instead of running the sweep's command line again (which would start the sweep anew)."""
    directory = run_sweep(
        tmp_path,
        [*LOGISTIC, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "k=3"],
    )
    log = (tmp_path / "sweep.log").read_text()
    assert "ddp_spawn" in log and "Initializing distributed: GLOBAL_RANK: 1" in log
    assert log.count("Launching 1 jobs locally") == 1
    assert list(collect(directory)["status"]) == ["done"]
    assert sorted(path.name for path in directory.iterdir() if path.is_dir()) == ["0"]
