"""Looking at runs.

* :mod:`.results`: a sweep's runs as a table, grouped by arm over seeds, paired differences
  (importable without torch; ``python -m vidistill.analysis.results``);
* :mod:`.runs`: finding sweeps, the papers' table layouts, training logs;
* :mod:`.passes`: trained models over videos (embeddings, mixture members, Figure 3);
* :mod:`.seeds`: runs over seeds (the committed evidence's sweeps, mean and error bar per arm,
  teachers, members, curves and the localization ablation, from the runs' records and logs);
* :mod:`.plots`: the notebooks' figures;
* :mod:`.mlflow_store`: runs read back from the MLflow store ``logger=mlflow`` writes to (the
  results table reads it as it reads run directories).

The notebooks import their functions from here (``from vidistill.analysis import embed``);
each submodule loads on first use, so reading results does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "runs": (
        "CSV_LOG",
        "SAMPLER_LABELS",
        "LOSS_LABELS",
        "TEACHER_STUDENT_TARGET",
        "ONLINE_TARGET",
        "SETTING_COLUMNS",
        "TABLE_METRICS",
        "project_root",
        "latest_multirun",
        "resolve_path",
        "path_from_env",
        "directories_from_env",
        "read_record",
        "best_checkpoint",
        "teacher_checkpoint",
        "teacher_run",
        "describe_run",
        "collect_runs",
        "teacher_runs",
        "find_serial_run",
        "pick_split",
        "method_order",
        "fewer_frames_table",
        "flatten_columns",
        "read_log",
        "training_curves",
    ),
    "passes": (
        "VideoEmbeddings",
        "run_datamodule",
        "split_files",
        "default_split",
        "class_names",
        "embed",
        "member_paths",
        "evaluate_members",
        "classifier_l2",
        "videos_of_top_classes",
        "joint_tsne",
        "representation_gap",
    ),
    "seeds": (
        "SPREADS",
        "evidence_root",
        "study_sweeps",
        "is_ablation_sweep",
        "spread",
        "over_seeds",
        "mean_sd",
        "seed_table",
        "recorded_teachers",
        "moved_directory",
        "member_scores",
        "curves_over_seeds",
        "ablation_table",
    ),
    "plots": (
        "plot_vs_frames",
        "plot_arms",
        "plot_flops_vs_metric",
        "plot_vs_temperature",
        "plot_curves",
        "plot_tsne",
    ),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
