"""LightningDataModules: YT8M shards given by globs, and the built-in synthetic set."""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from vidistill.data.batching import dequantize_batch
from vidistill.data.datasets import YT8MDataset, check_views
from vidistill.data.frames import TEACHER_PREFIX, FrameSelection, config_keys, teacher_view
from vidistill.data.loader import EpochLoader
from vidistill.data.samplers import setting_names
from vidistill.data.shards import open_shard, protocol

Files = str | Sequence[str] | None
# Logs, at DEBUG, the ids of every training batch as the training step takes it (epoch, batch
# index in the epoch, ids): turned on, it shows which videos each epoch trained on, and that a
# resumed epoch trains on none twice.
trained_ids = logging.getLogger("vidistill.data.trained_ids")

# Lightning cannot know that YT8MDataset.__len__ is exact for every worker layout; it is.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


def read_vocabulary(path: str | os.PathLike) -> np.ndarray:
    """Training video count per class from a YT8M ``vocabulary.csv`` (int64 [C], C = largest
    ``Index`` + 1; classes without a count get 0)."""
    path = os.fspath(path)
    with io.TextIOWrapper(open_shard(path), encoding="utf-8", newline="") as f:  # or a URL
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "Index" not in reader.fieldnames:
            raise ValueError(
                f"{path}: not a YT8M vocabulary file (no 'Index' column in the header)"
            )
        rows = [(int(row["Index"]), int(row.get("TrainVideoCount") or 0)) for row in reader]
    if not rows:
        raise ValueError(f"{path}: the vocabulary is empty")
    counts = np.zeros(max(index for index, _ in rows) + 1, np.int64)
    for index, count in rows:
        counts[index] = count
    return counts


def read_vocabulary_size(path: str | os.PathLike) -> int:
    """Number of classes in a YT8M ``vocabulary.csv``."""
    return len(read_vocabulary(path))


