"""The claims report: verdicts, evidence files rebuilt from run records, the README section
generated from the evidence, and a real --quick study on a tiny set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vidistill.claims import evidence, readme, speed
from vidistill.claims.studies import STUDIES, Arm, Claim, Study, Sweep, ordering

ROOT = Path(__file__).resolve().parents[2]


def write_job(directory: Path, overrides: list[str], metrics: dict, seed: int) -> None:
    """A finished train.py job as the evidence keeps it."""
    directory.mkdir(parents=True)
    (directory / ".hydra").mkdir()
    (directory / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([*overrides, f"seed={seed}"])
    )
    record = {
        "metrics": metrics,
        "overrides": [*overrides, f"seed={seed}"],
        "config": {"seed": seed},
        "git_commit": "abc123",
        "wall_time": 60.0,
    }
    (directory / "metrics.json").write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.01, 0.05, "holds"),
        (-0.05, -0.01, "contradicted"),
        (-0.01, 0.02, "inconclusive"),
        (float("nan"), float("nan"), "inconclusive"),
    ],
)
def test_verdict(low, high, expected):
    assert evidence.verdict(low, high) == expected


TOY = Study(
    name="toy",
    setup="toy data",
    recipe=(),
    sweeps=(Sweep("baselines", ("data.sampler=uniform,first",)), Sweep("students", ("k=10",))),
    claims=(
        *ordering(
            "order",
            "test/gap",
            [
                ("Uniform", Arm("baselines", ("data.sampler=uniform",))),
                ("First", Arm("baselines", ("data.sampler=first",))),
            ],
            ["0.80", "0.70"],
        ),
        Claim(
            "student beats uniform",
            "0.81 vs 0.80",
            "test/gap",
            Arm("students"),
            Arm("baselines", ("data.sampler=uniform",)),
        ),
        Claim(
            "student beats a missing arm",
            "",
            "test/gap",
            Arm("students"),
            Arm("baselines", ("data.sampler=last",)),
        ),
    ),
)


def toy_runs(root: Path) -> None:
    runs = root / "runs"
    values = {"uniform": [0.70, 0.72, 0.71], "first": [0.50, 0.52, 0.49]}
    for sampler, gaps in values.items():
        for seed, gap in enumerate(gaps):
            write_job(
                runs / "baselines" / f"data.sampler={sampler},seed={seed}",
                [f"data.sampler={sampler}"],
                {"test/gap": gap},
                seed,
            )
    for seed, gap in enumerate([0.705, 0.73, 0.70]):  # not consistently above uniform
        write_job(runs / "students" / f"seed={seed}", ["k=10"], {"test/gap": gap}, seed)


def test_evidence_files_from_run_records(tmp_path):
    toy_runs(tmp_path)
    claims = evidence.build_evidence(TOY, tmp_path)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs.columns) == ["arm", "seed", "test/gap", "overrides", "git_commit", "wall_time"]
    assert len(runs) == 9
    assert set(runs["arm"]) == {
        "baselines: data.sampler=uniform",
        "baselines: data.sampler=first",
        "students:",
    }
    assert (runs["git_commit"] == "abc123").all()
    on_disk = pd.read_csv(tmp_path / "claims.csv")
    assert list(on_disk.columns) == evidence.CLAIM_COLUMNS
    order, student, missing = (row for _, row in claims.iterrows())
    assert order["claim"] == "order: Uniform > First" and order["paper_value"] == "0.80 vs 0.70"
    assert order["verdict"] == "holds" and order["n"] == 3
    assert order["mean_a"] == pytest.approx(0.71) and order["sd_a"] == pytest.approx(0.01)
    assert order["diff_mean"] == pytest.approx(0.71 - 0.5033333, rel=1e-6)
    assert student["verdict"] == "inconclusive" and student["diff_low"] < 0 < student["diff_high"]
    assert missing["verdict"] == "not run" and missing["n"] == 0
    text = (tmp_path / "claims.md").read_text()
    assert "seeds 0, 1, 2; 9 runs" in text and "total CPU time 0.1 h" in text
    assert "| order: Uniform > First | 0.80 vs 0.70 | test/gap | 0.7100 ± 0.0100 |" in text
    assert "Verdicts: 1 holds, 1 inconclusive, 1 not run." in text


def test_claims_md_carries_the_notes_and_the_commits_that_made_the_runs(tmp_path):
    toy_runs(tmp_path)
    write_job(tmp_path / "runs" / "students" / "seed=3", ["k=10"], {"test/gap": 0.7}, 3)
    records = sorted((tmp_path / "runs" / "students" / "seed=3").rglob("metrics.json"))
    record = json.loads(records[0].read_text())
    records[0].write_text(json.dumps({**record, "git_commit": "def4567890"}))
    noted = dataclasses.replace(TOY, notes=("The ablation was rerun after a fix.",))
    evidence.build_evidence(noted, tmp_path)
    text = (tmp_path / "claims.md").read_text()
    notes = text.split("Notes:", 1)[1]
    assert "- The ablation was rerun after a fix." in notes
    assert "Runs made at commit(s) abc123 (9 runs), def4567 (1 runs)." in notes


def test_ablation_variants_are_compared_beside_training_runs(tmp_path):
    """A study mixing train.py sweeps with the localization ablation (one ablation.json per
    seed, one row per variant) pairs the ablation's variants by seed."""
    toy_runs(tmp_path)
    for seed, (combined, video) in enumerate([(0.75, 0.50), (0.76, 0.53), (0.77, 0.54)]):
        run = tmp_path / "runs" / "ablation" / f"seed={seed}"
        write_job(run / "video", ["test=false"], {"val/gap": 0.6}, seed)
        table = {"combined_finetuned": {"map_at_k": combined}, "video_only": {"map_at_k": video}}
        (run / "ablation.json").write_text(json.dumps(table))
    variant = {
        name: Arm("ablation", (f"variant={name}",)) for name in ("combined_finetuned", "video_only")
    }
    study = dataclasses.replace(
        TOY,
        sweeps=(*TOY.sweeps, Sweep("ablation", (), script="localize.py")),
        claims=(
            Claim(
                "combined beats video",
                "",
                "test/map_at_k",
                variant["combined_finetuned"],
                variant["video_only"],
            ),
        ),
    )
    (row,) = (row for _, row in evidence.build_evidence(study, tmp_path).iterrows())
    assert row["n"] == 3 and row["verdict"] == "holds"
    assert row["mean_a"] == pytest.approx(0.76) and row["diff_mean"] == pytest.approx(
        (0.25 + 0.23 + 0.23) / 3
    )


