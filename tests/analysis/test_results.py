"""Collecting a sweep's runs into a table: hand-built run trees, a real Hydra multirun, the
markdown rendering and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hydra_helpers import run_sweep
from vidistill.analysis import costs, results
from vidistill.analysis.results import collect, main, to_markdown

NAN = float("nan")


def write_run(
    directory: Path,
    overrides: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    **record: object,
) -> None:
    """A run directory as train.py leaves it: Hydra's overrides when ``overrides`` is given, a
    metrics.json when ``metrics`` is (a crashed job has only the former)."""
    directory.mkdir(parents=True)
    if overrides is not None:
        (directory / ".hydra").mkdir()
        (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (directory / "metrics.json").write_text(json.dumps({"metrics": metrics, **record}))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A multirun directory: jobs 2 and 10 done, job 3 crashed after training its teacher,
    job 4 a finished serial run with its teacher."""
    root = tmp_path / "multirun"
    write_run(
        root / "10",
        ["k=10", "model=logistic"],
        {"val/gap": 0.625, "test/gap": 0.5},
        params=4020,
        wall_time=20.5,
        epochs=3,
        global_step=30,
    )
    write_run(
        root / "2",
        ["k=3", "model=logistic"],
        {"val/gap": 0.25, "test/gap": 0.125},
        params=4020,
        wall_time=10.25,
        epochs=3,
    )
    (root / "2" / "csv" / "version_0").mkdir(parents=True)  # logs: not runs of their own
    (root / "2" / "csv" / "version_0" / "metrics.csv").write_text("epoch,val/gap\n")
    write_run(root / "3", ["k=5", "model=hrnn", "distill=serial"])
    write_run(root / "3" / "teacher", metrics={"val/gap": 0.75}, params=9000, wall_time=5.0)
    write_run(
        root / "4",
        ["k=5", "model=hrnn", "distill=serial", "+model@distill.teacher.model=dbof", "T=1.0e-2"],
        {"val/gap": 0.5, "test/gap": 0.375},
        params=3000,
        wall_time=40.0,
        epochs=2,
    )
    write_run(root / "4" / "teacher", metrics={"val/gap": 0.875}, params=9000, wall_time=15.0)
    (root / "multirun.yaml").write_text("hydra: {}\n")  # Hydra's sweep-level file
    return root


def test_collect_a_multirun_directory(sweep):
    expected = pd.DataFrame(
        {
            "run": ["2", "3", "4", "10"],
            "status": ["done", "missing", "done", "done"],
            "k": ["3", "5", "5", "10"],
            "model": ["logistic", "hrnn", "hrnn", "logistic"],
            "distill": [NAN, "serial", "serial", NAN],
            "model@distill.teacher.model": [NAN, NAN, "dbof", NAN],
            "T": [NAN, NAN, "1.0e-2", NAN],  # as typed, not as parsed (0.01)
            "val/gap": [0.25, NAN, 0.5, 0.625],
            "test/gap": [0.125, NAN, 0.375, 0.5],
            "teacher/val/gap": [NAN, 0.75, 0.875, NAN],
            "params": pd.array([4020, None, 3000, 4020], dtype="Int64"),
            "wall_time": [10.25, NAN, 40.0, 20.5],
            "epochs": pd.array([3, None, 2, 3], dtype="Int64"),
        }
    )
    pd.testing.assert_frame_equal(collect(sweep), expected)


def test_collect_a_plain_tree_of_runs(tmp_path):
    """No Hydra directories: every metrics.json is a run, except a teacher inside a run."""
    write_run(tmp_path / "b" / "run", metrics={"val/gap": 0.5}, params=7, wall_time=1.0)
    write_run(tmp_path / "a", metrics={"val/gap": 0.25}, epochs=1)
    write_run(tmp_path / "a" / "teacher", metrics={"val/gap": 0.75})
    frame = collect(tmp_path)
    assert list(frame.columns) == [
        "run",
        "status",
        "val/gap",
        "teacher/val/gap",
        "params",
        "wall_time",
        "epochs",
    ]
    assert frame["run"].tolist() == ["a", "b/run"]
    assert frame["teacher/val/gap"].tolist()[0] == 0.75
    assert collect(tmp_path / "a")["run"].tolist() == ["."]  # a single run directory
    with pytest.raises(FileNotFoundError, match="no such directory"):
        collect(tmp_path / "nowhere")


