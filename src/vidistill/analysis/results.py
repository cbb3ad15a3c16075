"""Collect the runs of a sweep into one table: ``collect(dir)`` gives a DataFrame with a row per
run (its overrides, final metrics, size, wall time and optionally FLOPs), ``to_markdown`` prints
it, and ``python -m vidistill.analysis.results MULTIRUN_DIR [--flops] [--columns a,b]`` does both.
The runs may also be read back from an MLflow tracking store that ``logger=mlflow`` wrote to
(``collect("mlruns")``, ``collect("sqlite:///mlflow.db")``; see
:mod:`vidistill.analysis.mlflow_store`): the same table, from the same records.

A run is a directory holding ``metrics.json`` (written by ``train.py`` when a run finishes) or a
``.hydra`` directory (written by Hydra when a job starts): a job with ``.hydra`` but no
``metrics.json`` crashed or is still running and is listed with ``status = "missing"``. The
teacher a serial distillation run trains first (in ``<run>/teacher``, or shared by a sweep's jobs
in ``<sweep>/teachers/<name>``) is not a row of its own but adds ``teacher/<metric>`` columns to
the row of each run distilled from it; nor is a video-level model trained first for segment
finetuning (``<run>/pretrained``, ``<sweep>/pretrained/<name>``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from scipy.stats import t as student_t

from vidistill.analysis.costs import flops_of
from vidistill.analysis.mlflow_store import is_mlflow_source, tracked_runs
from vidistill.layout import (
    HYDRA_DIR,
    METRICS_FILE,
    OVERRIDES_FILE,
    PRETRAINED_DIR,
    SHARED_PRETRAINED_DIR,
    SHARED_TEACHERS_DIR,
    TEACHER_DIR,
)

# Runs that other runs train first (teachers, video-level pretraining) live in these
# directories, nested in a run or shared by a sweep's jobs: they are not rows of their own.
NESTED_DIRS = (TEACHER_DIR, PRETRAINED_DIR)
SHARED_DIRS = (SHARED_TEACHERS_DIR, SHARED_PRETRAINED_DIR)
# Columns taken from the record itself, after the metrics; the FLOPs columns follow when asked.
RECORD_COLUMNS = ("params", "wall_time", "epochs")
FLOPS_COLUMNS = ("flops_paper", "flops_total")
# Counts that are whole numbers but become NaN on a missing run: kept as nullable integers so
# they neither turn into floats nor print with decimals.
INTEGER_COLUMNS = ("params", "epochs", *FLOPS_COLUMNS)
# What tells runs of one arm apart: their seed.
SEED_COLUMNS = ("seed",)


def collect(
    multirun_dir: str | Path,
    flops: bool = False,
    by_arm: bool = False,
    experiment: str | None = None,
) -> pd.DataFrame:
    """One row per run under ``multirun_dir`` (a Hydra multirun directory or any tree of runs),
    sorted naturally by its relative path (job 2 before job 10).

    ``multirun_dir`` may instead be an MLflow tracking store (a file store directory such as
    ``./mlruns``, or a tracking URI): its runs written by ``logger=mlflow``, those of the
    experiment named ``experiment`` or of all experiments, each row as its run directory would
    give it (``run`` relative to the run directories' common parent).

    Columns, in order: ``run`` (path relative to ``multirun_dir``), ``status`` (``done`` or
    ``missing``), one per override key of ``.hydra/overrides.yaml`` (values as written, as
    strings), the final metrics of ``metrics.json`` (``val/gap``, ``test/gap``, ...), the
    teacher run's as ``teacher/<metric>``, ``params``, ``wall_time`` (seconds), ``epochs``, and
    with ``flops=True`` ``flops_paper`` and ``flops_total`` (multiply-adds per video at the
    frames the model sees, see :func:`vidistill.models.flops.count`). Whatever a run lacks is NaN (NA
    in the integer columns). No runs: an empty frame with the ``run`` and ``status`` columns.
    ``attrs["overrides"]`` and ``attrs["metrics"]`` name the override and metric columns.
    With ``by_arm``, the table of :func:`summarize` instead: one row per arm, mean, sd and n.
    """
    if is_mlflow_source(multirun_dir):
        runs = _tracked_rows(str(multirun_dir), experiment, flops)
    else:
        root = Path(multirun_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory")
        runs = [_read_run(root, directory, flops) for directory in _run_directories(root)]
    # Group by group (overrides, metrics, record columns), each in the order its keys first
    # appear across the runs.
    grouped = dict.fromkeys(key for part in (1, 2, 3) for run in runs for key in run[part])
    frame = pd.DataFrame(
        [{key: value for part in run for key, value in part.items()} for run in runs],
        columns=["run", "status", *grouped],
    )
    for column in INTEGER_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    frame.attrs["overrides"] = list(dict.fromkeys(key for run in runs for key in run[1]))
    frame.attrs["metrics"] = list(dict.fromkeys(key for run in runs for key in run[2]))
    return summarize(frame) if by_arm else frame


def arm_columns(df: pd.DataFrame) -> list[str]:
    """The override columns that tell the arms of a sweep apart: those whose values differ
    between runs, less ``seed`` (runs of one arm differ only by it)."""
    overrides = df.attrs.get("overrides", [])
    return [
        column
        for column in overrides
        if column not in SEED_COLUMNS and df[column].nunique(dropna=False) > 1
    ]


def summarize(df: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """One row per arm of the finished runs of ``df`` (a :func:`collect` table): the arm's
    override values (``by``, default :func:`arm_columns`), ``n`` (finished runs), ``seeds``,
    and for every metric its mean (column ``<metric>``) and sample standard deviation
    (``<metric> sd``, NaN for one run). Arms keep the order they first appear in."""
    by = arm_columns(df) if by is None else list(by)
    metrics = [m for m in df.attrs.get("metrics", []) if m in df]
    done = df[df["status"] == "done"] if "status" in df else df
    rows = []
    groups = done.groupby(by, sort=False, dropna=False) if by else [((), done)]
    for key, runs in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        row["n"] = len(runs)
        row["seeds"] = (
            " ".join(sorted(runs["seed"].astype(str), key=_natural_key)) if "seed" in runs else ""
        )
        for metric in metrics:
            values = runs[metric].astype(float)
            row[metric] = values.mean()
            row[f"{metric} sd"] = values.std(ddof=1) if values.count() > 1 else math.nan
        rows.append(row)
    summary = pd.DataFrame(
        rows, columns=[*by, "n", "seeds", *(c for m in metrics for c in (m, f"{m} sd"))]
    )
    summary.attrs["metrics"] = metrics
    return summary


def paired_difference(
    df: pd.DataFrame,
    metric: str,
    arm_a: Mapping[str, str],
    arm_b: Mapping[str, str],
    level: float = 0.95,
) -> dict[str, float]:
    """``metric`` of arm a minus arm b, paired by seed: the runs of each arm are matched on
    their ``seed`` (seeds one arm lacks are left out), and the differences give ``mean``,
    ``sd`` (sample), ``n`` and the ``level`` t-interval ``low``, ``high`` of their mean (NaN
    with one pair). An arm is a mapping of override columns to values as written
    (``{"data.sampler": "uniform", "k": "10"}``)."""
    a, b = (arm_values(df, arm, metric) for arm in (arm_a, arm_b))
    common = sorted(set(a.index) & set(b.index), key=_natural_key)
    if not common:
        raise ValueError(f"arms {dict(arm_a)} and {dict(arm_b)} share no seed with {metric}")
    return paired_interval(a[common].to_numpy(float) - b[common].to_numpy(float), level)


def paired_interval(diffs: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean, sample sd, n and the ``level`` t-interval (``low``, ``high``) of paired
    differences [n]; the interval is NaN for one pair."""
    n = len(diffs)
    mean = float(np.mean(diffs))
    sd = float(np.std(diffs, ddof=1)) if n > 1 else math.nan
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "sd": sd, "n": n, "low": mean - half, "high": mean + half}