def test_readme_section_is_generated_from_the_evidence(tmp_path):
    (tmp_path / "fewer_frames").mkdir()
    (tmp_path / "fewer_frames" / "claims.md").write_text("# Claims: fewer_frames\n\nbody\n")
    page = tmp_path / "README.md"
    page.write_text(f"intro\n{readme.BEGIN}\nold\n{readme.END}\noutro\n")
    readme.write_readme(page, tmp_path)
    text = page.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{readme.END}\noutro\n")
    assert "### Claims: fewer_frames\n\nbody" in text and "old" not in text
    assert "Not run yet (`python -m vidistill.claims run mod`)" in text


def test_the_readme_results_are_the_committed_evidence():
    """No number in the README's results section is typed by hand: it is what the committed
    results/ files give."""
    assert readme.readme_section(ROOT / "README.md") == readme.results_section(ROOT / "results")


def test_the_readme_beyond_section_is_the_committed_evidence(tmp_path):
    section = readme.readme_section(ROOT / "README.md", readme.BEYOND_BEGIN, readme.BEYOND_END)
    assert section == readme.beyond_section(ROOT / "results")
    (tmp_path / "beyond").mkdir()
    (tmp_path / "beyond" / "claims.md").write_text("# Claims: beyond\n\nlearned 0.5\n")
    page = tmp_path / "README.md"
    page.write_text(
        f"{readme.BEGIN}\n{readme.END}\nb\n{readme.BEYOND_BEGIN}\nold\n{readme.BEYOND_END}\n"
    )
    readme.write_readme(page, tmp_path)
    section = readme.readme_section(page, readme.BEYOND_BEGIN, readme.BEYOND_END)
    assert section == "### Claims: beyond\n\nlearned 0.5\n"


def test_readme_bench_section_is_generated_from_the_saved_bench_output(tmp_path):
    """Every saved run of every section, sections in make bench's order, runs in theirs."""
    for run, speedup in (("01-abc1234", "6.36x"), ("02-def5678", "7.01x")):
        (tmp_path / "bench" / run).mkdir(parents=True)
        (tmp_path / "bench" / run / "inference.txt").write_text(
            f"commit {run}\nnextvlad {speedup}\n"
        )
    (tmp_path / "bench" / "01-abc1234" / "data.txt").write_text("records 5.2x\n")
    page = tmp_path / "README.md"
    page.write_text(
        f"a\n{readme.BEGIN}\n{readme.END}\nb\n{readme.BENCH_BEGIN}\nold 9.9x\n{readme.BENCH_END}\nc\n"
    )
    readme.write_readme(page, tmp_path)
    section = readme.readme_section(page, readme.BENCH_BEGIN, readme.BENCH_END)
    assert "old" not in section
    assert section.index("records 5.2x") < section.index("6.36x") < section.index("7.01x")
    assert "`data` (bench/01-abc1234/data.txt):\n\n```text\nrecords 5.2x\n```" in section
    assert page.read_text().endswith(f"{readme.BENCH_END}\nc\n")


def test_the_readme_benchmark_is_the_committed_bench_output():
    section = readme.readme_section(ROOT / "README.md", readme.BENCH_BEGIN, readme.BENCH_END)
    assert section == readme.bench_section(ROOT / "results")


