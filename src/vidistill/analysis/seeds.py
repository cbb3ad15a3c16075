"""Runs over seeds, for the notebooks' tables and figures with error bars: where a study's
committed evidence is (:func:`study_sweeps`), one statistic per arm over its seeds
(:func:`spread`, :func:`over_seeds`, :func:`seed_table`), the teachers as their students'
records name them (:func:`recorded_teachers`), the scores of a mixture's members
(:func:`member_scores`), training curves over seeds (:func:`curves_over_seeds`) and the
localization ablation (:func:`ablation_table`). None of them needs a checkpoint. The figures
are in :mod:`vidistill.analysis.plots`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from vidistill.analysis.results import FLOPS_COLUMNS, METRICS_FILE, flops_of, paired_interval
from vidistill.analysis.runs import project_root, read_log, read_record, training_curves

# What an error bar is: its half-width is the sample standard deviation of the seeds' values,
# or the half-width of the 95% t-interval of their mean.
SPREADS = {"sd": "mean ± sample sd over seeds", "ci": "mean ± 95% t-interval over seeds"}
RESULTS_DIR = "results"  # the committed evidence: results/<study>/runs/<sweep>/<job>
ABLATION_FILE = "ablation.json"  # as vidistill.localization.ablation writes it (torch-free here)
# A mixture's members scored alone at test time: test/member0/gap, ...
MEMBER_COLUMN = re.compile(r"^(?P<split>[^/]+)/member(?P<index>\d+)/(?P<metric>[^/]+)$")


# --------------------------------------------------------------------------------------------
# Where the evidence is
# --------------------------------------------------------------------------------------------


def evidence_root() -> Path:
    """The checkout's root: found from this package's location (an editable install), else
    from the working directory (a notebook's kernel runs in ``notebooks/``)."""
    here = project_root(Path(__file__).parent)
    return here if (here / "conf" / "config.yaml").is_file() else project_root()


def study_sweeps(study: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The sweep directories of a claims study that exist, ``<root>/results/<study>/runs/<sweep>``
    in the study's order (:mod:`vidistill.claims.studies`; ``root``: :func:`evidence_root`).
    The runs a study's jobs share (``runs/teachers``, ``runs/pretrained``) are no sweep."""
    from vidistill.claims.studies import STUDIES

    runs = Path(root or evidence_root()) / RESULTS_DIR / study / "runs"
    return [runs / sweep.name for sweep in STUDIES[study].sweeps if (runs / sweep.name).is_dir()]


def is_ablation_sweep(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` (a run or a sweep of runs) holds localization ablations
    (``localize.py``): a job with an ``ablation.json``, or whose ``.hydra/config.yaml`` has an
    ``ablation`` section (a job not finished yet). Their stages are runs of their own, which
    :func:`vidistill.analysis.runs.collect_runs` would list as runs of the sweep."""
    directory = Path(directory)
    for job in (directory, *(path for path in directory.iterdir() if path.is_dir())):
        config = job / ".hydra" / "config.yaml"
        if (job / ABLATION_FILE).is_file():
            return True
        if config.is_file() and "ablation" in (yaml.safe_load(config.read_text()) or {}):
            return True
    return False


# --------------------------------------------------------------------------------------------
# Statistics over seeds
# --------------------------------------------------------------------------------------------


def spread(values: Any, kind: str = "sd", level: float = 0.95) -> dict[str, float]:
    """``mean``, ``sd`` (sample, NaN for one value), ``n`` and ``err`` of ``values`` (NaN left
    out): the half-width of an error bar, ``sd`` (``kind="sd"``) or the ``level`` t-interval's
    half-width of the mean (``kind="ci"``; NaN for one value). No value: NaN and ``n = 0``."""
    if kind not in SPREADS:
        raise ValueError(f"kind is one of {', '.join(SPREADS)}, got {kind!r}")
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return {"mean": math.nan, "sd": math.nan, "err": math.nan, "n": 0}
    stats = paired_interval(values, level)
    err = stats["sd"] if kind == "sd" else stats["high"] - stats["mean"]
    return {"mean": stats["mean"], "sd": stats["sd"], "err": err, "n": stats["n"]}


def _groups(runs: pd.DataFrame, by: Sequence[str]) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """(values of ``by``, rows) per group of the finished rows of ``runs`` (all rows when it
    has no ``status``), in the order the groups first appear; NaN is a value of its own."""
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    for key, group in done.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(by, key, strict=True)), group


def over_seeds(
    runs: pd.DataFrame, metric: str, by: Sequence[str], kind: str = "sd", level: float = 0.95
) -> pd.DataFrame:
    """One row per group of runs (``by``: the columns naming an arm; its runs differ by seed)
    with a value of ``metric``: the ``by`` columns, then :func:`spread`'s ``mean``, ``sd``,
    ``err`` and ``n``. Only finished runs count; groups without a value are left out."""
    rows = [
        {**key, **spread(group[metric], kind, level)}
        for key, group in _groups(runs.dropna(subset=[metric]), by)
    ]
    table = pd.DataFrame(rows, columns=[*by, "mean", "sd", "err", "n"])
    table["n"] = table["n"].astype(int)
    return table


def mean_sd(mean: float, err: float, digits: int = 4) -> str:
    """``0.4563 ± 0.0070``; the mean alone when there is no error bar, empty for no mean."""
    if mean is None or math.isnan(mean):
        return ""
    return (
        f"{mean:.{digits}f}"
        if err is None or math.isnan(err)
        else f"{mean:.{digits}f} ± {err:.{digits}f}"
    )


def seed_table(
    runs: pd.DataFrame,
    metrics: Sequence[str],
    by: Sequence[str],
    kind: str = "sd",
    digits: int = 4,
) -> pd.DataFrame:
    """A readable table of arms: the ``by`` columns, ``n`` (finished runs with one of the
    ``metrics`` at least) and per metric ``mean ± err`` (:func:`mean_sd`, the error bar of
    ``kind`` over the runs that have it). Arms without any of the metrics are left out."""
    rows = []
    for key, group in _groups(runs.dropna(subset=list(metrics), how="all"), by):
        cells = {}
        for metric in metrics:
            stats = spread(group[metric], kind)
            cells[metric] = mean_sd(stats["mean"], stats["err"], digits)
        rows.append({**key, "n": len(group), **cells})
    return pd.DataFrame(rows, columns=[*by, "n", *metrics])


# --------------------------------------------------------------------------------------------
# Teachers, members, curves, ablation
# --------------------------------------------------------------------------------------------


def recorded_teachers(runs: pd.DataFrame, flops: bool = False) -> pd.DataFrame:
    """The teachers of the finished runs of ``runs`` (a :func:`collect_runs` frame), from their
    records alone: one row per teacher, ``teacher`` (its directory as recorded), ``family`` and
    ``seed`` (its first student's), ``students`` (how many rows of ``runs`` it taught) and its
    metrics as its students recorded them (their ``teacher/<metric>`` columns, unprefixed).
    With ``flops``, ``flops_paper`` and ``flops_total`` at the frames the teacher saw, from its
    own record when its directory is found (where recorded, or moved along with the runs),
    else NA. No checkpoint is read (the committed evidence has none)."""
    prefix = "teacher/"
    metrics = [column for column in runs.columns if str(column).startswith(prefix)]
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    teachers: dict[str, dict[str, Any]] = {}
    for _, row in done.iterrows():
        teacher = (read_record(row["path"]).get("teacher") or {}).get("directory")
        if not teacher:
            continue
        if teacher not in teachers:
            teachers[teacher] = {
                "teacher": teacher,
                "family": row.get("family"),
                "seed": row.get("seed"),
                "students": 0,
                **{column[len(prefix) :]: row[column] for column in metrics},
                **(_teacher_flops(Path(teacher), Path(row["path"])) if flops else {}),
            }
        teachers[teacher]["students"] += 1
    columns = ["teacher", "family", "seed", "students", *(m[len(prefix) :] for m in metrics)]
    columns += list(FLOPS_COLUMNS) if flops else []
    return pd.DataFrame(list(teachers.values()), columns=columns)


def _teacher_flops(recorded: Path, student: Path) -> dict[str, Any]:
    """The FLOPs columns of a teacher, from its own record (NA when it is not found)."""
    directory = moved_directory(recorded, student)
    if directory is None:
        return dict.fromkeys(FLOPS_COLUMNS, pd.NA)
    counts = flops_of(read_record(directory).get("config", {}))
    return {key: counts.get(key, pd.NA) for key in FLOPS_COLUMNS}


def moved_directory(recorded: Path, run: Path) -> Path | None:
    """A run directory named in another run's record (``recorded``, absolute) holding a
    ``metrics.json``: where recorded, else found after the runs were moved (another checkout,
    a copy) as its last two or last one path parts below ``run`` or up to three of its
    parents (``<run>/teacher``, ``<sweep>/teachers/<name>``, ``<study>/runs/teachers/<name>``).
    None when it is nowhere."""
    if (recorded / METRICS_FILE).is_file():
        return recorded
    for base in (run, *list(run.parents)[:3]):
        for depth in (2, 1):
            candidate = base.joinpath(*recorded.parts[-depth:])
            if len(recorded.parts) > depth and (candidate / METRICS_FILE).is_file():
                return candidate
    return None


def member_scores(
    runs: pd.DataFrame, split: str, metric: str, by: Sequence[str] = ("family", "method")
) -> pd.DataFrame:
    """The whole mixture's ``<split>/<metric>`` and each member's alone
    (``<split>/member<i>/<metric>``, scored at test time), in long form: the ``by`` columns,
    ``seed``, ``member`` (``mixture``, ``member 0``, ...) and ``value``; only the finished runs
    that recorded members (mixtures). Empty when none did."""
    members = {
        column: f"member {match['index']}"
        for column in runs.columns
        if (match := MEMBER_COLUMN.match(str(column)))
        and match["split"] == split
        and match["metric"] == metric
    }
    columns = [*by, "seed", "member", "value"]
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    mixtures = done.dropna(subset=list(members), how="all") if members else done.iloc[:0]
    if mixtures.empty:
        return pd.DataFrame(columns=columns)
    names = {f"{split}/{metric}": "mixture", **members}
    long = mixtures.melt(
        id_vars=[*by, "seed"], value_vars=list(names), var_name="member", value_name="value"
    )
    long["member"] = long["member"].map(names)
    return long.dropna(subset=["value"])[columns].reset_index(drop=True)


def curves_over_seeds(
    run_dirs: Sequence[str | os.PathLike], kind: str = "sd", level: float = 0.95
) -> pd.DataFrame:
    """The training terms of several runs of one arm (its seeds; the ``train/...`` columns of
    :func:`training_curves`) averaged per step: one row per (``term``, ``step``) with
    :func:`spread`'s ``mean``, ``sd``, ``err`` and ``n`` (the runs that logged the term at
    that step), steps in order."""
    frames = []
    for directory in run_dirs:
        curves = training_curves(read_log(directory)).reset_index()
        frames.append(curves.melt(id_vars="step", var_name="term", value_name="value"))
    long = pd.concat(frames, ignore_index=True).dropna(subset=["value"])
    long = long.sort_values("step", kind="stable")
    return over_seeds(long, "value", ["term", "step"], kind, level)


def ablation_table(directories: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The localization ablation's results (``localize.py``): one row per job and variant of
    every ``ablation.json`` below ``directories``: ``run`` (the job directory), ``seed`` (from
    its Hydra config), ``variant`` (``video_only``, ``combined_finetuned``, ...) and its
    numeric metrics (``map_at_k``, ``candidate_recall``...). Jobs still running have none."""
    rows = []
    for directory in directories:
        for path in sorted(Path(directory).rglob(ABLATION_FILE)):
            seed = _hydra_seed(path.parent)
            for variant, metrics in json.loads(path.read_text()).items():
                numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
                rows.append({"run": str(path.parent), "seed": seed, "variant": variant, **numbers})
    table = pd.DataFrame(rows)
    return table if rows else pd.DataFrame(columns=["run", "seed", "variant"])


def _hydra_seed(job: Path) -> str | None:
    config = job / ".hydra" / "config.yaml"
    if not config.is_file():
        return None
    seed = (yaml.safe_load(config.read_text()) or {}).get("seed")
    return None if seed is None else str(seed)
