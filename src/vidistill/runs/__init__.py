"""Orchestration of runs: what the entry points do with a config.

* :mod:`~vidistill.runs.builders`: data, model, objective and trainer from the config;
* :mod:`~vidistill.runs.training`: fit, evaluate the best checkpoint, write the record;
* :mod:`~vidistill.runs.prerequisites`: teachers and pretraining trained first, shared, locked;
* :mod:`~vidistill.runs.resume`: which checkpoint resumes a run, which record is finished;
* :mod:`~vidistill.runs.evaluation`: a checkpoint's metrics, and its predictions to a file;
* :mod:`~vidistill.runs.trackers`: MLflow and W&B runs that stand for vidistill runs.
"""

from vidistill.runs.builders import build, build_datamodule, build_objective, start_from_pretrained
from vidistill.runs.evaluation import evaluate, write_predictions
from vidistill.runs.training import train, train_run

__all__ = [
    "build",
    "build_datamodule",
    "build_objective",
    "evaluate",
    "start_from_pretrained",
    "train",
    "train_run",
    "write_predictions",
]
