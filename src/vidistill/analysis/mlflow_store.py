"""Runs read back from an MLflow tracking store, the one ``logger=mlflow`` writes to
(:mod:`vidistill.runs.trackers`).

Each MLflow run that vidistill starts carries its run directory as the tag ``vidistill.run_dir``,
the job's Hydra overrides as params and as the artifact ``overrides.yaml``, and, once the run
finished, its ``metrics.json`` and resolved ``config.yaml`` as artifacts. :func:`tracked_runs`
gives back, per run directory, what :func:`vidistill.analysis.results.collect` reads from the
directory itself (the record and the overrides), so a store and a tree of run directories make
the same table.

Importing this module does not import mlflow (the ``mlflow`` extra); reading a store does.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vidistill.layout import METRICS_FILE

RUN_DIR_TAG = "vidistill.run_dir"
OVERRIDES_ARTIFACT = "overrides.yaml"
RECORD_ARTIFACT = METRICS_FILE  # the run directory's record, under its own name
CONFIG_ARTIFACT = "config.yaml"
# MLflow 3.x keeps its file store in "maintenance mode" and refuses to open one unless this
# variable is true. The file store is what the issue asks for by default (no database, nothing
# to serve), so vidistill opts in for file stores, unless the user set the variable already.
FILE_STORE_OPT_IN = "MLFLOW_ALLOW_FILE_STORE"
# "scheme:" of a URI ("file:", "sqlite:", "http:", "databricks"...); a one-letter scheme would be a
# Windows drive.
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):")
# How many runs one search request returns (MLflow's own maximum is larger; this keeps pages small).
_PAGE = 1000


@dataclass(frozen=True)
class TrackedRun:
    """What an MLflow run holds of its run directory: the directory (as the run recorded it),
    its ``metrics.json`` record (None: the run did not finish) and its Hydra overrides."""

    run_dir: str
    record: dict[str, Any] | None
    overrides: list[str]


def is_file_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the root of an MLflow file store (it holds the default experiment's
    ``0/meta.yaml`` or the ``.trash`` folder MLflow creates with every store)."""
    root = Path(path)
    return (root / "0" / "meta.yaml").is_file() or (root / ".trash").is_dir()


def is_mlflow_source(source: str | os.PathLike) -> bool:
    """Whether ``source`` names an MLflow store rather than a tree of run directories: a
    tracking URI (``file:./mlruns``, ``sqlite:///mlflow.db``, ``http://host:5000``) that is not
    an existing path, or a file store's directory."""
    text = os.fspath(source)
    if Path(text).exists():
        return Path(text).is_dir() and is_file_store(text)
    return _SCHEME.match(text) is not None


def tracking_uri(source: str | os.PathLike) -> str:
    """``source`` as a tracking URI: a directory becomes ``file:<absolute path>``."""
    text = os.fspath(source)
    return f"file:{Path(text).resolve()}" if Path(text).exists() else text


def allow_file_store(uri: str) -> None:
    """Opt in to MLflow's file store (:data:`FILE_STORE_OPT_IN`) when ``uri`` is one: a
    ``file:`` URI or a plain path. Other stores are left alone."""
    match = _SCHEME.match(uri)
    if match is None or match.group(1).lower() == "file":
        os.environ.setdefault(FILE_STORE_OPT_IN, "true")


def tracked_runs(source: str | os.PathLike, experiment: str | None = None) -> list[TrackedRun]:
    """The vidistill runs of the MLflow store ``source`` (:func:`tracking_uri`), of the
    experiment named ``experiment`` or of every active experiment: one per run directory, its
    newest MLflow run (a job interrupted and run again into its directory started a second
    one). Runs without the :data:`RUN_DIR_TAG` tag (not written by vidistill) are left out.
    ValueError for an unknown experiment, ModuleNotFoundError without mlflow."""
    try:
        from mlflow import MlflowClient  # the mlflow extra, needed only here
    except ImportError as error:
        raise ModuleNotFoundError(
            f"{source}: reading an MLflow store needs mlflow: pip install -e '.[mlflow]'"
        ) from error

    uri = tracking_uri(source)
    allow_file_store(uri)
    # Two small files per run: without this, each download draws a progress bar on stderr.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri=uri)
    if experiment is None:
        experiment_ids = [found.experiment_id for found in client.search_experiments()]
    else:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = ", ".join(sorted(e.name for e in client.search_experiments()))
            raise ValueError(f"{source}: no experiment named {experiment!r} (there are: {names})")
        experiment_ids = [found.experiment_id]
    newest: dict[str, Any] = {}
    for run in _all_runs(client, experiment_ids):
        run_dir = run.data.tags.get(RUN_DIR_TAG)
        if run_dir is not None and run_dir not in newest:  # newest first
            newest[run_dir] = run
    with tempfile.TemporaryDirectory() as scratch:
        return [
            _read(client, run.info.run_id, run_dir, Path(scratch) / run.info.run_id)
            for run_dir, run in newest.items()
        ]


def _all_runs(client: Any, experiment_ids: list[str]) -> list[Any]:
    """Every run of the experiments, newest first, over as many pages as it takes."""
    if not experiment_ids:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids,
            order_by=["attributes.start_time DESC"],
            max_results=_PAGE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _read(client: Any, run_id: str, run_dir: str, scratch: Path) -> TrackedRun:
    """The run's record and overrides from its artifacts (copied into ``scratch``)."""
    present = {artifact.path for artifact in client.list_artifacts(run_id)}
    scratch.mkdir(parents=True)

    def text(name: str) -> str | None:
        if name not in present:
            return None
        return Path(client.download_artifacts(run_id, name, str(scratch))).read_text()

    record, overrides = text(RECORD_ARTIFACT), text(OVERRIDES_ARTIFACT)
    return TrackedRun(
        run_dir=run_dir,
        record=json.loads(record) if record is not None else None,
        overrides=(yaml.safe_load(overrides) or []) if overrides is not None else [],
    )