class YT8MDataModule(pl.LightningDataModule):
    """YouTube-8M TFRecord shards for training, validation, test and prediction.

    Args:
        train_files, val_files, test_files, predict_files: glob patterns (or lists of them):
            local paths or fsspec URLs (``gs://``, ``s3://``, ``memory://``, ``file://``; an
            ``http(s)://`` URL names one shard, HTTP having no glob).
        num_classes: label vocabulary size; read from ``vocabulary`` when omitted. When both
            are given they must agree.
        vocabulary: path (or fsspec URL) of a ``vocabulary.csv``.
        mode: ``frame`` | ``segment`` | ``video`` (see :class:`YT8MDataset`).
        sampler, k, max_frames, seed: frame selection for every split (``all`` by default),
            with the samplers' own ``settings``; built once into :attr:`frames` (see
            :meth:`vidistill.data.frames.FrameSelection.from_config`). ``seed`` also seeds
            shuffling and the loader's workers.
        batch_size: training batch; ``eval_batch_size`` defaults to it.
        dequantize_range: (max, min) quantization range of the official formula.
        teacher_sampler, teacher_k: teacher-student training: training batches also carry the
            teacher's view of the same videos (``teacher_frames``, ``teacher_mask``,
            ``teacher_num_frames``), usually ``all`` frames; evaluation batches carry only the
            student's view, the model being evaluated. Built once into :attr:`teacher_frames`.
        compression: ``gzip`` reads every shard as a gzip-compressed TFRecord; null reads
            gzip only for paths ending in ``.gz``.
        pin_memory, persistent_workers: DataLoader options; ``"auto"`` turns them on when the
            trainer runs on a CUDA device (``trainer=gpu``), off on the CPU, where pinned pages
            buy nothing. Persistent workers need ``num_workers > 0`` and are off without.
        prefetch_factor: batches each worker keeps ready (with ``num_workers > 0``; None: the
            DataLoader's default).
        settings: the samplers' settings by name, as the data config gives them (``stride``;
            ``teacher_<setting>`` for the teacher's view); any other name is a TypeError.

    Batches arrive at the model as dicts with float32 ``frames`` [B, T, 1152] (dequantized after
    the transfer to the device; padding 0.0), bool ``mask`` [B, T], int ``num_frames`` [B],
    float ``labels`` [B, C] and ``ids``; segment batches add ``label_weights`` [B, C].
    """

    def __init__(
        self,
        train_files: Files = None,
        val_files: Files = None,
        test_files: Files = None,
        predict_files: Files = None,
        num_classes: int | None = None,
        vocabulary: str | None = None,
        mode: str = "frame",
        sampler: str = "all",
        k: int | None = None,
        max_frames: int = 300,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        shuffle_buffer: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        on_corrupt: str = "raise",
        pin_memory: bool | str = "auto",
        persistent_workers: bool | str = "auto",
        prefetch_factor: int | None = 2,
        dequantize_range: tuple[float, float] = (2.0, -2.0),
        index_cache: str | None = None,
        teacher_sampler: str | None = None,
        teacher_k: int | None = None,
        compression: str | None = None,
        **settings: Any,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.files = {
            "train": train_files,
            "val": val_files,
            "test": test_files,
            "predict": predict_files,
        }
        self._num_classes = num_classes
        self.datasets: dict[str, YT8MDataset] = {}
        # Frame-selection mistakes surface here, before any file is read.
        self.frames, self.teacher_frames = _frame_views(
            sampler=sampler,
            k=k,
            max_frames=max_frames,
            seed=seed,
            teacher_sampler=teacher_sampler,
            teacher_k=teacher_k,
            **settings,
        )

    # -- vocabulary ---------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        vocabulary = self.vocabulary_path()
        from_file = read_vocabulary_size(vocabulary) if vocabulary else None
        if self._num_classes is None and from_file is None:
            raise ValueError("the data config needs num_classes or a vocabulary.csv path")
        if (
            self._num_classes is not None
            and from_file is not None
            and self._num_classes != from_file
        ):
            raise ValueError(
                f"num_classes={self._num_classes} does not match the {from_file} classes of {vocabulary}"
            )
        return self._num_classes if self._num_classes is not None else from_file

    def class_priors(self) -> torch.Tensor | None:
        """Share of training videos carrying each class (float [C]), from the vocabulary's
        ``TrainVideoCount`` over the indexed training records; ``None`` without a vocabulary."""
        vocabulary = self.vocabulary_path()
        if not vocabulary or self.files["train"] is None:
            return None
        self.setup("fit")
        counts = torch.from_numpy(read_vocabulary(vocabulary)).double()
        total = sum(self.datasets["train"].counts)
        return (counts / max(total, 1)).clamp(1e-4, 1 - 1e-4).float()

    def vocabulary_path(self) -> str | None:
        return self.hparams.vocabulary

    def resolve(self, files: Files) -> Files:
        """Hook for subclasses whose globs are relative to a dataset directory."""
        return files

    # -- datasets -----------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        splits = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
        }
        for split in splits.get(stage, ("train", "val", "test", "predict")):
            if self.files[split] is not None and split not in self.datasets:
                self.datasets[split] = self._dataset(split)

    def _dataset(self, split: str) -> YT8MDataset:
        h = self.hparams
        trainer = self.trainer
        train = split == "train"
        return YT8MDataset(
            self.resolve(self.files[split]),
            num_classes=self.num_classes,
            mode=h.mode,
            batch_size=h.batch_size if train else (h.eval_batch_size or h.batch_size),
            frames=self.frames,
            train=train,
            shuffle_buffer=h.shuffle_buffer,
            shuffle=h.shuffle,
            num_workers=h.num_workers,
            rank=trainer.global_rank if trainer is not None else None,
            world_size=trainer.world_size if trainer is not None else None,
            on_corrupt=h.on_corrupt,
            index_cache=h.index_cache,
            teacher_frames=self.teacher_frames if train else None,
            compression=h.compression,
        )

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            if self.files[split] is None:
                raise ValueError(f"no {split} files configured (data.{split}_files)")
            self.setup()
        h = self.hparams
        return EpochLoader(
            self.datasets[split],
            epoch=self._training_epoch,
            seed=h.seed,
            consumed=self._batches_trained if split == "train" else None,
            **self.loader_options(),
        )

    def loader_options(self) -> dict[str, Any]:
        """The DataLoader's worker and transfer options, ``"auto"`` resolved for the trainer's
        device. Lightning moves a batch to a CUDA device with ``non_blocking=True`` itself
        (``move_data_to_device``), which overlaps the copy with compute only from pinned memory:
        hence pinning there."""
        h = self.hparams
        # No trainer (a loader built on its own), or one that names no device: not CUDA.
        device = getattr(getattr(self.trainer, "strategy", None), "root_device", None)
        on_cuda = isinstance(device, torch.device) and device.type == "cuda"

        def resolve(value: bool | str) -> bool:
            if value == "auto":
                return on_cuda
            if not isinstance(value, bool):
                raise ValueError(f"expected true, false or auto, got {value!r}")
            return value

        options = {"num_workers": h.num_workers, "pin_memory": resolve(h.pin_memory)}
        if h.num_workers > 0:  # the DataLoader rejects both without workers
            options["persistent_workers"] = resolve(h.persistent_workers)
            options["prefetch_factor"] = h.prefetch_factor
        return options

    def _training_epoch(self) -> int:
        # Epochs whose training pass has run, the count Lightning gives samplers: unlike
        # `current_epoch`, it is already right when a run resumed from an epoch-end checkpoint
        # creates its first iterator.
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_progress.current.processed

    def _batches_trained(self) -> int:
        # Batches of this epoch whose training step finished: the count a resumed Lightning loop
        # goes on after (a checkpoint saved in on_train_batch_end, as vidistill's and the
        # step-interval ones are, counts its batch as done; one saved mid-step, not). The
        # DataLoader has delivered one batch more, which Lightning prefetched.
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        trainer = self.trainer
        if trained_ids.isEnabledFor(logging.DEBUG) and trainer is not None and trainer.training:
            # Called for each training batch just before its step, in the main process.
            trained_ids.debug(
                "epoch %d batch %d ids %s",
                self._training_epoch(),
                self._batches_trained(),
                " ".join(batch.get("ids", ())),
            )
        high, low = self.hparams.dequantize_range
        return dequantize_batch(batch, high, low)


