"""Runs as the notebooks see them: finding sweeps, tabulating them the way the papers do
(:func:`collect_runs`, :func:`fewer_frames_table`), and reading training logs
(:func:`read_log`, :func:`training_curves`). Model passes over videos are in
:mod:`vidistill.analysis.passes`, figures in :mod:`vidistill.analysis.plots`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from vidistill.analysis.results import METRICS_FILE, collect

# Where the CSV logger (conf/logger/csv.yaml: name "csv", version "") writes in a run directory.
CSV_LOG = Path("csv") / "metrics.csv"

# The fewer-frames paper's names of the frame-selection baselines, in its Table 1 order.
SAMPLER_LABELS = {
    "uniform": "Uniform-k",
    "random": "Random-k",
    "first": "First-k",
    "middle": "Middle-k",
    "last": "Last-k",
    "first_middle_last": "First-Middle-Last-k",
    "stride": "Stride-k",
}
# The student's loss terms (conf/distill/terms/) as the paper writes them, in its order.
LOSS_LABELS = {"rep": "Lrep", "rep_blocks": "Lrep-blocks", "pred": "Lpred", "ce": "LCE"}
# The objectives' class names (conf/distill/): matched on the last part of ``_target_``, which
# may name the class through its package or its module.
TEACHER_STUDENT_TARGET = "vidistill.distill.TeacherStudentDistillation"
ONLINE_TARGET = "vidistill.distill.OnlineMixtureDistillation"
# Columns collect_runs adds to collect()'s (named so that none collides with an override key).
SETTING_COLUMNS = ("sweep", "path", "method", "family", "sampler", "frames", "temperature")
TABLE_METRICS = {"gap": "GAP", "map": "mAP"}


# --------------------------------------------------------------------------------------------
# Finding runs
# --------------------------------------------------------------------------------------------


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The vidistill checkout containing ``start`` (default: the working directory): the
    nearest directory upwards holding ``conf/config.yaml``; ``start`` itself if there is none.

    Notebooks run with their own folder as working directory, the presets write their sweeps
    under the checkout's ``logs/``: this is how a notebook finds them.
    """
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "conf" / "config.yaml").is_file():
            return directory
    return here


