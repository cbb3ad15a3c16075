"""vidistill.analysis.seeds and the figures drawn from it: statistics over seeds computed by
hand, and what the figures draw (points, error bars, bands, legends) on hand-made runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from vidistill import analysis

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

T_975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2): the 95% t-interval of 3 values


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def by_hand_sd(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


def run(method, frames, seed, gap, family="HRNN", sampler="uniform", status="done", **extra):
    return {
        "status": status,
        "method": method,
        "family": family,
        "sampler": sampler,
        "frames": frames,
        "seed": str(seed),
        "test/gap": gap,
        **extra,
    }


UNIFORM_6 = [0.30, 0.34, 0.41]
UNIFORM_10 = [0.45, 0.47, 0.46]
FIRST_6 = [0.20, 0.26]


def fewer_frames_runs() -> pd.DataFrame:
    rows = [run("Uniform-k", 6, seed, gap) for seed, gap in enumerate(UNIFORM_6)]
    rows += [run("Uniform-k", 10, seed, gap) for seed, gap in enumerate(UNIFORM_10)]
    rows += [run("First-k", 6, seed, gap, sampler="first") for seed, gap in enumerate(FIRST_6)]
    rows.append(run("Serial Lrep, Lpred, LCE", 6, 0, 0.5))
    rows.append(run("All frames", 300, 0, 0.9, sampler="all"))  # a teacher: not a point
    # Not finished (crashed, or still running): its values do not count.
    rows.append(run("First-k", 6, 2, 0.99, sampler="first", status="missing"))
    frame = pd.DataFrame(rows)
    frame["frames"] = frame["frames"].astype("Int64")
    return frame


def errorbar_points(container) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, half-width of each vertical error bar) of an ``ax.errorbar`` container."""
    line, _, bars = container.lines
    x, y = (np.asarray(values, dtype=float) for values in line.get_data())
    if not bars:
        return x, y, np.zeros_like(y)
    segments = bars[0].get_segments()
    return x, y, np.array([(segment[1][1] - segment[0][1]) / 2 for segment in segments])


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def test_spread_is_the_sample_sd_or_the_t_interval_computed_by_hand():
    values = [0.30, 0.34, 0.41]
    stats = analysis.spread(values)
    assert stats["mean"] == pytest.approx(sum(values) / 3)
    assert stats["sd"] == pytest.approx(by_hand_sd(values))
    assert stats["err"] == stats["sd"] and stats["n"] == 3
    interval = analysis.spread(values, kind="ci")
    assert interval["err"] == pytest.approx(T_975_2 * by_hand_sd(values) / math.sqrt(3))
    # NaN (a run without the metric) is left out; one value has no error bar; none, no mean.
    assert analysis.spread([0.30, np.nan, 0.34, 0.41]) == stats
    single = analysis.spread([0.5])
    assert single["mean"] == 0.5 and single["n"] == 1
    assert math.isnan(single["sd"]) and math.isnan(single["err"])
    assert analysis.spread([])["n"] == 0 and math.isnan(analysis.spread([])["mean"])
    with pytest.raises(ValueError, match="sd, ci"):
        analysis.spread(values, kind="se")


def test_over_seeds_groups_the_finished_runs_of_each_arm():
    runs = fewer_frames_runs()
    stats = analysis.over_seeds(runs, "test/gap", ["method", "frames"])
    assert list(zip(stats["method"], stats["frames"], strict=True)) == [
        ("Uniform-k", 6),
        ("Uniform-k", 10),
        ("First-k", 6),
        ("Serial Lrep, Lpred, LCE", 6),
        ("All frames", 300),
    ]
    first = stats.iloc[2]
    assert first["n"] == 2  # the missing run is not counted
    assert first["mean"] == pytest.approx(0.23) and first["err"] == pytest.approx(
        by_hand_sd(FIRST_6)
    )
    assert stats["n"].tolist() == [3, 3, 2, 1, 1]
    # An arm without a value of the metric is left out.
    runs.loc[runs["method"] == "Serial Lrep, Lpred, LCE", "test/gap"] = np.nan
    assert "Serial Lrep, Lpred, LCE" not in set(
        analysis.over_seeds(runs, "test/gap", ["method"])["method"]
    )