def arm_values(df: pd.DataFrame, arm: Mapping[str, str], metric: str) -> pd.Series:
    """The arm's finished runs' ``metric`` indexed by seed; ValueError for an unknown column,
    no matching run or two runs of one seed."""
    unknown = [key for key in [*arm, "seed", metric] if key not in df]
    if unknown:
        raise ValueError(f"unknown columns: {', '.join(unknown)}")
    chosen = df[df["status"] == "done"] if "status" in df else df
    for key, value in arm.items():
        chosen = chosen[chosen[key].astype(str) == str(value)]
    chosen = chosen.dropna(subset=[metric])
    if chosen.empty:
        raise ValueError(f"no finished run of the arm {dict(arm)} has {metric}")
    seeds = chosen["seed"].astype(str)
    if seeds.duplicated().any():
        raise ValueError(
            f"the arm {dict(arm)} has several runs of one seed: name the arm by more overrides"
        )
    return pd.Series(chosen[metric].to_numpy(dtype=float), index=seeds.to_numpy())


def parse_arm(text: str) -> dict[str, str]:
    """``"data.sampler=uniform k=10"`` -> ``{"data.sampler": "uniform", "k": "10"}``."""
    pairs = [item.partition("=") for item in text.split()]
    if not pairs or any(not key or not sep for key, sep, _ in pairs):
        raise ValueError(f"an arm is space-separated key=value overrides, got {text!r}")
    return {key: value for key, _, value in pairs}


