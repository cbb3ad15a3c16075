"""Experiment trackers for real: ``logger=mlflow`` into its default file store, read back
through MLflow's client and by the results table; ``logger=wandb`` offline, read back from the
run's transaction log. Each skips only when its extra is not installed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from hydra_helpers import NEXTVLAD, run_sweep
from vidistill.analysis.mlflow_store import (
    FILE_STORE_OPT_IN,
    RUN_DIR_TAG,
    allow_file_store,
    is_file_store,
    is_mlflow_source,
    tracked_runs,
)
from vidistill.analysis.results import collect, main, parse_overrides
from vidistill.analysis.runs import read_log
from vidistill.runs.trackers import mlflow_logger, tracking

# Tiny NeXtVLADs on 4 or 6 uniform frames, every training step logged (6 per epoch).
SMALL = [*NEXTVLAD, "data.sampler=uniform", "trainer.log_every_n_steps=1"]
# Where a request to the network would go instead of failing silently or hanging: a closed port.
NOWHERE = "http://127.0.0.1:9"


@pytest.fixture
def without_opt_in(monkeypatch):
    """MLFLOW_ALLOW_FILE_STORE unset during the test and as it was after it: vidistill sets it
    (``os.environ.setdefault``) behind monkeypatch's back, and monkeypatch restores only what
    it saw, so the original value is recorded first."""
    monkeypatch.setenv(FILE_STORE_OPT_IN, "recorded")
    monkeypatch.delenv(FILE_STORE_OPT_IN)


def test_an_mlflow_store_is_told_from_a_tree_of_runs(tmp_path):
    store, tree = tmp_path / "mlruns", tmp_path / "multirun"
    (store / ".trash").mkdir(parents=True)  # what MLflow creates with every file store
    (tree / "0" / ".hydra").mkdir(parents=True)
    for source in (store, f"file:{store}", "sqlite:///mlflow.db", "http://localhost:5000"):
        assert is_mlflow_source(source), source
    for source in (tree, tree / "0", tmp_path / "missing", "logs/train/multirun/2026-01-01"):
        assert not is_mlflow_source(source), source


def test_file_stores_are_opted_in_and_a_users_choice_is_kept(without_opt_in):
    """MLflow 3.x refuses its file store unless MLFLOW_ALLOW_FILE_STORE is true."""
    for uri, opted_in in (("sqlite:///mlflow.db", None), ("file:/tmp/mlruns", "true")):
        os.environ.pop(FILE_STORE_OPT_IN, None)
        allow_file_store(uri)
        assert os.environ.get(FILE_STORE_OPT_IN) == opted_in, uri
    os.environ[FILE_STORE_OPT_IN] = "false"
    allow_file_store("mlruns")
    assert os.environ[FILE_STORE_OPT_IN] == "false"


def test_overrides_mlflow_cannot_name_still_become_params(tmp_path, without_opt_in):
    """A package override (``@``) is no valid MLflow param name: its param is renamed, and
    the exact overrides are kept in the run's ``overrides.yaml``."""
    pytest.importorskip("mlflow")
    logger = mlflow_logger("demo", f"file:{tmp_path / 'mlruns'}", str(tmp_path / "run"))
    overrides = ["+model@distill.teacher.model=dbof", "k=10", "data.glob='/a b/*.tfrecord'"]
    with tracking(SimpleNamespace(is_global_zero=True, loggers=[logger]), overrides):
        pass
    client = logger.experiment
    run = client.get_run(logger.run_id)
    assert run.data.params == {
        "model_distill.teacher.model": "dbof",
        "k": "10",
        "data.glob": "/a b/*.tfrecord",
    }
    assert run.data.tags[RUN_DIR_TAG] == str(tmp_path / "run")
    (read,) = tracked_runs(tmp_path / "mlruns", "demo")
    assert read.overrides == overrides and read.record is None  # started, not finished
    with pytest.raises(ValueError, match="no experiment named 'demo2' .*demo"):
        tracked_runs(tmp_path / "mlruns", "demo2")