def test_seed_table_prints_mean_and_error_bar_per_metric():
    runs = fewer_frames_runs().assign(**{"test/map": lambda frame: frame["test/gap"] / 2})
    runs.loc[0, "test/map"] = np.nan  # one seed without mAP: its GAP still counts
    table = analysis.seed_table(runs, ["test/gap", "test/map"], ["method", "frames"])
    row = table.iloc[0]
    assert (row["method"], row["frames"], row["n"]) == ("Uniform-k", 6, 3)
    mean, sd = sum(UNIFORM_6) / 3, by_hand_sd(UNIFORM_6)
    assert row["test/gap"] == f"{mean:.4f} ± {sd:.4f}"
    assert row["test/map"] == f"{0.375 / 2:.4f} ± {by_hand_sd([0.17, 0.205]):.4f}"
    assert table.iloc[3]["test/gap"] == "0.5000"  # one run: no error bar
    assert analysis.mean_sd(math.nan, 0.1) == ""


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def test_plot_vs_frames_draws_the_mean_and_sd_of_each_point_and_skips_missing_arms():
    runs = fewer_frames_runs()
    teachers = pd.DataFrame(
        {"family": ["HRNN"] * 3, "seed": ["0", "1", "2"], "test/gap": [0.55, 0.57, 0.56]}
    )
    methods = ["Uniform-k", "Random-k", "Serial Lrep, Lpred, LCE"]  # no Random-k run: skipped
    ax = analysis.plot_vs_frames(runs, "test/gap", teachers, methods=methods)
    assert len(ax.containers) == 2  # Uniform-k and the student; First-k was not asked for
    x, y, err = errorbar_points(ax.containers[0])
    assert x.tolist() == [6, 10]
    np.testing.assert_allclose(y, [np.mean(UNIFORM_6), np.mean(UNIFORM_10)])
    np.testing.assert_allclose(err, [by_hand_sd(UNIFORM_6), by_hand_sd(UNIFORM_10)])
    x, y, err = errorbar_points(ax.containers[1])
    assert x.tolist() == [6] and y.tolist() == [0.5] and err.tolist() == [0.0]  # one seed
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "Uniform-k (n=3)" in labels and "Serial Lrep, Lpred, LCE (n=1)" in labels
    assert "HRNN teacher, all frames (n=3)" in labels
    # The teachers: a line at their mean and a band of one sd either side.
    (band,) = ax.patches
    low, high = band.get_y(), band.get_y() + band.get_height()
    assert (low + high) / 2 == pytest.approx(0.56)
    assert (high - low) / 2 == pytest.approx(by_hand_sd([0.55, 0.57, 0.56]))
    # Every method when none is named (the all-frames run is not a point).
    assert len(analysis.plot_vs_frames(runs, "test/gap").containers) == 3


def test_plot_vs_temperature_draws_mixture_lines_and_other_arms_as_bands():
    rows = []
    for seed, (t0, t20) in enumerate([(0.70, 0.75), (0.72, 0.76), (0.71, 0.74)]):
        for temperature, gap in ((0.0, t0), (20.0, t20)):
            rows.append(
                {
                    **run(f"Online T={temperature:g}", 30, seed, gap, family="MixNeXtVLAD[3]"),
                    "temperature": temperature,
                    "params": 5_000_000,
                }
            )
        rows.append(
            {
                **run("Online T=20", 30, seed, 0.78 + seed / 100, family="MixNeXtVLAD[4, 3]"),
                "temperature": 20.0,
                "params": 20_000_000,
            }
        )
    rows.append(
        {
            **run("Uniform-k", 30, 0, 0.69, family="NeXtVLAD"),
            "temperature": np.nan,
            "params": 1_900_000,
        }
    )
    rows.append(
        {
            **run("Uniform-k", 30, 1, np.nan, family="NeXtVLAD", status="missing"),
            "temperature": np.nan,
            "params": pd.NA,
        }
    )
    runs = pd.DataFrame(rows)
    ax = analysis.plot_vs_temperature(runs, "test/gap", kind="ci")
    (line,) = ax.containers  # one family trained at several T
    x, y, err = errorbar_points(line)
    assert x.tolist() == [0.0, 20.0]
    np.testing.assert_allclose(y, [0.71, 0.75])
    np.testing.assert_allclose(err, [T_975_2 * 0.01 / math.sqrt(3)] * 2)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == [
        "MixNeXtVLAD[4, 3], T=20 (n=3)",
        "NeXtVLAD, 1.9M parameters (n=1)",
        "MixNeXtVLAD[3] (n=3)",
    ]
    assert len(ax.patches) == 1  # a band for MODNeXtVLAD; none for the single run
    bands = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert [line.get_ydata()[0] for line in bands] == pytest.approx([0.79, 0.69])


