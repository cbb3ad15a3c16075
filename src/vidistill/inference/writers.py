"""Prediction files written as predictions are computed: the 2018 Kaggle YouTube-8M CSV, or
Parquet.

The CSV is ``VideoId,LabelConfidencePairs`` then one line per video,
``id,label score label score ...`` with the top-k classes by descending score. The Parquet file
has the columns ``id`` (string), ``classes`` (k int32) and ``scores`` (k float32), one row per
video. Rows go to disk batch by batch, so memory does not grow with the number of videos; both
write to ``<path>.partial`` and take their final name when complete.
"""

from __future__ import annotations

import functools
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


class PredictionFile:
    """A predictions file written batch by batch to ``<path>.partial``, which :meth:`close`
    renames to ``path``: a run that dies half way leaves no file that looks complete.
    Subclasses open the partial file in :meth:`_open`, append in :meth:`write_batch` (adding to
    ``rows``) and finish it in :meth:`_finish`."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        check_output(path, overwrite)
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = 0
        self.closed = False
        self._open()

    def _open(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def write_batch(self, ids: Sequence[str], classes: np.ndarray, scores: np.ndarray) -> None:
        """Append a batch: ``classes`` [B, k] and ``scores`` [B, k] by descending score."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        self._finish()
        self.closed = True
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Stop writing and leave the incomplete ``.partial`` file for inspection."""
        self._finish()
        self.closed = True
        log.warning("incomplete predictions (%d rows) left in %s", self.rows, self.partial)

    def __enter__(self) -> PredictionFile:
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


class KagglePredictionFile(PredictionFile):
    """The 2018 Kaggle CSV, written row by row."""

    def _open(self) -> None:
        self._file = open(self.partial, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._file.write(HEADER + "\n")

    def _finish(self) -> None:
        self._file.close()

    def write(self, video_id: str, classes: Sequence[int], scores: Sequence[float]) -> None:
        """Append one video's top-k classes (sorted by descending score by the caller)."""
        self._file.write(format_row(video_id, classes, scores) + "\n")
        self.rows += 1

    def write_batch(self, ids: Sequence[str], classes: np.ndarray, scores: np.ndarray) -> None:
        """The batch's lines, as :func:`format_row` writes them, from one format operation
        (formatting pair by pair in Python took about 5% of a k = 30 student's time per
        batch)."""
        if len(ids) != len(classes) or classes.shape != scores.shape:
            raise ValueError(
                f"{len(ids)} ids, classes {classes.shape} and scores {scores.shape} do not match"
            )
        if not len(ids):
            return
        k = classes.shape[1]
        # One row of the format, then its values row by row: id, label, score, label, ...
        values = np.empty((len(ids), 1 + 2 * k), dtype=object)
        values[:, 0] = list(ids)
        values[:, 1::2] = classes.tolist()
        values[:, 2::2] = scores.tolist()
        self._file.write(_row_format(k) * len(ids) % tuple(values.ravel().tolist()))
        self.rows += len(ids)


@functools.cache
def _row_format(k: int) -> str:
    """A %-format of one CSV line with ``k`` pairs: the same text as :func:`format_row`'s
    (``%d`` and ``%.6f`` format ints and floats as ``{:d}`` and ``{:.6f}`` do)."""
    return "%s," + " ".join(["%d %.6f"] * k) + "\n"


class ParquetPredictionFile(PredictionFile):
    """Predictions as Parquet (pyarrow, the ``parquet`` extra): columns ``id``, ``classes``
    (k int32), ``scores`` (k float32), one row group per batch."""

    def __init__(self, path: str | os.PathLike, top_k: int, overwrite: bool = False):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(
                f"{path}: Parquet output needs pyarrow (pip install -e '.[parquet]'); or write "
                "the Kaggle CSV (a .csv output)"
            ) from None
        self._pa, self._pq = pa, pq
        self.schema = pa.schema(
            [
                ("id", pa.string()),
                ("classes", pa.list_(pa.int32(), top_k)),
                ("scores", pa.list_(pa.float32(), top_k)),
            ]
        )
        super().__init__(path, overwrite)

    def _open(self) -> None:
        self._writer = self._pq.ParquetWriter(self.partial, self.schema)

    def _finish(self) -> None:
        self._writer.close()

    def write_batch(self, ids: Sequence[str], classes: np.ndarray, scores: np.ndarray) -> None:
        pa = self._pa
        k = classes.shape[1]
        columns = [
            pa.array(list(ids), pa.string()),
            pa.FixedSizeListArray.from_arrays(pa.array(classes.astype(np.int32).ravel()), k),
            pa.FixedSizeListArray.from_arrays(pa.array(scores.astype(np.float32).ravel()), k),
        ]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self.rows += len(ids)


def open_prediction_file(
    path: str | os.PathLike, top_k: int, overwrite: bool = False
) -> PredictionFile:
    """The writer for ``path``: Parquet for a ``.parquet`` name, else the Kaggle CSV."""
    if Path(path).suffix == ".parquet":
        return ParquetPredictionFile(path, top_k, overwrite)
    return KagglePredictionFile(path, overwrite)