@pytest.mark.slow
def test_mlflow_records_every_job_of_a_sweep(tmp_path, monkeypatch, capsys, without_opt_in):
    """Two jobs into the default store (``./mlruns`` where train.py runs; here
    ``paths.root_dir``): each an MLflow run with its overrides as params, its metrics at every
    step the CSV log has, and the run directory's record and config as artifacts; the results
    table reads the same rows back from the store as from the run directories."""
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Not opted in to the file store (without_opt_in): train.py opts in by itself.
    sweep = run_sweep(tmp_path, ["logger=mlflow", *SMALL, "k=4,6"])
    store = tmp_path / "mlruns"
    assert is_file_store(store)

    os.environ[FILE_STORE_OPT_IN] = "true"  # to read it from this process
    client = MlflowClient(tracking_uri=f"file:{store}")
    experiment = client.get_experiment_by_name("train")  # the task_name
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(Path(run.data.tags[RUN_DIR_TAG]) for run in runs) == [sweep / "0", sweep / "1"]
    for run in runs:
        run_id, run_dir = run.info.run_id, Path(run.data.tags[RUN_DIR_TAG])
        assert run.info.status == "FINISHED"
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        assert run.data.params == parse_overrides(overrides)
        assert run.data.params["k"] in ("4", "6") and run.data.params["logger"] == "mlflow"
        # Metrics per step: the training loss at every step the CSV log has it.
        logged = read_log(run_dir).dropna(subset=["train/loss"])
        history = client.get_metric_history(run_id, "train/loss")
        assert len(logged) >= 5
        assert sorted(metric.step for metric in history) == list(logged["step"])
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            list(logged["train/loss"]), rel=1e-6
        )
        record = json.loads((run_dir / "metrics.json").read_text())
        # The last val/gap logged is the best checkpoint's, which the record holds.
        assert run.data.metrics["val/gap"] == pytest.approx(record["metrics"]["val/gap"])
        artifacts = Path(client.download_artifacts(run_id, "", str(tmp_path / run_id)))
        assert json.loads((artifacts / "metrics.json").read_text()) == record
        assert yaml.safe_load((artifacts / "config.yaml").read_text()) == record["config"]
        assert yaml.safe_load((artifacts / "overrides.yaml").read_text()) == overrides

    from_store = collect(store)
    assert list(from_store["run"]) == ["0", "1"] and set(from_store["status"]) == {"done"}
    pd.testing.assert_frame_equal(from_store, collect(sweep))
    tables = []
    for source in ([str(sweep)], [str(store), "--experiment", "train"]):
        assert main([*source, "--by-arm", "--columns", "val/gap"]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1] and "| k " in tables[0]


@pytest.mark.slow
def test_wandb_logs_each_job_offline_into_its_run_directory(tmp_path, monkeypatch):
    """``logger=wandb`` with no account and the network out of reach (proxies and W&B's API
    on a closed port, so a request would fail the run): each job of a sweep has its own
    offline run in its directory (the jobs share a process: the first job's run must be
    closed, or the second would log into it), holding its overrides as config, the training
    loss at every logged step and, in its summary, the final metrics of its record."""
    pytest.importorskip("wandb")
    from wandb_records import config, history, read_records, summary

    for name in [name for name in os.environ if name.startswith("WANDB_")]:
        monkeypatch.delenv(name)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, NOWHERE)
    monkeypatch.setenv("WANDB_BASE_URL", NOWHERE)
    for kind in ("CONFIG", "CACHE", "DATA"):  # wandb's settings and caches, out of the home
        monkeypatch.setenv(f"WANDB_{kind}_DIR", str(tmp_path / kind.lower()))
    sweep = run_sweep(tmp_path, ["logger=wandb", *SMALL, "k=4,6"])

    for job, k in (("0", "4"), ("1", "6")):
        run_dir = sweep / job
        (offline,) = (run_dir / "wandb").glob("offline-run-*")
        (log,) = offline.glob("run-*.wandb")
        records = read_records(log)
        assert config(records)["k"] == k
        rows = [row for row in history(records) if "train/loss" in row]
        logged = read_log(run_dir).dropna(subset=["train/loss"])
        assert len(logged) >= 5
        assert [row["trainer/global_step"] for row in rows] == list(logged["step"])
        assert [row["train/loss"] for row in rows] == pytest.approx(list(logged["train/loss"]))
        record = json.loads((run_dir / "metrics.json").read_text())
        final = summary(records)
        for name, value in record["metrics"].items():
            assert final[name] == pytest.approx(value), name