def _frame_views(**data: Any) -> tuple[FrameSelection, FrameSelection | None]:
    """The student's frame selection and the teacher's view (None without one) from the data
    module's frame-selection arguments; TypeError for a name no sampler takes."""
    known = {*config_keys(), *config_keys(TEACHER_PREFIX)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TypeError(
            f"YT8MDataModule got unexpected arguments {', '.join(unknown)}: no frame sampler "
            f"takes them (the samplers' settings: {', '.join(setting_names())}, and "
            f"{TEACHER_PREFIX}<setting> for the teacher's view)"
        )
    frames, teacher = FrameSelection.from_config(data), teacher_view(data)
    if teacher is not None:
        check_views(frames, teacher)
    return frames, teacher


class SyntheticDataModule(YT8MDataModule):
    """The built-in synthetic YT8M set: generated on first use under ``root`` and cached.

    ``generator`` holds :class:`vidistill.data.synthetic.SyntheticConfig` fields; file globs are
    relative to the generated dataset directory, URLs name their shards themselves.
    """

    def __init__(self, root: str = "data/synthetic", generator: dict | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.root = root
        self.generator = dict(generator or {})
        self._directory: Path | None = None

    def prepare_data(self) -> None:
        self.directory  # noqa: B018 - generates the shards once, on the local rank 0

    @property
    def directory(self) -> Path:
        if self._directory is None:
            from vidistill.data.synthetic import SyntheticConfig, ensure_dataset

            self._directory = ensure_dataset(self.root, SyntheticConfig(**self.generator))
        return self._directory

    def vocabulary_path(self) -> str:
        return str(self.directory / "vocabulary.csv")

    def resolve(self, files: Files) -> Files:
        if files is None:
            return None
        patterns = [files] if isinstance(files, str) else list(files)
        # URLs (remote shards, or file:// ones) name their files themselves.
        return [p if protocol(p) else str(self.directory / p) for p in map(str, patterns)]