def test_flops_at_the_frames_each_run_sees(tmp_path):
    """DBoF's paper count is frames x 1024 x cluster_size; two seeds of one model count once."""
    backbone = {"_target_": "vidistill.models.DBoF", "num_classes": 3, "cluster_size": 8}
    backbone |= {"hidden_size": 4, "num_mixtures": 1}
    data = {"mode": "frame", "sampler": "uniform", "k": 5, "stride": None, "max_frames": 12}
    configs = {
        "0": data,
        "1": data,  # another seed of job 0
        "2": {**data, "sampler": "all"},  # max_frames
        "3": {**data, "sampler": "stride", "k": None, "stride": 5},  # frames 0, 5, 10
        "4": {**data, "mode": "segment"},  # 5-frame segments
    }
    for name, data_config in configs.items():
        config = {"model": {"backbone": backbone}, "data": data_config}
        write_run(tmp_path / name, metrics={}, config=config)
    write_run(tmp_path / "5", ["k=5"])  # crashed: nothing to count
    costs._count_flops.cache_clear()
    frame = collect(tmp_path, flops=True)
    paper = [value / (1024 * 8) for value in frame["flops_paper"].dropna()]
    assert paper == [5, 5, 12, 3, 5]
    assert frame["flops_total"].iloc[:5].gt(frame["flops_paper"].iloc[:5]).all()
    assert frame["flops_total"].isna().tolist() == [False] * 5 + [True]
    assert costs._count_flops.cache_info().misses == 3  # (backbone, 5), (.., 12), (.., 3)


def test_to_markdown():
    frame = pd.DataFrame(
        {
            "run": ["2", "10"],
            "k": ["3", "a|b"],
            "val/gap": [0.123456, NAN],
            "params": pd.array([4020, None], dtype="Int64"),
            "epochs": [3, 12],
        }
    )
    assert to_markdown(frame) == "\n".join(
        [
            "| run | k    | val/gap | params | epochs |",
            "|-----|------|--------:|-------:|-------:|",
            "| 2   | 3    |  0.1235 |   4020 |      3 |",
            "| 10  | a\\|b |         |        |     12 |",
        ]
    )
    assert to_markdown(frame, ["epochs", "run"]).splitlines()[2] == "|      3 | 2   |"
    with pytest.raises(ValueError, match="unknown columns: nope"):
        to_markdown(frame, ["run", "nope"])


