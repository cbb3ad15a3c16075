"""Timing whole prediction passes against each other on a shared machine.

A pass is what a user runs: :func:`~vidistill.inference.predictor.predict_to_file` from shards to
a predictions file, reader workers started and the file written. Predictors compared with one
another take turns, pass after pass, and each keeps its fastest pass: load from elsewhere on the
machine then hits all of them alike, and the fastest pass is the least disturbed one. Only
ratios of these rates mean something; absolute rates move with the machine.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from vidistill.inference.predictor import Predictor, predict_to_file


def alternating_best_rates(
    predictors: Sequence[Predictor],
    files: str | Sequence[str],
    repeats: int = 3,
    batch_size: int = 128,
    num_workers: int = 2,
    top_k: int = 20,
    scratch: str | os.PathLike | None = None,
) -> list[float]:
    """Best videos per second of each predictor over ``repeats`` rounds in which every
    predictor makes one whole pass over ``files`` in turn (top-``top_k`` CSV written to a
    scratch file: ``scratch`` or a temporary directory)."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: expected at least 1")
    best = [0.0] * len(predictors)
    with tempfile.TemporaryDirectory(dir=scratch) as directory:
        output = Path(directory) / "predictions.csv"
        for _ in range(repeats):
            for i, predictor in enumerate(predictors):
                summary = predict_to_file(
                    predictor,
                    files,
                    output,
                    top_k=top_k,
                    batch_size=batch_size,
                    num_workers=num_workers,
                    overwrite=True,
                )
                best[i] = max(best[i], summary["videos"] / summary["seconds"])
    return best