def write_log(run_dir: Path, rows: list[tuple[int, float, float]]) -> Path:
    """A Lightning CSV log with train/bce/level0 and train/kl/level1 at the given steps."""
    path = run_dir / "csv" / "metrics.csv"
    path.parent.mkdir(parents=True)
    lines = ["epoch,step,train/bce/level0,train/kl/level1,val/gap"]
    lines += [f"0,{step},{bce},{kl}," for step, bce, kl in rows]
    path.write_text("\n".join(lines) + "\n")
    return run_dir


def test_curves_over_seeds_average_each_term_per_step(tmp_path):
    first = write_log(tmp_path / "0", [(0, 4.0, 0.1), (1, 3.0, 0.2)])
    second = write_log(tmp_path / "1", [(0, 6.0, 0.3), (1, 5.0, 0.4), (2, 4.0, 0.5)])
    curves = analysis.curves_over_seeds([first, second])
    bce = curves[curves["term"] == "train/bce/level0"]
    assert bce["step"].tolist() == [0, 1, 2] and bce["n"].tolist() == [2, 2, 1]
    np.testing.assert_allclose(bce["mean"], [5.0, 4.0, 4.0])
    np.testing.assert_allclose(bce["sd"][:2], [by_hand_sd([4.0, 6.0])] * 2)
    assert set(curves["term"]) == {"train/bce/level0", "train/kl/level1"}  # not val/gap
    fig, (label, distillation, none) = plt.subplots(1, 3)
    analysis.plot_curves(curves, "/bce/", "label loss", ax=label)
    (mean,) = label.lines
    np.testing.assert_allclose(mean.get_ydata(), [5.0, 4.0, 4.0])
    assert [text.get_text() for text in label.get_legend().get_texts()] == [
        "train/bce/level0 (n=1-2)"
    ]
    assert len(label.collections) == 1  # the band of one sd
    analysis.plot_curves(analysis.curves_over_seeds([first]), "/kl/", "kl", ax=distillation)
    assert len(distillation.lines) == 1 and not distillation.collections  # one run: no band
    analysis.plot_curves(curves, "train/l2", "regularization loss", ax=none)
    assert not none.lines and none.texts[0].get_text() == "no train/l2 term logged"


def test_plot_arms_puts_each_arm_on_its_row_with_its_error_bar():
    runs = fewer_frames_runs()
    stats = analysis.over_seeds(runs[runs["frames"] == 6], "test/gap", ["method"])
    reference = pd.Series({"mean": 0.6, "err": 0.02, "n": 3})
    ax = analysis.plot_arms(stats, ["method"], "test/gap", reference, "teacher")
    (container,) = ax.containers
    line, _, bars = container.lines
    np.testing.assert_allclose(line.get_xdata(), [np.mean(UNIFORM_6), 0.23, 0.5])
    widths = [(segment[1][0] - segment[0][0]) / 2 for segment in bars[0].get_segments()]
    np.testing.assert_allclose(widths, [by_hand_sd(UNIFORM_6), by_hand_sd(FIRST_6), 0.0])
    # Top to bottom in the order of stats, each named with its n.
    ticks = zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
    rows = {label.get_text(): y for label, y in ticks}
    assert sorted(rows, key=rows.get, reverse=True) == [
        "Uniform-k (n=3)",
        "First-k (n=2)",
        "Serial Lrep, Lpred, LCE (n=1)",
    ]
    # Each arm's point on its own row.
    names = [f"{method} (n={n})" for method, n in zip(stats["method"], stats["n"], strict=True)]
    assert line.get_ydata().tolist() == [rows[name] for name in names]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["teacher (n=3)"]


# --------------------------------------------------------------------------------------------
# Records: teachers, members, the ablation, the evidence's sweeps
# --------------------------------------------------------------------------------------------


def write_record(directory: Path, record: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps(record))
    return directory


