"""Where a study's trained frame selectors look: ``python -m vidistill.claims picks <study>``
writes ``picks.csv`` beside the study's evidence (one row per run with a learned selector whose
checkpoint is on this machine, :func:`vidistill.analysis.selection.selector_picks` on the test
split), and claims.md summarises it per arm. Checkpoints are not committed: a fresh clone
measures again after running the study."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from vidistill.atomic import atomic_write
from vidistill.layout import read_record

log = logging.getLogger(__name__)

PICKS_FILE = "picks.csv"


def measure_picks(frame: pd.DataFrame, data_root: str | os.PathLike) -> pd.DataFrame:
    """One row per run of ``frame`` (a study's runs) whose model has a selector."""
    from vidistill.analysis.selection import PICK_COLUMNS, selector_picks
    from vidistill.claims.speed import test_files

    rows = []
    for _, run in frame.iterrows():
        record = read_record(run["directory"]) if "directory" in run else None
        if not record or not (record["config"]["model"].get("selector")):
            continue
        checkpoint = record.get("best_checkpoint")
        if not checkpoint or not Path(checkpoint).is_file():
            log.warning("%s: no checkpoint on this machine; skipped", run["directory"])
            continue
        picks = selector_picks(checkpoint, test_files(record, data_root))
        rows.append({"arm": run["arm"], "seed": run["seed"], **picks})
    return pd.DataFrame(rows, columns=["arm", "seed", *PICK_COLUMNS])


def write_picks(table: pd.DataFrame, directory: str | os.PathLike) -> Path:
    return atomic_write(
        Path(directory) / PICKS_FILE, table.to_csv(index=False, float_format="%.4g")
    )


def picks_lines(directory: str | os.PathLike) -> list[str]:
    """claims.md's section on where the selectors look, from ``picks.csv`` (none without it)."""
    path = Path(directory) / PICKS_FILE
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    if table.empty:
        return []
    grouped = table.groupby("arm", sort=False).agg(
        share=("uniform_share", "mean"), move=("mean_move_bins", "mean"), seeds=("seed", "count")
    )
    return [
        "",
        f"Where the trained selectors look ({PICKS_FILE}; `python -m vidistill.claims picks "
        "<study>`): the share of bins whose pick is Uniform-k's frame, and the picks' mean "
        "distance from those frames in bin widths, on the test split's first 512 videos, "
        "averaged over seeds:",
        "",
        "| arm | picks at Uniform-k's frame | mean distance (bins) | seeds |",
        "|---|---:|---:|---:|",
        *(
            f"| `{arm}` | {row['share']:.1%} | {row['move']:.3f} | {int(row['seeds'])} |"
            for arm, row in grouped.iterrows()
        ),
    ]
