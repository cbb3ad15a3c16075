"""Predictions in the 2018 Kaggle YouTube-8M format, written as they are computed.

The file is ``VideoId,LabelConfidencePairs`` then one line per video,
``id,label score label score ...`` with the top-k classes by descending score. Rows go to disk
batch by batch, so memory does not grow with the number of videos.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

log = logging.getLogger(__name__)

HEADER = "VideoId,LabelConfidencePairs"

# BasePredictionWriter asks every loader for per-sample batch indices; the streaming loader has
# none (the ids in each batch say which videos it holds), so Lightning's warning is noise.
warnings.filterwarnings(
    "ignore",
    message="Couldn't infer the batch indices fetched from your dataloader: `_EpochLoader`",
)


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


class KagglePredictionWriter(BasePredictionWriter):
    """Streams ``VideoClassifier.predict_step`` outputs (``ids``, ``classes``, ``scores``, top-k
    sorted by descending score) into a :class:`KagglePredictionFile` after every batch.

    Use with ``trainer.predict(..., return_predictions=False)`` so Lightning does not also
    collect every batch's output in memory.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        super().__init__(write_interval="batch")
        # Checked here as well as on opening, so a bad path fails before data and model load.
        check_output(path, overwrite)
        self.path = Path(path)
        self.overwrite = overwrite
        self.file: KagglePredictionFile | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            raise ValueError(
                "predictions go to one CSV file from one process; run predict with "
                "trainer.devices=1"
            )
        self.file = KagglePredictionFile(self.path, self.overwrite)

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        rows = zip(
            prediction["ids"],
            prediction["classes"].tolist(),
            prediction["scores"].tolist(),
            strict=True,
        )
        for video_id, classes, scores in rows:
            self.file.write(video_id, classes, scores)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.file.close()
        log.info("%d predictions written to %s", self.file.rows, self.path)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.file is not None and not self.file.closed:
            self.file.abort()
