"""The evidence files of a study, rebuilt from its runs.

``results/<study>/runs/<sweep>/<job>/`` holds each run's record (``metrics.json`` and Hydra's
overrides; checkpoints are not kept). From them:

* ``runs.csv``: one row per run: ``arm``, ``seed``, every metric, the run's overrides,
  ``git_commit``, ``wall_time`` (seconds);
* ``claims.csv``: one row per claim (see :data:`CLAIM_COLUMNS`), the arms paired by seed;
* ``claims.md``: the same, readable, under a one-line setup.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import pandas as pd
import yaml

from vidistill.analysis.costs import bytes_dequantized
from vidistill.analysis.results import (
    arm_columns,
    arm_values,
    collect,
    flops_of,
    paired_interval,
)
from vidistill.atomic import atomic_write
from vidistill.claims.picks import picks_lines
from vidistill.claims.speed import SPEED_FILE, read_speed
from vidistill.claims.studies import Claim, Study, Sweep
from vidistill.layout import read_record

RUNS_DIR = "runs"
RUNS_FILE = "runs.csv"
CLAIMS_FILE = "claims.csv"
CLAIMS_MD = "claims.md"
ABLATION_FILE = "ablation.json"  # as vidistill.localization.ablation writes it
CLAIM_COLUMNS = [
    "claim",
    "paper_value",
    "arm_a",
    "arm_b",
    "metric",
    "mean_a",
    "sd_a",
    "mean_b",
    "sd_b",
    "n",
    "diff_mean",
    "diff_low",
    "diff_high",
    "verdict",
]
RUN_COLUMNS = ["arm", "seed"]  # then the metrics, then RUN_TAIL
RUN_TAIL = ["overrides", "git_commit", "wall_time"]


def verdict(low: float, high: float) -> str:
    """``holds`` when the whole interval of a - b is above 0 (the paper's direction),
    ``contradicted`` when it is below, else ``inconclusive`` (also without an interval)."""
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > 0:
        return "holds"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def read_runs(study: Study, directory: str | os.PathLike) -> pd.DataFrame:
    """Every finished run of the study under ``directory/runs``, one row each, with the
    columns ``sweep``, ``arm``, ``seed``, the sweep's override columns and the metrics."""
    root = Path(directory) / RUNS_DIR
    frames = [
        _read_sweep(sweep, root / sweep.name)
        for sweep in study.sweeps
        if (root / sweep.name).is_dir()
    ]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=["sweep", *RUN_COLUMNS])
    metrics = list(dict.fromkeys(m for frame in frames for m in frame.attrs["metrics"]))
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs["metrics"] = metrics
    return frame


def _read_sweep(sweep: Sweep, directory: Path) -> pd.DataFrame:
    if sweep.script == "localize.py":
        return _read_ablations(sweep, directory)
    runs = collect(directory)  # every job, finished or not: the arms are what the sweep varies
    if runs.empty:
        return runs
    table = runs[runs["status"] == "done"].copy()
    arms = arm_columns(runs)
    table.insert(0, "sweep", sweep.name)
    table.insert(1, "arm", [_arm_label(sweep.name, row, arms) for _, row in table.iterrows()])
    table["directory"] = [str(directory / run) for run in table["run"]]
    records = [read_record(directory / run) for run in table["run"]]
    table["overrides"] = [" ".join(record.get("overrides") or []) for record in records]
    table["git_commit"] = [record.get("git_commit") for record in records]
    table.attrs["metrics"] = runs.attrs["metrics"]
    return table


def _arm_label(sweep: str, row: pd.Series, arms: list[str]) -> str:
    return " ".join([f"{sweep}:", *(f"{key}={row[key]}" for key in arms)])