def latest_multirun(task_name: str, log_dir: str | os.PathLike | None = None) -> Path | None:
    """The newest sweep of a preset, ``<log_dir>/<task_name>/multirun/<date>_<time>``, or None.

    ``log_dir`` defaults to the checkout's ``logs`` (:func:`project_root`). Sweep directories
    are named ``%Y-%m-%d_%H-%M-%S`` (conf/hydra/default.yaml), so the newest sorts last.
    """
    base = Path(log_dir) if log_dir is not None else project_root() / "logs"
    sweeps = sorted(path for path in (base / task_name / "multirun").glob("*") if path.is_dir())
    return sweeps[-1] if sweeps else None


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` as given when it exists (or is absolute), else taken from the checkout's root
    (:func:`project_root`): a notebook's kernel runs in ``notebooks/``, while paths such as
    ``logs/...`` are written from the root, where ``train.py`` runs."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    from_root = project_root() / path
    return from_root if from_root.exists() else path


def path_from_env(variable: str) -> Path | None:
    """The path in the environment variable ``variable`` (:func:`resolve_path`), None when it
    is unset or empty; FileNotFoundError naming the variable when the path does not exist."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    path = resolve_path(value)
    if not path.exists():
        raise FileNotFoundError(f"{variable}: no such file or directory: {value}")
    return path


def directories_from_env(variable: str, defaults: Sequence[Path | None]) -> list[Path]:
    """The directories listed in the environment variable ``variable`` (separated by
    ``os.pathsep``, ``:`` on Linux; relative ones as :func:`resolve_path` takes them), else the
    ``defaults`` that exist. FileNotFoundError naming the variable when nothing is found, so a
    notebook stops at its first cell."""
    value = os.environ.get(variable, "").strip()
    if value:
        parts = [part for part in value.split(os.pathsep) if part]
        missing = [part for part in parts if not resolve_path(part).is_dir()]
        if missing:
            raise FileNotFoundError(f"{variable}: no such directory: {', '.join(missing)}")
        return [resolve_path(part) for part in parts]
    found = [Path(path) for path in defaults if path is not None and Path(path).is_dir()]
    if not found:
        raise FileNotFoundError(
            f"no runs: set {variable} to a run or multirun directory, or run the preset first "
            "(see notebooks/README.md)"
        )
    return found


def read_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A finished run's ``metrics.json`` (metrics, config, best checkpoint...);
    FileNotFoundError naming the file when the run did not finish."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the run did not finish, or is no run)")
    return json.loads(path.read_text())


def best_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The checkpoint a run's metrics were measured on (``best_checkpoint`` of its record).

    Records hold absolute paths; a run directory that was moved or copied still finds its
    checkpoint under its own ``checkpoints/``.
    """
    run_dir = Path(run_dir)
    recorded = read_record(run_dir).get("best_checkpoint")
    if not recorded:
        raise FileNotFoundError(f"{run_dir / METRICS_FILE}: the run saved no checkpoint")
    return _existing(Path(recorded), run_dir)


def teacher_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The teacher checkpoint of a teacher-student run: the one it trained first (in
    ``<run>/teacher``, or shared by a sweep's jobs), else the ``distill.teacher.checkpoint``
    it was given.
    ValueError when the run had no trained teacher (a baseline, or a parallel run whose
    teacher lives only inside its training objective)."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    trained_first = (record.get("teacher") or {}).get("best_checkpoint")
    if trained_first:
        return _existing(Path(trained_first), run_dir)
    distill = record.get("config", {}).get("distill") or {}
    given = (distill.get("teacher") or {}).get("checkpoint")
    if given and not distill.get("parallel", False):
        return _existing(Path(given), run_dir)
    raise ValueError(f"{run_dir}: not a serial teacher-student run, it has no trained teacher")


def teacher_run(run_dir: str | os.PathLike) -> Path | None:
    """The run directory that trained a run's teacher (holding its ``metrics.json``), or None:
    ``<run>/teacher``, a sweep's shared teacher directory, or the run owning the given
    ``distill.teacher.checkpoint``."""
    try:
        checkpoint = teacher_checkpoint(run_dir)
    except ValueError:
        return None
    directory = checkpoint.parent.parent  # <run>/checkpoints/<file>.ckpt
    return directory if (directory / METRICS_FILE).is_file() else None


def _existing(recorded: Path, run_dir: Path) -> Path:
    """``recorded`` (an absolute path from a record) if it exists, else the same file found
    from ``run_dir`` after the runs were moved: the recorded path's last 4, 3 or 2 parts below
    the run or its parent, which covers ``<run>/checkpoints/<file>``,
    ``<run>/teacher/checkpoints/<file>`` and ``<sweep>/teachers/<name>/checkpoints/<file>``
    (a teacher shared by a sweep's jobs)."""
    if recorded.is_file():
        return recorded
    # Longest suffix first: a run's teacher and the run itself may both have a checkpoint of
    # the same file name (epoch_000.ckpt), and only the longer path tells them apart.
    for depth in (4, 3, 2):
        for base in (run_dir, run_dir.parent):
            moved = base.joinpath(*recorded.parts[-depth:])
            if len(recorded.parts) > depth and moved.is_file():
                return moved
    raise FileNotFoundError(f"checkpoint {recorded} not found, nor below {run_dir} or its parent")


# --------------------------------------------------------------------------------------------
# Tables of runs
# --------------------------------------------------------------------------------------------


def describe_run(config: dict[str, Any]) -> dict[str, Any]:
    """What a run is, from its recorded config (``metrics.json``'s ``config``): the
    :data:`SETTING_COLUMNS` after ``sweep`` and ``path``.

    ``method`` names it as the papers do: ``Uniform-k`` (a k-frame baseline), ``Serial Lrep,
    Lpred, LCE`` (a teacher-student run and its loss terms of nonzero weight; ``[First-k]``
    appended when the student's frames are not uniform), ``Online T=20`` (a mixture with online
    distillation), ``All frames``. ``frames`` is what the model sees per video at most (k, or
    ``max_frames`` for all frames), ``family`` the backbone's class (``MixNeXtVLAD[3]`` for a
    mixture tree of branching [3]), ``temperature`` T of online distillation (else NaN).
    """
    from vidistill.data.frames import FrameSelection  # torch is imported only when needed

    selection = FrameSelection.from_config(config.get("data", {}))
    distill = config.get("distill") or {}
    sampler = selection.sampler
    objective = _class_name(distill.get("_target_"))
    temperature = float("nan")
    if objective == _class_name(TEACHER_STUDENT_TARGET):
        weights = distill.get("weights") or {}
        terms = [label for name, label in LOSS_LABELS.items() if weights.get(name, 0) > 0]
        method = ("Parallel " if distill.get("parallel") else "Serial ") + ", ".join(terms)
        if sampler != "uniform":  # the paper's students all see uniform frames
            method += f" [{SAMPLER_LABELS.get(sampler, sampler)}]"
    elif objective == _class_name(ONLINE_TARGET):
        temperature = float(distill.get("temperature", 0.0))
        method = f"Online T={temperature:g}"
    elif sampler == "all":
        method = "All frames"
    else:
        method = SAMPLER_LABELS.get(sampler, sampler)
    return {
        "method": method,
        "family": _family(config.get("model", {}).get("backbone") or {}),
        "sampler": sampler,
        "frames": selection.frames_per_video,
        "temperature": temperature,
    }


def _class_name(target: str | None) -> str:
    """The last part of a ``_target_`` (``NeXtVLAD``), ``?`` for none."""
    return str(target or "?").rsplit(".", 1)[-1]


def _family(backbone: dict[str, Any]) -> str:
    name = _class_name(backbone.get("_target_"))
    if name == "mixture_tree":
        leaf = _class_name((backbone.get("leaf") or {}).get("_target_"))
        return f"Mix{leaf}{list(backbone.get('branching', []))}"
    return name


def collect_runs(directories: Sequence[str | os.PathLike], flops: bool = False) -> pd.DataFrame:
    """:func:`vidistill.analysis.results.collect` of every directory, one frame: its columns, then
    :data:`SETTING_COLUMNS`: ``sweep`` (the directory given), ``path`` (the run directory),
    and :func:`describe_run` of each finished run (missing runs keep NaN there)."""
    frames = []
    for directory in directories:
        table = collect(directory, flops=flops)
        settings = []
        for run, status in zip(table["run"], table["status"], strict=True):
            path = Path(directory) / run
            described = describe_run(read_record(path)["config"]) if status == "done" else {}
            settings.append({"sweep": str(directory), "path": str(path), **described})
        frames.append(table.join(pd.DataFrame(settings, columns=list(SETTING_COLUMNS))))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "frames" in frame:
        frame["frames"] = frame["frames"].astype("Int64")
    return frame


def teacher_runs(frame: pd.DataFrame, flops: bool = False) -> pd.DataFrame:
    """The teachers of the runs in ``frame`` (a :func:`collect_runs` frame), one row per
    teacher run: collected like any run (``method`` ``All frames``, FLOPs at all frames) and
    a ``students`` column counting the rows of ``frame`` it taught."""
    teachers: dict[Path, int] = {}
    for path in frame.get("path", pd.Series(dtype=str)).dropna():
        directory = teacher_run(path) if (Path(path) / METRICS_FILE).is_file() else None
        if directory is not None:
            teachers[directory] = teachers.get(directory, 0) + 1
    if not teachers:
        return pd.DataFrame(columns=["run", "status", *SETTING_COLUMNS, "students"])
    table = collect_runs(list(teachers), flops=flops)
    table["students"] = list(teachers.values())
    return table


def find_serial_run(directories: Sequence[str | os.PathLike]) -> Path:
    """The first finished serial teacher-student run (in :func:`collect_runs` order) under
    ``directories`` (runs or sweeps) whose teacher checkpoint exists; FileNotFoundError when
    there is none."""
    runs = collect_runs(directories)
    for path, status, method in zip(
        runs.get("path", []), runs.get("status", []), runs.get("method", []), strict=True
    ):
        if status == "done" and str(method).startswith("Serial "):
            try:
                teacher_checkpoint(path)
            except (ValueError, FileNotFoundError):
                continue
            return Path(path)
    listed = ", ".join(str(directory) for directory in directories)
    raise FileNotFoundError(f"no finished serial distillation run with its teacher in {listed}")


def pick_split(frame: pd.DataFrame) -> str:
    """``test`` when any run has test metrics, else ``val`` (runs trained with ``test=false``)."""
    column = frame.get("test/gap")
    return "test" if column is not None and column.notna().any() else "val"


def method_order(method: str) -> tuple[int, str]:
    """Sort key putting methods in the paper's order: baselines as in its Table 1 (all frames
    first), then parallel, then serial students, then anything else."""
    baselines = ["All frames", *SAMPLER_LABELS.values()]
    if method in baselines:
        return baselines.index(method), ""
    for rank, prefix in enumerate(("Parallel ", "Serial ", "Online "), start=len(baselines)):
        if method.startswith(prefix):
            return rank, method
    return len(baselines) + 3, method


def fewer_frames_table(
    frame: pd.DataFrame, split: str | None = None, metrics: Sequence[str] = ("gap", "map")
) -> pd.DataFrame:
    """The fewer-frames paper's Table 1 layout: one row per method (and per backbone family
    when there are several), columns ``(k, metric)`` with ``GAP`` and ``mAP`` of ``split``
    (default :func:`pick_split`). Several runs of one cell (seeds) are averaged; cells
    without a run are NaN. Runs on all frames are left out (they are the teacher skyline)."""
    split = split or pick_split(frame)
    columns = [f"{split}/{metric}" for metric in metrics]
    missing = [column for column in columns if column not in frame]
    if missing:
        raise ValueError(f"no {', '.join(missing)} in the runs (their columns: {list(frame)})")
    done = frame[(frame["status"] == "done") & (frame["sampler"] != "all")]
    if done.empty:
        raise ValueError("no finished run on k frames to tabulate")
    index = ["family", "method"] if done["family"].nunique() > 1 else ["method"]
    long = done.melt(id_vars=[*index, "frames"], value_vars=columns, var_name="metric")
    long["metric"] = long["metric"].map(
        lambda name: TABLE_METRICS.get(name.split("/", 1)[1], name.split("/", 1)[1])
    )
    long["value"] = long["value"].astype(float)
    table = long.pivot_table(
        index=index, columns=["frames", "metric"], values="value", aggfunc="mean"
    )
    table.columns = table.columns.set_names(["k", "metric"])
    wanted = [TABLE_METRICS.get(metric, metric) for metric in metrics]
    table = table.reindex(
        columns=pd.MultiIndex.from_product(
            [sorted(table.columns.get_level_values("k").unique()), wanted], names=["k", "metric"]
        )
    )

    def row_order(key: str | tuple[str, str]) -> tuple:
        family, method = key if isinstance(key, tuple) else ("", key)
        return family, *method_order(method)

    return table.reindex(sorted(table.index, key=row_order))


def flatten_columns(table: pd.DataFrame) -> pd.DataFrame:
    """A table with (k, metric) columns and a method index as a flat frame (``k=6 GAP``, ...),
    the index as leading columns: the form :func:`vidistill.analysis.results.to_markdown` prints."""
    flat = table.copy()
    names = table.columns.names

    def label(column: Any) -> str:
        if not isinstance(column, tuple):
            return str(column)
        parts = zip(names, column, strict=True)
        return " ".join(f"k={part}" if name == "k" else str(part) for name, part in parts)

    flat.columns = [label(column) for column in table.columns]
    return flat.reset_index()


# --------------------------------------------------------------------------------------------
# Training logs
# --------------------------------------------------------------------------------------------


def read_log(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run's CSV log (``<run>/csv/metrics.csv``, or the path of a ``metrics.csv``) with one
    row per global step, sorted by step.

    Lightning's CSV logger writes a row per logging call: at one step the learning rates, the
    training terms and the validation metrics arrive as separate, mostly empty rows. They are
    merged here (per column, the last value logged at that step: a resumed run logs again
    what it repeats). Columns: ``step``, ``epoch`` and every logged name (``train/loss``,
    ``train/bce/level0``, ``val/gap``, ...). After training, the best checkpoint is evaluated
    again: that validation (and the test) is logged at the step after the last training step.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / CSV_LOG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file; the run's CSV log is written by logger=csv (the default) "
            "as <run>/csv/metrics.csv"
        )
    raw = pd.read_csv(path)
    if "step" not in raw:
        raise ValueError(f"{path}: not a Lightning CSV log (no 'step' column)")
    merged = raw.groupby("step", sort=True).last()  # last non-null value per column and step
    merged = merged.reset_index()
    if "epoch" in merged:
        merged["epoch"] = merged["epoch"].astype("Int64")
    return merged


def training_curves(log: pd.DataFrame) -> pd.DataFrame:
    """The training terms of a :func:`read_log` frame (the ``train/...`` columns: the loss, its
    terms, ``train/l2``; not the learning rates), indexed by step, only the steps where one of
    them was logged."""
    columns = [column for column in log.columns if str(column).startswith("train/")]
    curves = log.set_index("step")[columns]
    return curves.dropna(how="all")
