"""The notebooks' figures (matplotlib; each draws on ``ax``, a new figure's axes when None, and
returns it). Points of several runs (seeds) are their mean with an error bar of ``kind``
(:data:`vidistill.analysis.seeds.SPREADS`: ``sd``, the sample standard deviation, or ``ci``,
the 95% t-interval of the mean), the number of runs ``n`` in the legend."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vidistill.analysis.runs import method_order
from vidistill.analysis.seeds import over_seeds

# --------------------------------------------------------------------------------------------
# Plots (matplotlib; each draws on ``ax``, a new figure's axes when None, and returns it)
# --------------------------------------------------------------------------------------------


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))[1]


def _legend(ax: Any) -> None:
    """The legend outside the axes, on the right: a figure's lines stay visible."""
    ax.legend(fontsize="small", bbox_to_anchor=(1.02, 1), loc="upper left")


def _n(stats: pd.DataFrame) -> str:
    """``n=3``, or ``n=2-3`` when the points of a line have different counts of runs."""
    low, high = int(stats["n"].min()), int(stats["n"].max())
    return f"n={low}" if low == high else f"n={low}-{high}"


def _errors(stats: pd.DataFrame) -> np.ndarray:
    """The error bars' half-widths, 0 where there is none (a single run)."""
    return np.nan_to_num(stats["err"].to_numpy(dtype=float), nan=0.0)


def _band(ax: Any, stats: pd.Series, label: str, color: Any = None, vertical: bool = False) -> None:
    """A reference as a line at its mean and a shaded band of its error bar (none for one run):
    horizontal, or ``vertical``."""
    line, span = (ax.axvline, ax.axvspan) if vertical else (ax.axhline, ax.axhspan)
    drawn = line(
        float(stats["mean"]),
        color=color,
        linestyle=":",
        label=f"{label} (n={int(stats['n'])})",
    )
    if not np.isnan(stats["err"]):
        low, high = stats["mean"] - stats["err"], stats["mean"] + stats["err"]
        span(low, high, color=drawn.get_color(), alpha=0.15)


def _k_frame_stats(
    runs: pd.DataFrame, metric: str, by: Sequence[str], kind: str
) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """The :func:`over_seeds` rows of the k-frame runs (not the all-frames ones) grouped by
    ``family``, ``method`` and ``by``, per backbone family and method in :func:`method_order`:
    (legend label, method, rows); the label names the family only when there are several and
    ends with ``n``."""
    k_runs = runs[runs["sampler"] != "all"]
    stats = over_seeds(k_runs, metric, ["family", "method", *by], kind)
    several = stats["family"].nunique() > 1
    groups = stats.groupby(["family", "method"], sort=False)
    for (family, method), rows in sorted(
        groups, key=lambda item: (item[0][0], method_order(item[0][1]))
    ):
        yield f"{f'{family} ' if several else ''}{method} ({_n(rows)})", method, rows


def plot_vs_frames(
    runs: pd.DataFrame,
    metric: str,
    teachers: pd.DataFrame | None = None,
    methods: Sequence[str] | None = None,
    kind: str = "sd",
    ax: Any = None,
) -> Any:
    """``metric`` (e.g. ``test/gap``) against the frames k a model sees, over seeds: one line
    per method (and backbone family) of a :func:`collect_runs` frame (only ``methods`` when
    given; those without a finished run are skipped), each point the mean of its runs with an
    error bar of ``kind`` (:func:`over_seeds`), baselines dashed, students solid, ``n`` in the
    legend. The teachers (a :func:`recorded_teachers` frame, all frames) as a horizontal line
    at their mean and a band of their error bar (the paper's teacher-skyline)."""
    ax = _axes(ax)
    frames = set()
    for label, method, line in _k_frame_stats(runs, metric, ["frames"], kind):
        if methods is not None and method not in methods:
            continue
        line = line.sort_values("frames")
        frames.update(line["frames"].astype(int))
        ax.errorbar(
            line["frames"].astype(int),
            line["mean"].to_numpy(dtype=float),
            yerr=_errors(line),
            marker="o",
            capsize=3,
            linestyle="-" if method.startswith(("Serial ", "Parallel ")) else "--",
            label=label,
        )
    if teachers is not None and metric in teachers:
        for _, teacher in over_seeds(teachers, metric, ["family"], kind).iterrows():
            _band(ax, teacher, f"{teacher['family']} teacher, all frames", color="black")
    ax.set_xlabel("frames seen, k")
    ax.set_ylabel(metric)
    ax.set_xticks(sorted(frames))
    _legend(ax)
    return ax