def _read_ablations(sweep: Sweep, directory: Path) -> pd.DataFrame:
    """The localization ablation: one row per (run, variant) from each run's ablation.json."""
    rows = []
    for path in sorted(directory.glob(f"*/{ABLATION_FILE}")):
        run = path.parent
        hydra_overrides = run / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(hydra_overrides.read_text()) if hydra_overrides.is_file() else []
        stage = json.loads((run / "video" / "metrics.json").read_text())
        seed = str(stage["config"]["seed"])
        stages = [
            run / name / "metrics.json"
            for name in ("video", "segment_finetuned", "segment_scratch")
        ]
        wall = sum(json.loads(p.read_text()).get("wall_time", 0.0) for p in stages if p.is_file())
        for variant, metrics in json.loads(path.read_text()).items():
            rows.append(
                {
                    "sweep": sweep.name,
                    "arm": f"{sweep.name}: variant={variant}",
                    "seed": seed,
                    "variant": variant,
                    "run": run.name,
                    # ablation.json is written last, once every variant is scored.
                    "status": "done",
                    **{
                        f"test/{key}": value
                        for key, value in metrics.items()
                        if isinstance(value, float | int)
                    },
                    "overrides": " ".join(overrides),
                    "git_commit": stage.get("git_commit"),
                    "wall_time": wall,
                }
            )
    frame = pd.DataFrame(rows)
    frame.attrs["metrics"] = [c for c in frame.columns if c.startswith("test/")]
    return frame


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``runs.csv``: arm, seed, the metrics, overrides, git_commit, wall_time, sorted by arm
    and seed."""
    metrics = [m for m in frame.attrs.get("metrics", []) if m in frame]
    columns = [*RUN_COLUMNS, *metrics, *RUN_TAIL]
    table = frame.reindex(columns=columns)
    return table.sort_values(["arm", "seed"], kind="stable").reset_index(drop=True)


def claim_rows(study: Study, frame: pd.DataFrame, quick: bool = False) -> pd.DataFrame:
    """``claims.csv``: one row per claim of the study (``quick``: only the quick claims).
    Arms are paired by seed; the means and sds are over the paired seeds. A claim whose arms
    have no paired run yet gets ``n = 0`` and ``verdict = not run``."""
    rows = [_claim_row(claim, frame) for claim in study.claims if claim.quick or not quick]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _claim_row(claim: Claim, frame: pd.DataFrame) -> dict:
    row = {
        "claim": claim.claim,
        "paper_value": claim.paper_value,
        "arm_a": claim.a.label(),
        "arm_b": claim.b.label(),
        "metric": claim.metric if claim.metric_b is None else f"{claim.metric} vs {claim.metric_b}",
    }
    try:
        a = arm_values(frame, claim.a.selector(), claim.metric)
        b = arm_values(frame, claim.b.selector(), claim.metric_b or claim.metric)
    except ValueError:
        return {**row, "n": 0, "verdict": "not run"}
    paired = a.index.intersection(b.index)
    if paired.empty:
        return {**row, "n": 0, "verdict": "not run"}
    a, b = a[paired], b[paired]
    diff = paired_interval(a.to_numpy(float) - b.to_numpy(float))
    return {
        **row,
        "mean_a": a.mean(),
        "sd_a": a.std(ddof=1) if len(a) > 1 else math.nan,
        "mean_b": b.mean(),
        "sd_b": b.std(ddof=1) if len(b) > 1 else math.nan,
        "n": diff["n"],
        "diff_mean": diff["mean"],
        "diff_low": diff["low"],
        "diff_high": diff["high"],
        "verdict": verdict(diff["low"], diff["high"]),
    }


def build_evidence(study: Study, directory: str | os.PathLike, quick: bool = False) -> pd.DataFrame:
    """Write runs.csv, claims.csv and claims.md of ``study`` in ``directory``; returns the
    claims table."""
    directory = Path(directory)
    frame = read_runs(study, directory)
    atomic_write(directory / RUNS_FILE, runs_table(frame).to_csv(index=False, float_format="%.6g"))
    claims = claim_rows(study, frame, quick)
    atomic_write(directory / CLAIMS_FILE, claims.to_csv(index=False, float_format="%.6g"))
    markdown = claims_markdown(
        study, frame, claims, quick, read_speed(directory), picks_lines(directory)
    )
    atomic_write(directory / CLAIMS_MD, markdown)
    return claims


def claims_markdown(
    study: Study,
    frame: pd.DataFrame,
    claims: pd.DataFrame,
    quick: bool,
    speedups: dict[str, float] | None = None,
    picks: list[str] | None = None,
) -> str:
    """claims.md: the verdicts, the cost table (with ``speedups``), the ``picks`` section
    (:func:`vidistill.claims.picks.picks_lines`), the notes and the arms compared."""
    seeds = sorted(frame["seed"].astype(str).unique(), key=int) if not frame.empty else []
    cpu_hours = frame["wall_time"].fillna(0).sum() / 3600 if "wall_time" in frame else 0.0
    counts = claims["verdict"].value_counts()
    summary = ", ".join(
        f"{counts[v]} {v}"
        for v in ("holds", "contradicted", "inconclusive", "not run")
        if v in counts
    )
    lines = [
        f"# Claims: {study.name}{' (quick)' if quick else ''}",
        "",
        f"Setup: {study.setup}; seeds {', '.join(seeds) or 'none yet'}; {len(frame)} runs; "
        f"{_machine()}; total CPU time {cpu_hours:.1f} h (one thread per run).",
        "",
        f"Verdicts: {summary}. A claim holds when the 95% t-interval of the paired difference "
        "(a - b, over seeds) lies above 0, is contradicted when it lies below 0, and is "
        "inconclusive otherwise.",
        "",
        "| claim | paper | metric | a (mean ± sd) | b (mean ± sd) | n | a - b [95% CI] | verdict |",
        "|---|---|---|---|---|---:|---|---|",
    ]
    for _, row in claims.iterrows():
        lines.append(
            f"| {row['claim']} | {row['paper_value']} | {row['metric']} | "
            f"{_mean_sd(row['mean_a'], row['sd_a'])} | {_mean_sd(row['mean_b'], row['sd_b'])} | "
            f"{row['n']} | {_interval(row)} | {row['verdict']} |"
        )
    lines += cost_lines(study, frame, speedups)
    lines += picks or []
    lines += note_lines(study, frame)
    arms = "\n".join(
        f"- `{c.a.label()}` vs `{c.b.label()}`" for c in study.claims if c.quick or not quick
    )
    lines += ["", "Arms compared, in order:", "", arms, ""]
    return "\n".join(lines)


def note_lines(study: Study, frame: pd.DataFrame) -> list[str]:
    """The study's notes, then which commits made its runs (several when a study resumed across
    commits; ``runs.csv`` has each run's)."""
    commits = frame["git_commit"].dropna().astype(str).str[:7] if "git_commit" in frame else []
    counts = pd.Series(commits).value_counts() if len(commits) else pd.Series(dtype=int)
    made_by = ", ".join(f"{commit} ({n} runs)" for commit, n in counts.items())
    notes = [*study.notes, f"Runs made at commit(s) {made_by}." if made_by else None]
    notes = [note for note in notes if note]
    return ["", "Notes:", "", *(f"- {note}" for note in notes)] if notes else []


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores"


