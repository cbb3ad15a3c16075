"""Measured inference speed of a study's students against their teachers (the fewer-frames
paper's Table 3): ``python -m vidistill.claims speed <study>`` writes ``speed.csv`` beside the
study's evidence, and the cost section of ``claims.md`` reads it.

Each student listed in the study's ``cost`` and its teacher predict the study's test split end to
end from the TFRecord shards to a top-20 CSV (:func:`vidistill.inference.predict_to_file`: reader
workers, decoding of the picked frames, the model, writing), with the checkpoints the runs left
(seed 0's). The two alternate, pass after pass, and each keeps its best pass, so that load from
elsewhere on the machine hits both alike; only the ratio is reported, since absolute rates move
with the machine. Checkpoints are not committed: a fresh clone re-measures after running the
study.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

import pandas as pd

from vidistill.atomic import atomic_write
from vidistill.claims.studies import Study
from vidistill.layout import read_record

log = logging.getLogger(__name__)

SPEED_FILE = "speed.csv"
SPEED_COLUMNS = ["arm", "student_videos_per_s", "teacher_videos_per_s", "speedup", "videos"]
# The prediction setting of make bench's inference section.
BATCH_SIZE, READER_WORKERS = 128, 2


def measure_speed(
    study: Study, frame: pd.DataFrame, data_root: str | os.PathLike, repeats: int = 3
) -> pd.DataFrame:
    """One row per cost-listed student whose checkpoints (its and its teacher's) are on disk:
    best videos/s of ``repeats`` alternating passes each, and their ratio (student / teacher).
    ``frame`` is the study's runs (:func:`vidistill.claims.evidence.read_runs`)."""
    from vidistill.claims.evidence import first_record

    rows = []
    for arm, _ in study.cost:
        record = first_record(frame, arm)
        teacher = read_record(record["teacher"]["directory"]) if record else None
        checkpoints = [r.get("best_checkpoint") for r in (record, teacher) if r]
        if len(checkpoints) < 2 or not all(c and Path(c).is_file() for c in checkpoints):
            log.warning("%s: no checkpoints on this machine to time; skipped", arm.label())
            continue
        files = test_files(record, data_root)
        student_rate, teacher_rate = _alternating_best(checkpoints, files, repeats)
        rows.append(
            {
                "arm": arm.label(),
                "student_videos_per_s": student_rate,
                "teacher_videos_per_s": teacher_rate,
                "speedup": student_rate / teacher_rate,
                "videos": _count_videos(files),
            }
        )
        log.info("%s: %.2fx the teacher's speed", arm.label(), rows[-1]["speedup"])
    return pd.DataFrame(rows, columns=SPEED_COLUMNS)


def write_speed(table: pd.DataFrame, directory: str | os.PathLike) -> Path:
    header = f"# {platform.machine()}, {os.cpu_count()} cores; ratios of one run\n"
    return atomic_write(
        Path(directory) / SPEED_FILE, header + table.to_csv(index=False, float_format="%.4g")
    )


def read_speed(directory: str | os.PathLike) -> dict[str, float]:
    """Arm label -> measured speed-up, from ``speed.csv`` ({} when it was not measured)."""
    path = Path(directory) / SPEED_FILE
    if not path.is_file():
        return {}
    table = pd.read_csv(path, comment="#")
    return dict(zip(table["arm"], table["speedup"].astype(float), strict=True))


def _alternating_best(checkpoints: list[str], files: list[str], repeats: int) -> list[float]:
    from vidistill.inference import Predictor
    from vidistill.inference.timing import alternating_best_rates

    predictors = [Predictor(checkpoint, device="cpu") for checkpoint in checkpoints]
    return alternating_best_rates(
        predictors, files, repeats, batch_size=BATCH_SIZE, num_workers=READER_WORKERS
    )


def test_files(record: dict, data_root: str | os.PathLike) -> list[str]:
    """The test split the run was scored on, in the synthetic set its config names (generated
    under ``data_root`` if missing)."""
    from vidistill.data.sharding import expand_files
    from vidistill.data.synthetic import SyntheticConfig, ensure_dataset

    data = record["config"]["data"]
    root = ensure_dataset(data_root, SyntheticConfig(**data["generator"]), progress=False)
    return expand_files(str(root / data["test_files"]))


def _count_videos(files: list[str]) -> int:
    from vidistill.data.sharding import record_offsets

    return sum(len(record_offsets(path)[0]) for path in files)