def varying_columns(df: pd.DataFrame) -> list[str]:
    """The columns of ``df`` whose values differ between runs, plus ``run`` and ``status``: a
    real sweep records every constant override of every job, which buries the swept ones."""
    return [
        column
        for column in df.columns
        if column in ("run", "status") or df[column].nunique(dropna=False) > 1
    ]


def to_markdown(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """``df`` (or its ``columns``) as a GitHub markdown table, numeric columns right-aligned:
    floats with 4 decimals, integers as integers, missing values as empty cells."""
    columns = list(df.columns) if columns is None else list(columns)
    unknown = [column for column in columns if column not in df.columns]
    if unknown:
        raise ValueError(
            f"unknown columns: {', '.join(unknown)} (available: {', '.join(map(str, df.columns))})"
        )
    header = [str(column) for column in columns]
    body = [[_cell(value) for value in row] for row in df[columns].itertuples(index=False)]
    widths = [
        max(len(cell) for cell in [name, *(row[i] for row in body)])
        for i, name in enumerate(header)
    ]
    numeric = [pd.api.types.is_numeric_dtype(df[column]) for column in columns]

    def line(cells: list[str]) -> str:
        padded = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (width + 1) + ":" if right else "-" * (width + 2)
            for width, right in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def main(argv: list[str] | None = None) -> int:
    """The command line: print the markdown table of a sweep's runs; 2 when there is none."""
    parser = argparse.ArgumentParser(
        prog="python -m vidistill.analysis.results", description="Tabulate the runs of a sweep."
    )
    parser.add_argument(
        "multirun_dir",
        help="a Hydra multirun directory or a tree of runs, or an MLflow tracking store that "
        "logger=mlflow wrote to (a file store directory such as ./mlruns, or a tracking URI)",
    )
    parser.add_argument(
        "--experiment", help="with an MLflow store: only this experiment's runs (default: all)"
    )
    parser.add_argument("--flops", action="store_true", help="add flops_paper and flops_total")
    parser.add_argument("--columns", help="comma-separated columns to print (default: all)")
    parser.add_argument(
        "--varying", action="store_true", help="only the columns whose values differ between runs"
    )
    parser.add_argument(
        "--by-arm",
        action="store_true",
        help="one row per arm (runs differing only by seed): n, seeds, mean and sd per metric",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("ARM_A", "ARM_B"),
        help='paired difference A - B over seeds, e.g. "k=10 data.sampler=uniform" "k=10 '
        'data.sampler=random"; --columns picks the metrics (default: all)',
    )
    args = parser.parse_args(argv)
    try:
        frame = collect(args.multirun_dir, flops=args.flops, experiment=args.experiment)
        if frame.empty:
            raise ValueError(
                f"{args.multirun_dir}: no runs (no metrics.json nor .hydra/ below, nor runs "
                "written by logger=mlflow)"
            )
        columns = args.columns.split(",") if args.columns else None
        if args.compare:
            print(to_markdown(_comparison(frame, *args.compare, columns)))
            return 0
        if args.by_arm:
            frame = summarize(frame)
            if columns:
                arms = [c for c in frame.columns if c not in _metric_columns(frame)]
                columns = arms + [c for m in columns for c in (m, f"{m} sd") if c in frame]
        if args.varying:
            varying = varying_columns(frame)
            columns = [c for c in columns if c in varying] if columns else varying
        print(to_markdown(frame, columns))
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _metric_columns(summary: pd.DataFrame) -> set[str]:
    metrics = summary.attrs.get("metrics") or []
    return {c for m in metrics for c in (m, f"{m} sd")}


def _comparison(
    frame: pd.DataFrame, arm_a: str, arm_b: str, metrics: list[str] | None
) -> pd.DataFrame:
    """The CLI's --compare table: one row per metric, the paired difference of A - B."""
    a, b = parse_arm(arm_a), parse_arm(arm_b)
    rows = []
    for metric in metrics or frame.attrs.get("metrics", []):
        try:
            diff = paired_difference(frame, metric, a, b)
        except ValueError:
            if metrics:  # asked for by name: say why not
                raise
            continue
        rows.append({"metric": metric, **diff})
    return pd.DataFrame(rows, columns=["metric", "mean", "sd", "n", "low", "high"])


def _run_directories(root: Path) -> list[Path]:
    """Directories with a metrics.json or a .hydra/, less the runs that runs train first
    (teachers, pretraining)."""
    found = {path.parent for path in root.rglob(METRICS_FILE)}
    found |= {path.parent for path in root.rglob(HYDRA_DIR) if path.is_dir()}
    return _top_level_runs(root, found)


def _top_level_runs(root: Path, found: set[Path]) -> list[Path]:
    """The run directories of ``found`` (all below ``root``) that are rows of their own, in
    natural order: not the runs nested in a run (``<run>/teacher``, ``<run>/pretrained``) nor
    those a sweep's jobs share (``<sweep>/teachers/<name>``, ``<sweep>/pretrained/<name>``)."""
    runs = {
        directory
        for directory in found
        if not (directory.name in NESTED_DIRS and directory.parent in found)
        and not set(SHARED_DIRS) & set(directory.relative_to(root).parts[:-1])
    }
    return sorted(runs, key=lambda directory: _natural_key(directory.relative_to(root).as_posix()))


def _natural_key(text: str) -> list[str | int]:
    # re.split with a capturing group alternates text and digits, so the keys of two paths
    # compare str with str and int with int position by position.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _read_run(
    root: Path, directory: Path, flops: bool
) -> tuple[dict[str, Any], dict[str, str], dict[str, float], dict[str, Any]]:
    """A run directory's row (see :func:`_row`); its teacher's record is the student's copy,
    else the nested teacher run's own (it tells them when the student did not finish)."""
    record = _read_record(directory / METRICS_FILE)
    teacher = (record or {}).get("teacher") or _read_record(directory / TEACHER_DIR / METRICS_FILE)
    return _row(
        directory.relative_to(root).as_posix(),
        record,
        _overrides(directory / HYDRA_DIR / OVERRIDES_FILE),
        teacher,
        flops,
    )


