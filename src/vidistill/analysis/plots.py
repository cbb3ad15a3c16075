"""The notebooks' figures (matplotlib; each draws on ``ax``, a new figure's axes when None, and
returns it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vidistill.analysis.runs import method_order

# --------------------------------------------------------------------------------------------
# Plots (matplotlib; each draws on ``ax``, a new figure's axes when None, and returns it)
# --------------------------------------------------------------------------------------------


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))[1]


def _method_series(
    runs: pd.DataFrame, columns: Sequence[str]
) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """The finished k-frame runs of a :func:`collect_runs` frame that have every one of
    ``columns``, grouped by backbone family and method, in :func:`method_order`: (method, label,
    rows) per group, the label naming the family only when there are several."""
    done = runs[(runs["status"] == "done") & (runs["sampler"] != "all")].dropna(subset=columns)
    families = done["family"].nunique()
    groups = done.groupby(["family", "method"])
    for family, method in sorted(groups.groups, key=lambda key: (key[0], method_order(key[1]))):
        label = f"{family} {method}" if families > 1 else method
        yield method, label, groups.get_group((family, method))


def plot_vs_frames(
    runs: pd.DataFrame, metric: str, teachers: pd.DataFrame | None = None, ax: Any = None
) -> Any:
    """``metric`` (e.g. ``test/gap``) against the frames k a model sees: one line per method
    (and backbone family) of a :func:`collect_runs` frame, baselines dashed, students solid,
    several runs of a point averaged; the teachers of :func:`teacher_runs` as horizontal
    dotted lines (the teacher-skyline of the paper)."""
    ax = _axes(ax)
    frames = set()
    for method, label, group in _method_series(runs, [metric]):
        points = group.groupby("frames")[metric].mean()
        frames.update(points.index.astype(int))
        ax.plot(
            points.index.astype(int),
            points.to_numpy(dtype=float),
            marker="o",
            linestyle="-" if method.startswith(("Serial ", "Parallel ")) else "--",
            label=label,
        )
    if teachers is not None and len(teachers):
        for family, value in teachers.groupby("family")[metric].mean().items():
            ax.axhline(value, color="black", linestyle=":", label=f"{family} teacher, all frames")
    ax.set_xlabel("frames seen, k")
    ax.set_ylabel(metric)
    ax.set_xticks(sorted(frames))
    ax.legend(fontsize="small")
    return ax


def plot_flops_vs_metric(
    runs: pd.DataFrame,
    metric: str,
    teachers: pd.DataFrame | None = None,
    flops: str = "flops_paper",
    ax: Any = None,
) -> Any:
    """Cost against quality: ``flops`` (multiply-adds per video, from ``collect(...,
    flops=True)``) against ``metric`` for every finished run, one marker series per method,
    each point annotated with its k; the teachers as stars."""
    from matplotlib.ticker import NullFormatter

    ax = _axes(ax)
    for _, label, group in _method_series(runs, [metric, flops]):
        ax.scatter(group[flops].astype(float), group[metric].astype(float), label=label)
        for x, y, k in zip(group[flops], group[metric], group["frames"], strict=True):
            ax.annotate(str(k), (float(x), float(y)), fontsize="x-small", alpha=0.7)
    if teachers is not None and len(teachers):
        shown = teachers.dropna(subset=[metric, flops])
        ax.scatter(
            shown[flops].astype(float),
            shown[metric].astype(float),
            marker="*",
            s=150,
            color="black",
            label="teacher, all frames",
        )
    ax.set_xscale("log")
    # The minor ticks' labels of a log axis spanning less than a decade overlap.
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"multiply-adds per video ({flops})")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    return ax


def plot_vs_temperature(runs: pd.DataFrame, metric: str, ax: Any = None) -> Any:
    """``metric`` against the online-distillation temperature T: one line per mixture family
    (a family trained at one T is a single marker), runs without distillation (the wider
    single model) as horizontal lines labelled with their size."""
    ax = _axes(ax)
    done = runs[runs["status"] == "done"].dropna(subset=[metric])
    online = done[done["temperature"].notna()]
    for family, group in online.groupby("family"):
        points = group.groupby("temperature")[metric].mean()
        ax.plot(points.index, points.to_numpy(dtype=float), marker="o", label=family)
    for _, row in done[done["temperature"].isna()].iterrows():
        size = f", {row['params'] / 1e6:.1f}M parameters" if pd.notna(row.get("params")) else ""
        ax.axhline(float(row[metric]), linestyle="--", color="gray", label=f"{row['family']}{size}")
    ax.set_xlabel("temperature T (0: no distillation)")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    return ax


def plot_curves(curves: pd.DataFrame, contains: str, title: str, ax: Any = None) -> Any:
    """The columns of ``curves`` (a :func:`training_curves` frame) whose name contains
    ``contains`` (``/kl/``, ``/bce/``) against the step; a note on the axes when the run logged
    none (a mixture at T = 0 has no distillation term)."""
    ax = _axes(ax)
    chosen = [column for column in curves.columns if contains in str(column)]
    for column in chosen:
        values = curves[column].dropna()
        ax.plot(values.index, values.to_numpy(dtype=float), label=column)
    if chosen:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, f"no {contains} term logged", ha="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel("step")
    return ax


def plot_tsne(
    teacher: np.ndarray,
    student: np.ndarray,
    classes: np.ndarray,
    class_names: dict[int, str] | None = None,
    ax: Any = None,
) -> Any:
    """The paper's Figure 3: t-SNE positions of teacher [M, 2] and student [M, 2] points of
    the same videos, coloured by each video's class [M]: the teacher in the dark shade, the
    student in the light shade of the class's colour."""
    import matplotlib.pyplot as plt

    ax = _axes(ax)
    palette = plt.get_cmap("tab20")  # pairs: colour 2i dark, 2i + 1 its light shade
    for rank, label in enumerate(np.unique(classes)):
        chosen = classes == label
        name = (class_names or {}).get(int(label), f"class {label}")
        dark, light = palette((2 * rank) % 20), palette((2 * rank + 1) % 20)
        ax.scatter(*teacher[chosen].T, color=dark, s=18, label=f"{name}-t")
        ax.scatter(*student[chosen].T, color=light, s=18, marker="s", label=f"{name}-s")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    return ax