def _mean_sd(mean: float, sd: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    return f"{mean:.4f}" if math.isnan(sd) else f"{mean:.4f} ± {sd:.4f}"


def _interval(row: pd.Series) -> str:
    mean = row["diff_mean"]
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if math.isnan(row["diff_low"]):
        return f"{mean:+.4f}"
    return f"{mean:+.4f} [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"


def cost_lines(
    study: Study, frame: pd.DataFrame, speedups: dict[str, float] | None = None
) -> list[str]:
    """claims.md's cost section: each listed student's multiply-adds per video against its
    teacher's (the papers' convention and every layer; :func:`vidistill.models.flops.count`),
    from the configs its run recorded, and its measured end-to-end speed-up over the teacher
    where ``speedups`` (arm label -> ratio, :func:`vidistill.claims.speed.read_speed`) has it."""
    speedups = speedups or {}
    rows = []
    for arm, paper in study.cost:
        record = first_record(frame, arm)
        if record is None or "teacher" not in record:
            continue
        teacher_record = read_record(record["teacher"]["directory"])
        if teacher_record is None:
            continue
        student, teacher = flops_of(record["config"]), flops_of(teacher_record["config"])
        rows.append(
            f"| `{arm.label()}` | {paper} | {_giga(student['flops_paper'])} vs "
            f"{_giga(teacher['flops_paper'])} | {_giga(student['flops_total'])} vs "
            f"{_giga(teacher['flops_total'])} | "
            f"{teacher['flops_total'] / student['flops_total']:.1f}x | "
            f"{_kilo(bytes_dequantized(record['config']))} vs "
            f"{_kilo(bytes_dequantized(teacher_record['config']))} | "
            f"{_ratio(speedups.get(arm.label()))} |"
        )
    if not rows:
        return []
    return [
        "",
        "Cost per video, student vs its teacher (GFLOPs as multiply-adds; the teacher at 300 "
        "frames, the papers' convention; a learned selector's scoring of every frame is in "
        "every layer's count), the feature bytes each dequantizes per 300-frame video (kB), "
        "and the student's measured end-to-end speed-up over "
        "its teacher on the test split (`python -m vidistill.claims speed <study>`, "
        f"{SPEED_FILE}; shards to top-20 CSV, best of alternating passes, seed 0's checkpoints):",
        "",
        f"| student | {study.cost_reference} | papers' convention | every layer | ratio (every "
        "layer) | kB dequantized | measured speed-up |",
        "|---|---|---|---|---:|---|---:|",
        *rows,
    ]


def first_record(frame: pd.DataFrame, arm) -> dict | None:
    """The record of one finished run of ``arm`` (the configs are the same over seeds)."""
    chosen = frame
    for key, value in arm.selector().items():
        if key not in chosen:
            return None
        chosen = chosen[chosen[key].astype(str) == value]
    if chosen.empty or "directory" not in chosen:
        return None
    return read_record(chosen.iloc[0]["directory"])


def _ratio(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}x"


def _kilo(value: int | None) -> str:
    return "" if value is None else f"{value / 1e3:.1f}"


def _giga(value: int | None) -> str:
    return "" if value is None else f"{value / 1e9:.3f}"