def plot_arms(
    stats: pd.DataFrame,
    labels: Sequence[str],
    metric: str,
    reference: pd.Series | None = None,
    reference_label: str = "reference",
    ax: Any = None,
) -> Any:
    """Arms side by side: one row per row of ``stats`` (an :func:`over_seeds` frame, top to
    bottom in its order), named by its ``labels`` columns and its ``n``, a marker at the mean
    with a horizontal error bar; ``reference`` (a row of another :func:`over_seeds` frame,
    e.g. the teachers) as a vertical line and band."""
    ax = _axes(ax)
    positions = np.arange(len(stats))[::-1]
    names = [
        " ".join(str(row[column]) for column in labels) + f" (n={int(row['n'])})"
        for _, row in stats.iterrows()
    ]
    ax.errorbar(
        stats["mean"].to_numpy(dtype=float),
        positions,
        xerr=_errors(stats),
        marker="o",
        linestyle="none",
        capsize=3,
    )
    ax.set_yticks(positions, names)
    if reference is not None:
        _band(ax, reference, reference_label, color="black", vertical=True)
        _legend(ax)
    ax.set_xlabel(metric)
    return ax


def plot_flops_vs_metric(
    runs: pd.DataFrame,
    metric: str,
    teachers: pd.DataFrame | None = None,
    flops: str = "flops_paper",
    kind: str = "sd",
    ax: Any = None,
) -> Any:
    """Cost against quality: ``flops`` (multiply-adds per video, from ``collect(...,
    flops=True)``) against ``metric``, one marker per method, family and k (the mean of its
    seeds with an error bar of ``kind``), annotated with its k; the teachers (a
    :func:`recorded_teachers` frame with FLOPs) as stars."""
    from matplotlib.ticker import NullFormatter

    ax = _axes(ax)
    for label, _, group in _k_frame_stats(
        runs.dropna(subset=[flops]), metric, ["frames", flops], kind
    ):
        x, y = group[flops].astype(float), group["mean"].astype(float)
        ax.errorbar(x, y, yerr=_errors(group), marker="o", linestyle="none", capsize=3, label=label)
        for x_, y_, k in zip(x, y, group["frames"], strict=True):
            ax.annotate(str(k), (x_, y_), fontsize="x-small", alpha=0.7)
    if teachers is not None and flops in teachers:
        shown = over_seeds(teachers.dropna(subset=[flops]), metric, ["family", flops], kind)
        if len(shown):
            ax.errorbar(
                shown[flops].astype(float),
                shown["mean"].astype(float),
                yerr=_errors(shown),
                marker="*",
                markersize=12,
                linestyle="none",
                color="black",
                label=f"teacher, all frames ({_n(shown)})",
            )
    ax.set_xscale("log")
    # The minor ticks' labels of a log axis spanning less than a decade overlap.
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"multiply-adds per video ({flops})")
    ax.set_ylabel(metric)
    _legend(ax)
    return ax


def plot_vs_temperature(runs: pd.DataFrame, metric: str, kind: str = "sd", ax: Any = None) -> Any:
    """``metric`` against the online-distillation temperature T, over seeds: one line per
    mixture family trained at several T (each point the mean of its runs with an error bar of
    ``kind``); every other arm (a mixture trained at one T, a single model without
    distillation) as a horizontal line at its mean and a band of its error bar, labelled with
    its T or its size. ``n`` in the legend."""
    ax = _axes(ax)
    stats = over_seeds(runs, metric, ["family", "method", "temperature", "params"], kind)
    online = stats[stats["temperature"].notna()]
    lines = [f for f, group in online.groupby("family") if group["temperature"].nunique() > 1]
    for family in lines:
        line = online[online["family"] == family].sort_values("temperature")
        ax.errorbar(
            line["temperature"].astype(float),
            line["mean"].astype(float),
            yerr=_errors(line),
            marker="o",
            capsize=3,
            label=f"{family} ({_n(line)})",
        )
    others = stats[~stats["family"].isin(lines) | stats["temperature"].isna()]
    for index, (_, arm) in enumerate(others.iterrows(), start=len(lines)):
        if pd.notna(arm["temperature"]):
            label = f"{arm['family']}, T={arm['temperature']:g}"
        elif pd.notna(arm["params"]):
            label = f"{arm['family']}, {arm['params'] / 1e6:.1f}M parameters"
        else:
            label = f"{arm['family']} {arm['method']}"
        _band(ax, arm, label, color=f"C{index % 10}")  # the colours after the lines'
    ax.set_xlabel("temperature T (0: no distillation)")
    ax.set_ylabel(metric)
    _legend(ax)
    return ax


def plot_curves(stats: pd.DataFrame, contains: str, title: str, ax: Any = None) -> Any:
    """The training terms of a :func:`curves_over_seeds` frame whose name contains
    ``contains`` (``/kl/``, ``/bce/``) against the step: the mean over the runs, and a band of
    the error bar where several runs logged the step; a note on the axes when the runs logged
    no such term (a mixture at T = 0 has no distillation term)."""
    ax = _axes(ax)
    terms = [term for term in stats["term"].unique() if contains in str(term)]
    for term in terms:
        curve = stats[stats["term"] == term].sort_values("step")
        mean, err = curve["mean"].to_numpy(dtype=float), curve["err"].to_numpy(dtype=float)
        (line,) = ax.plot(curve["step"], mean, label=f"{term} ({_n(curve)})")
        if np.isfinite(err).any():
            ax.fill_between(
                curve["step"], mean - err, mean + err, color=line.get_color(), alpha=0.2
            )
    if terms:
        _legend(ax)
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
