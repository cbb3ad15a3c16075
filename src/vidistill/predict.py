"""Prediction files written as predictions are computed: the 2018 Kaggle YouTube-8M CSV, or
Parquet.

The CSV is ``VideoId,LabelConfidencePairs`` then one line per video,
``id,label score label score ...`` with the top-k classes by descending score. The Parquet file
has the columns ``id`` (string), ``classes`` (k int32) and ``scores`` (k float32), one row per
video. Rows go to disk batch by batch, so memory does not grow with the number of videos; both
write to ``<path>.partial`` and take their final name when complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

log = logging.getLogger(__name__)

HEADER = "VideoId,LabelConfidencePairs"


def check_output(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an existing predictions file unless ``overwrite`` (FileExistsError naming it)."""
    if not overwrite and Path(path).exists():
        raise FileExistsError(f"{path} exists; pass overwrite=true to replace it")


def format_row(video_id: str, classes: Sequence[int], scores: Sequence[float]) -> str:
    """One CSV line (no newline): ``id,label score ...``, scores with 6 decimals."""
    pairs = " ".join(
        f"{int(label)} {float(score):.6f}" for label, score in zip(classes, scores, strict=True)
    )
    return f"{video_id},{pairs}"


class KagglePredictionFile:
    """A Kaggle 2018 predictions file written row by row.

    Rows go to ``<path>.partial``, which is renamed to ``path`` by :meth:`close`: a run that
    dies half way leaves no file that looks like complete predictions.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        check_output(path, overwrite)
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = 0
        self._file = open(self.partial, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._file.write(HEADER + "\n")

    def write(self, video_id: str, classes: Sequence[int], scores: Sequence[float]) -> None:
        """Append one video's top-k classes (sorted by descending score by the caller)."""
        self._file.write(format_row(video_id, classes, scores) + "\n")
        self.rows += 1

    def write_batch(self, ids: Sequence[str], classes: np.ndarray, scores: np.ndarray) -> None:
        """Append a batch: ``classes`` [B, k] and ``scores`` [B, k] by descending score."""
        for video_id, row_classes, row_scores in zip(
            ids, classes.tolist(), scores.tolist(), strict=True
        ):
            self.write(video_id, row_classes, row_scores)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        """Finish the file: flush it and move it to its final name."""
        self._file.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Stop writing and leave the incomplete ``.partial`` file for inspection."""
        self._file.close()
        log.warning("incomplete predictions (%d rows) left in %s", self.rows, self.partial)

    def __enter__(self) -> KagglePredictionFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ParquetPredictionFile:
    """Predictions as Parquet (pyarrow, the ``parquet`` extra), one row group per batch, with
    the same life cycle as :class:`KagglePredictionFile`."""

    def __init__(self, path: str | os.PathLike, top_k: int, overwrite: bool = False):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(
                f"{path}: Parquet output needs pyarrow (pip install -e '.[parquet]'); or write "
                "the Kaggle CSV (a .csv output)"
            ) from None
        check_output(path, overwrite)
        self._pa = pa
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = 0
        self.schema = pa.schema(
            [
                ("id", pa.string()),
                ("classes", pa.list_(pa.int32(), top_k)),
                ("scores", pa.list_(pa.float32(), top_k)),
            ]
        )
        self._writer = pq.ParquetWriter(self.partial, self.schema)
        self.closed = False

    def write_batch(self, ids: Sequence[str], classes: np.ndarray, scores: np.ndarray) -> None:
        """Append a batch: ``classes`` [B, k] and ``scores`` [B, k] by descending score."""
        pa = self._pa
        k = classes.shape[1]
        columns = [
            pa.array(list(ids), pa.string()),
            pa.FixedSizeListArray.from_arrays(pa.array(classes.astype(np.int32).ravel()), k),
            pa.FixedSizeListArray.from_arrays(pa.array(scores.astype(np.float32).ravel()), k),
        ]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self.rows += len(ids)

    def close(self) -> None:
        self._writer.close()
        self.closed = True
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        self._writer.close()
        self.closed = True
        log.warning("incomplete predictions (%d rows) left in %s", self.rows, self.partial)

    def __enter__(self) -> ParquetPredictionFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_prediction_file(
    path: str | os.PathLike, top_k: int, overwrite: bool = False
) -> KagglePredictionFile | ParquetPredictionFile:
    """The writer for ``path``: Parquet for a ``.parquet`` name, else the Kaggle CSV."""
    if Path(path).suffix == ".parquet":
        return ParquetPredictionFile(path, top_k, overwrite)
    return KagglePredictionFile(path, overwrite)