def _tracked_rows(
    source: str, experiment: str | None, flops: bool
) -> list[tuple[dict[str, Any], dict[str, str], dict[str, float], dict[str, Any]]]:
    """The rows of the runs of an MLflow store, labelled by their run directory relative to
    the run directories' common parent, nested and shared runs left out as in a tree."""
    runs = {Path(run.run_dir): run for run in tracked_runs(source, experiment)}
    if not runs:
        return []
    root = Path(os.path.commonpath([directory.parent for directory in runs]))
    return [
        _row(
            directory.relative_to(root).as_posix(),
            runs[directory].record,
            parse_overrides(runs[directory].overrides),
            (runs[directory].record or {}).get("teacher"),
            flops,
        )
        for directory in _top_level_runs(root, set(runs))
    ]


def _row(
    label: str,
    record: dict[str, Any] | None,
    overrides: dict[str, str],
    teacher: dict[str, Any] | None,
    flops: bool,
) -> tuple[dict[str, Any], dict[str, str], dict[str, float], dict[str, Any]]:
    """A run's row in four parts, one per column group: identity (run, status), overrides,
    metrics (its own, then its teacher's), record columns (and FLOPs). ``record`` is the run's
    ``metrics.json`` (None: the run did not finish)."""
    identity = {"run": label, "status": "missing" if record is None else "done"}
    metrics = dict(record.get("metrics", {})) if record is not None else {}
    if teacher is not None:
        metrics.update(
            {f"teacher/{key}": value for key, value in teacher.get("metrics", {}).items()}
        )
    extra = {key: None if record is None else record.get(key) for key in RECORD_COLUMNS}
    if flops:
        counts = flops_of(record.get("config", {})) if record is not None else {}
        extra.update({key: counts.get(key) for key in FLOPS_COLUMNS})
    if "seed" not in overrides and record is not None and "seed" in record.get("config", {}):
        # Runs are paired by seed, so every run has one, overridden or not.
        overrides["seed"] = str(record["config"]["seed"])
    return identity, overrides, metrics, extra


def _read_record(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _overrides(path: Path) -> dict[str, str]:
    """:func:`parse_overrides` of a Hydra overrides file ({} when there is none)."""
    return parse_overrides(yaml.safe_load(path.read_text()) or []) if path.is_file() else {}


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """``key -> value`` of Hydra overrides (``["k=10", "+model@distill.teacher.model=dbof"]``),
    values as written (quotes removed). The key keeps a package (``model@distill.teacher.model``)
    but not the ``+``/``++`` of an addition; a deletion ``~key`` gives the value ``~``
    (``~value`` for ``~key=value``)."""
    parser = OverridesParser.create()
    result = {}
    for line in lines:
        override = parser.parse_override(line)
        key = override.key_or_group + (f"@{override.package}" if override.package else "")
        value = override.value()
        # Parsed strings lose their quotes and escapes; anything else (numbers, booleans, null,
        # lists) stays as typed, where the parser would normalize it (1.0e-2 -> 0.01).
        text = value if isinstance(value, str) else line.partition("=")[2].strip()
        result[key] = "~" + text if override.is_delete() else text
    return result


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{value:.4f}"
    if value is None or value is pd.NA:
        return ""
    return str(value).replace("|", r"\|")


if __name__ == "__main__":
    sys.exit(main())