def test_command_line(sweep, tmp_path, capsys):
    assert main([str(sweep), "--columns", "run,status,val/gap"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "| run | status  | val/gap |",
        "|-----|---------|--------:|",
        "| 2   | done    |  0.2500 |",
        "| 3   | missing |         |",
        "| 4   | done    |  0.5000 |",
        "| 10  | done    |  0.6250 |",
    ]
    (tmp_path / "empty").mkdir()
    for argv in ([str(tmp_path / "empty")], [str(sweep), "--columns", "run,nope"]):
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert error.startswith("python -m vidistill.analysis.results: error: ")
        assert error.count("\n") == 1


@pytest.mark.slow
def test_collect_a_real_multirun(tmp_path):
    """``train.py -m ... k=3,5``: two logistic jobs of one epoch, then their table."""
    run_sweep(tmp_path, ["model=logistic", "data.sampler=uniform", "k=3,5"])
    frame = collect(tmp_path / "multirun", flops=True)
    assert frame["run"].tolist() == ["0", "1"]
    assert frame["status"].tolist() == ["done", "done"]
    assert frame["k"].tolist() == ["3", "5"]
    assert frame["model"].tolist() == ["logistic", "logistic"]
    assert frame["val/gap"].between(0.0, 1.0).all()
    assert "test/gap" not in frame
    assert (frame["params"] > 0).all()
    assert (frame["flops_paper"] == 0).all()  # frame averaging takes no multiplications
    assert (frame["flops_total"] > 0).all()
    assert (frame["wall_time"] > 0).all()
    assert frame["epochs"].tolist() == [1, 1]
    # the sweep's ~20 constant overrides (tiny data, paths...) are not "varying"; k is
    varying = results.varying_columns(frame)
    assert "k" in varying and "model" not in varying and "data.generator.num_train" not in varying
    assert varying[:2] == ["run", "status"] and "val/gap" in varying


# -- arms over seeds -------------------------------------------------------------------------


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    """Two arms (uniform, random at k=10) over seeds 0-2, plus a lone third arm; the random
    arm's seed 2 crashed."""
    root = tmp_path / "seeds"
    gaps = {"uniform": [0.70, 0.72, 0.71], "random": [0.66, 0.69, None]}
    job = 0
    for sampler, values in gaps.items():
        for seed, value in enumerate(values):
            metrics = None if value is None else {"test/gap": value, "test/map": value - 0.1}
            write_run(root / str(job), [f"data.sampler={sampler}", "k=10", f"seed={seed}"], metrics)
            job += 1
    write_run(root / str(job), ["data.sampler=first", "k=10", "seed=0"], {"test/gap": 0.3})
    return root


def test_summarize_groups_runs_by_arm_with_mean_sd_and_n(seeded):
    table = collect(seeded, by_arm=True)
    assert list(table["data.sampler"]) == ["uniform", "random", "first"]  # k is constant
    assert "k" not in table and "seed" not in table
    uniform, random, first = (row for _, row in table.iterrows())
    assert uniform["n"] == 3 and uniform["seeds"] == "0 1 2"
    assert uniform["test/gap"] == pytest.approx(0.71)
    assert uniform["test/gap sd"] == pytest.approx(0.01)  # sample sd (n - 1)
    assert random["n"] == 2 and random["test/gap"] == pytest.approx(0.675)
    assert random["test/gap sd"] == pytest.approx(0.0212132, rel=1e-5)
    assert first["n"] == 1 and pd.isna(first["test/gap sd"]) and pd.isna(first["test/map"])


def test_paired_difference_over_common_seeds(seeded):
    table = collect(seeded)
    diff = results.paired_difference(
        table, "test/gap", {"data.sampler": "uniform"}, {"data.sampler": "random"}
    )
    # Seeds 0 and 1 pair up (seed 2 of random crashed): differences 0.04 and 0.03.
    assert diff["n"] == 2 and diff["mean"] == pytest.approx(0.035)
    assert diff["sd"] == pytest.approx(0.00707107, rel=1e-5)
    half = 12.7062047 * 0.00707107 / 2**0.5  # t(0.975, 1 dof) * sd / sqrt(n)
    assert diff["low"] == pytest.approx(0.035 - half, rel=1e-5)
    assert diff["high"] == pytest.approx(0.035 + half, rel=1e-5)
    lone = results.paired_difference(
        table, "test/gap", {"data.sampler": "first"}, {"data.sampler": "uniform"}
    )
    assert lone["n"] == 1 and lone["mean"] == pytest.approx(-0.4) and pd.isna(lone["low"])
    with pytest.raises(ValueError, match="several runs of one seed"):
        results.paired_difference(table, "test/gap", {"k": "10"}, {"data.sampler": "first"})
    with pytest.raises(ValueError, match="unknown columns: model"):
        results.paired_difference(table, "test/gap", {"model": "x"}, {"k": "10"})


def test_runs_without_a_seed_override_take_their_configs(tmp_path):
    write_run(tmp_path / "a", ["k=1"], {"val/gap": 0.5}, config={"seed": 7})
    assert list(collect(tmp_path)["seed"]) == ["7"]


def test_command_line_by_arm_and_compare(seeded, capsys):
    assert main([str(seeded), "--by-arm", "--columns", "test/gap"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("|")[1:-1] == [
        " data.sampler ",
        " n ",
        " seeds ",
        " test/gap ",
        " test/gap sd ",
    ]
    assert "| uniform      | 3 | 0 1 2 |   0.7100 |      0.0100 |" in lines
    arms = ["data.sampler=uniform k=10", "data.sampler=random k=10"]
    assert main([str(seeded), "--compare", *arms]) == 0
    out = capsys.readouterr().out
    assert "| test/gap | 0.0350 |" in out and "| test/map | 0.0350 |" in out
    assert main([str(seeded), "--compare", "data.sampler", "k=10"]) == 2
    assert "an arm is space-separated key=value" in capsys.readouterr().err