def test_recorded_teachers_are_read_from_the_students_records(tmp_path):
    moved = tmp_path / "runs" / "teachers" / "HRNN-0"
    write_record(moved, {"metrics": {"test/gap": 0.55}, "config": {}})
    teacher_0 = {"directory": "/elsewhere/runs/teachers/HRNN-0", "metrics": {}}
    teacher_1 = {"directory": "/elsewhere/runs/teachers/HRNN-1", "metrics": {}}
    paths = [
        write_record(tmp_path / "runs" / "students" / name, {"teacher": teacher})
        for name, teacher in (("a", teacher_0), ("b", teacher_0), ("c", teacher_1))
    ]
    paths.append(write_record(tmp_path / "runs" / "baselines" / "d", {}))  # no teacher
    runs = pd.DataFrame(
        {
            "status": "done",
            "path": [str(path) for path in paths],
            "family": "HRNN",
            "seed": ["0", "0", "1", "0"],
            "test/gap": [0.4, 0.5, 0.45, 0.3],
            "teacher/test/gap": [0.55, 0.55, 0.57, np.nan],
        }
    )
    teachers = analysis.recorded_teachers(runs)
    assert teachers["teacher"].tolist() == [teacher_0["directory"], teacher_1["directory"]]
    assert teachers["students"].tolist() == [2, 1] and teachers["seed"].tolist() == ["0", "1"]
    assert teachers["test/gap"].tolist() == [0.55, 0.57]
    # The first teacher moved along with the runs (<study>/runs/teachers/<name>), the other
    # is nowhere.
    assert analysis.moved_directory(Path(teacher_0["directory"]), paths[0]) == moved
    assert analysis.moved_directory(Path(teacher_1["directory"]), paths[0]) is None


def test_member_scores_are_the_mixture_and_each_member_alone():
    runs = pd.DataFrame(
        [
            {
                **run("Online T=20", 30, seed, gap, family="Mix"),
                "test/member0/gap": m0,
                "test/member1/gap": m1,
            }
            for seed, (gap, m0, m1) in enumerate([(0.8, 0.7, 0.72), (0.82, 0.71, 0.74)])
        ]
        + [run("Uniform-k", 30, 0, 0.7, family="NeXtVLAD")]  # a single model: no members
    )
    scores = analysis.member_scores(runs, "test", "gap")
    assert set(scores["family"]) == {"Mix"} and len(scores) == 6
    stats = analysis.over_seeds(scores, "value", ["member"])
    assert stats["member"].tolist() == ["mixture", "member 0", "member 1"]
    np.testing.assert_allclose(stats["mean"], [0.81, 0.705, 0.73])
    assert analysis.member_scores(runs, "val", "gap").empty


def test_ablation_table_and_the_study_sweeps(tmp_path):
    runs = tmp_path / "results" / "mod" / "runs"
    for seed, combined in ((0, 0.9), (1, 0.92)):
        job = runs / "ablation" / f"seed={seed}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nablation:\n  model: nextvlad\n")
        table = {
            "video_only": {"map_at_k": 0.6, "note": "x"},
            "combined_finetuned": {"map_at_k": combined},
        }
        (job / "ablation.json").write_text(json.dumps(table))
    unfinished = runs / "ablation" / "seed=2" / ".hydra"
    unfinished.mkdir(parents=True)
    (unfinished / "config.yaml").write_text("seed: 2\nablation: {}\n")
    write_record(runs / "temperature" / "seed=0,variant=mix_t0", {})
    (runs / "temperature" / "seed=0,variant=mix_t0" / ".hydra").mkdir()
    (runs / "temperature" / "seed=0,variant=mix_t0" / ".hydra" / "config.yaml").write_text(
        "seed: 0\n"
    )
    ablation = analysis.ablation_table([runs / "ablation"])
    assert ablation["seed"].tolist() == ["0", "0", "1", "1"]
    assert "note" not in ablation  # numbers only
    stats = analysis.over_seeds(ablation, "map_at_k", ["variant"])
    assert stats["variant"].tolist() == ["video_only", "combined_finetuned"]
    assert stats["mean"].tolist() == pytest.approx([0.6, 0.91])
    assert analysis.is_ablation_sweep(runs / "ablation")
    assert analysis.is_ablation_sweep(unfinished.parent)  # no ablation.json yet
    assert not analysis.is_ablation_sweep(runs / "temperature")
    assert analysis.ablation_table([runs / "temperature"]).empty
    # The study's sweeps in its order, those that exist (no finetune here).
    assert analysis.study_sweeps("mod", root=tmp_path) == [runs / "temperature", runs / "ablation"]