def test_every_claim_names_arms_of_its_studys_sweeps():
    for study in STUDIES.values():
        names = {sweep.name for sweep in study.sweeps}
        for claim in study.claims:
            assert {claim.a.sweep, claim.b.sweep} <= names, claim.claim
            if claim.quick:
                for arm in (claim.a, claim.b):
                    assert study.sweep(arm.sweep).quick is not None, claim.claim


def test_cost_section_compares_a_student_with_its_teacher(tmp_path):
    """claims.md's cost table: the student's multiply-adds at its k frames against its
    teacher's at 300 (the papers' convention), from the configs the runs recorded."""
    backbone = {"_target_": "vidistill.models.DBoF", "num_classes": 3, "cluster_size": 8}
    teacher_dir = tmp_path / "runs" / "teachers" / "DBoF-x"
    teacher_dir.mkdir(parents=True)
    teacher_config = {
        "model": {"backbone": backbone},
        "data": {"sampler": "all", "max_frames": 300},
    }
    (teacher_dir / "metrics.json").write_text(json.dumps({"metrics": {}, "config": teacher_config}))
    student = tmp_path / "runs" / "students" / "k=10,seed=0"
    write_job(student, ["k=10"], {"test/gap": 0.5}, seed=0)
    record = json.loads((student / "metrics.json").read_text())
    record["config"] = {
        "seed": 0,
        "model": {"backbone": backbone},
        "data": {"sampler": "uniform", "k": 10, "max_frames": 300},
    }
    record["teacher"] = {"directory": str(teacher_dir), "metrics": {}}
    (student / "metrics.json").write_text(json.dumps(record))
    study = Study(
        name="cost",
        setup="toy",
        recipe=(),
        sweeps=(Sweep("students", ("k=10",)),),
        claims=(),
        cost=((Arm("students", ("k=10",)), "0.167 vs 5.058"),),
    )
    evidence.build_evidence(study, tmp_path)
    text = (tmp_path / "claims.md").read_text()
    # DBoF's papers' count is 1024 x cluster_size per frame: 10 frames vs 300.
    assert (
        f"| `students: k=10` | 0.167 vs 5.058 | {10 * 8192 / 1e9:.3f} vs {300 * 8192 / 1e9:.3f} |"
        in text
    )
    assert text.count("| not measured |") == 1
    # uint8 features dequantized per 300-frame video: the student's 10 frames, the teacher's 300
    assert f"| {10 * 1152 / 1e3:.1f} vs {300 * 1152 / 1e3:.1f} |" in text

    # Without the runs' checkpoints on this machine nothing is timed (and nothing invented).
    runs = evidence.read_runs(study, tmp_path)
    assert speed.measure_speed(study, runs, tmp_path / "data").empty
    # A measured speed-up is carried into the table, by arm.
    measured = pd.DataFrame(
        [{"arm": "students: k=10", "student_videos_per_s": 700.0, "teacher_videos_per_s": 200.0}]
    ).assign(speedup=3.5, videos=1000)
    speed.write_speed(measured, tmp_path)
    assert speed.read_speed(tmp_path) == {"students: k=10": 3.5}
    evidence.build_evidence(study, tmp_path)
    assert " vs 345.6 | 3.50x |\n" in (tmp_path / "claims.md").read_text()


def test_stopping_a_sweep_stops_its_whole_process_group(tmp_path):
    """A sweep's launcher starts workers of its own; when the study is stopped they must go too
    (they would otherwise keep training after their parent is gone)."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from vidistill.claims import launch

    pid_file = tmp_path / "grandchild.pid"
    # A child that starts a grandchild ignoring SIGTERM, as a busy worker may, then waits.
    script = (
        "import subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(g.pid))\n"
        "time.sleep(600)\n"
    )

    def interrupt_once_started():
        # Not after a fixed delay: on a loaded machine two interpreter starts can take longer.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip():
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    # A shell starts background jobs with SIGINT ignored, and Python then leaves it ignored:
    # the study's Ctrl-C is what is tested, so it gets Python's usual handler here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_once_started, daemon=True).start()
    try:
        with open(tmp_path / "out.log", "w") as output, pytest.raises(KeyboardInterrupt):
            launch.run_as_group([sys.executable, "-c", script], dict(os.environ), output)
    finally:
        signal.signal(signal.SIGINT, previous)
    grandchild = int(pid_file.read_text())
    for _ in range(100):  # killed by SIGKILL after the grace period at the latest
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        # A zombie still answers kill(0): reap if it is ours, else look at its state.
        state = subprocess.run(
            ["ps", "-o", "stat=", "-p", str(grandchild)], capture_output=True, text=True
        ).stdout
        if not state.strip() or state.strip().startswith("Z"):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"process {grandchild} of the stopped sweep is still running")
