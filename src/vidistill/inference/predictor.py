"""Streaming inference: TFRecord shards in, top-k predictions out, at the cost of the frames the
model reads.

:class:`Predictor` is a trained model ready for inference: rebuilt from its checkpoint (the
whole model, or one member of a mixture), in eval mode on its device, with the frame selection it
was trained with. :func:`predict_to_file` streams shards through it: worker processes read the
records and decode only the frames the sampler picks (still uint8), batches are dequantized on
the model's device, and each batch's top-k classes go straight to the output file, so memory does
not grow with the number of videos.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vidistill.atomic import atomic_write
from vidistill.data.batching import dequantize_batch
from vidistill.data.datasets import YT8MDataset
from vidistill.data.frames import FrameSelection, config_keys
from vidistill.data.quantization import dequantize
from vidistill.data.samplers import setting_names
from vidistill.devices import resolve_device
from vidistill.inference.writers import open_prediction_file
from vidistill.lit.checkpoints import load_model
from vidistill.models.mixture import member_path, subtree
from vidistill.models.selection import run_on_choice

log = logging.getLogger(__name__)

SUMMARY_SUFFIX = ".summary.json"


@dataclass
class TopK:
    """One batch of predictions: ``ids`` (B), ``classes`` int64 [B, k] and ``scores`` float32
    [B, k], by descending score."""

    ids: list[str]
    classes: np.ndarray
    scores: np.ndarray


class Predictor:
    """A trained model for inference.

    Args:
        checkpoint: a checkpoint written by ``train.py``.
        member: a path in a mixture tree (``[0]``: the root's first member, see
            :func:`vidistill.models.mixture.subtree`) to predict with that member alone.
        device: where the model runs (``"auto"``: CUDA when available).
        frames: frame-selection keys named as in a data config (``sampler``, ``k``,
            ``max_frames``, ``seed``, ``stride``, ...; others are ignored) that replace the
            checkpoint's; None values keep them (see :func:`frame_selection`).

    ``model`` is the whole LightningModule, ``info`` the checkpoint's stored run config (see
    :func:`vidistill.lit.checkpoints.load_model`), ``backbone`` what predicts, ``frames`` the
    :class:`FrameSelection` videos are read with.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        member: Sequence[int] | int | None = None,
        device: str | torch.device = "auto",
        frames: Mapping[str, Any] | None = None,
    ):
        model, info = load_model(checkpoint)
        self.model, self.info = model, info
        self.checkpoint = str(checkpoint)
        self.backbone = subtree(model.backbone, member)
        path = member_path(member)
        self.member = list(path) if path else None
        self.device = resolve_device(device)
        self.backbone.to(self.device).eval()
        # A learned frame selector (data.sampler=learned) picks the frames the backbone sees.
        self.selector = getattr(model, "selector", None)
        if self.selector is not None:
            self.selector.to(self.device).eval()
        self.num_classes = info["data"]["num_classes"]
        self.mode = info["data"].get("mode", "frame")
        self.frames = frame_selection(self.checkpoint, info["data"]["frames"], frames or {})

    @torch.inference_mode()
    def probabilities(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, C] of dequantized frames [B, T, D] with mask [B, T] (every
        frame of the videos for a model with a learned selector, which picks its k)."""
        output, _ = run_on_choice(self.backbone, self.selector, frames, mask)
        return torch.sigmoid(output.logits)

    @torch.inference_mode()
    def _backbone_probabilities(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.backbone(frames, mask).logits)

    def batch_probabilities(
        self,
        frames: torch.Tensor,
        mask: torch.Tensor,
        num_frames: torch.Tensor,
        dequantize_range: tuple[float, float] = (2.0, -2.0),
    ) -> torch.Tensor:
        """Class probabilities [B, C] of a batch as read: uint8 frames [B, T, D] and mask
        [B, T] on the model's device, lengths [B]. Only the frames the backbone sees are
        dequantized: a learned selector first picks them from every frame's dequantized audio."""
        high, low = dequantize_range
        if self.selector is not None:
            frames, mask, num_frames = _select_frames(self.selector, frames, mask, high, low)
        view = dequantize_batch(
            {"frames": frames, "mask": mask, "num_frames": num_frames}, high, low
        )
        return self._backbone_probabilities(view["frames"], mask)

    def dataset(
        self,
        files: str | Sequence[str],
        batch_size: int = 256,
        num_workers: int = 2,
        on_corrupt: str = "raise",
        skip_counter: Any = None,
        compression: str | None = None,
    ) -> YT8MDataset:
        """The shards (paths or URLs; ``compression="gzip"`` for gzip shards not named ``.gz``)
        read the way this model sees videos (its frames, in file order)."""
        return YT8MDataset(
            files,
            num_classes=self.num_classes,
            mode=self.mode,
            batch_size=batch_size,
            num_workers=num_workers,
            on_corrupt=on_corrupt,
            skip_counter=skip_counter,
            frames=self.frames,
            compression=compression,
        )

    def stream(
        self,
        dataset: YT8MDataset,
        top_k: int = 20,
        dequantize_range: tuple[float, float] = (2.0, -2.0),
    ) -> Iterator[TopK]:
        """Top-k predictions of every video of ``dataset``, a batch at a time."""
        if top_k < 1:
            raise ValueError(f"top_k={top_k}: expected at least 1")
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=dataset.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        k = min(top_k, self.num_classes)
        for batch in loader:
            frames = batch["frames"].to(self.device, non_blocking=True)
            mask = batch["mask"].to(self.device, non_blocking=True)
            probabilities = self.batch_probabilities(
                frames, mask, batch["num_frames"], dequantize_range
            )
            scores, classes = probabilities.topk(k, dim=1)
            yield TopK(batch["ids"], classes.cpu().numpy(), scores.float().cpu().numpy())


@torch.inference_mode()
def _select_frames(
    selector: torch.nn.Module, frames: torch.Tensor, mask: torch.Tensor, high: float, low: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The selector's frames of a batch, still uint8: it reads the dequantized audio of every
    frame (its cheap signal), and only the chosen frames go on to be dequantized. uint8 frames
    [B, T, D] and mask [B, T] -> chosen frames uint8 [B, k, D], their mask [B, k], lengths [B]."""
    start, stop = selector.columns
    signal = dequantize(frames[..., start:stop], high, low)
    signal.masked_fill_(~mask.unsqueeze(-1), 0.0)
    choice = selector(signal, mask)
    return choice.gather(frames), choice.mask, choice.mask.sum(1).cpu()


def frame_selection(
    checkpoint: str, stored: Mapping[str, Any], overrides: Mapping[str, Any]
) -> FrameSelection:
    """The frames to read videos with: the checkpoint's (``stored``, its
    ``FrameSelection.to_dict()``) with the frame-selection keys of ``overrides`` (a data
    config) that are not None. Overriding the sampler drops the stored one's settings; a ``k``
    without a sampler means Uniform-k (the students' frames). ValueError naming the checkpoint
    when nothing says which frames the model sees."""
    given = {key: overrides[key] for key in config_keys() if overrides.get(key) is not None}
    chosen = dict(stored)
    if given.get("sampler", chosen.get("sampler")) != chosen.get("sampler"):
        # Settings belong to the sampler they were given for.
        chosen = {key: value for key, value in chosen.items() if key not in setting_names()}
    chosen.update(given)
    if chosen.get("sampler") is None and chosen.get("k") is not None:
        chosen["sampler"] = "uniform"
    if chosen.get("sampler") is None:
        raise ValueError(
            f"{checkpoint} does not record which frames its model was trained on; pass k "
            "(Uniform-k), e.g. k=30, or a sampler: data.sampler=all for every frame"
        )
    return FrameSelection.from_dict(chosen)


def predict_to_file(
    predictor: Predictor,
    files: str | Sequence[str],
    output: str | os.PathLike,
    top_k: int = 20,
    batch_size: int = 256,
    num_workers: int = 2,
    on_corrupt: str = "raise",
    overwrite: bool = False,
    dequantize_range: tuple[float, float] = (2.0, -2.0),
    compression: str | None = None,
) -> dict[str, Any]:
    """Write the top ``top_k`` classes of every video of ``files`` to ``output`` (the 2018
    Kaggle CSV, or Parquet for a ``.parquet`` name) and a summary beside it
    (``<output>.summary.json``: videos, records skipped under ``on_corrupt=skip``, files read
    only up to a broken record, seconds, videos/s, the checkpoint and frames); returns the
    summary.

    An existing output is refused unless ``overwrite``; rows go to ``<output>.partial`` until
    the last batch is written, so an interrupted run leaves no file that looks complete.
    """
    start = time.perf_counter()
    skipped = multiprocessing.Value("q", 0)
    with open_prediction_file(output, min(top_k, predictor.num_classes), overwrite) as predictions:
        dataset = predictor.dataset(
            files, batch_size, num_workers, on_corrupt, skipped, compression
        )
        for batch in predictor.stream(dataset, top_k, dequantize_range):
            predictions.write_batch(batch.ids, batch.classes, batch.scores)
    seconds = time.perf_counter() - start
    summary = {
        "output": str(output),
        "videos": predictions.rows,
        "skipped_records": skipped.value,
        "broken_files": dataset.broken_files,
        "seconds": seconds,
        "videos_per_second": predictions.rows / seconds if seconds > 0 else None,
        "checkpoint": predictor.checkpoint,
        "member": predictor.member,
        "frames": predictor.frames.to_dict(),
        "files": dataset.files,
    }
    atomic_write(f"{output}{SUMMARY_SUFFIX}", json.dumps(summary, indent=2))
    log.info(
        "%d videos predicted in %.1f s (%.0f videos/s), %d corrupt records skipped -> %s",
        summary["videos"],
        seconds,
        summary["videos_per_second"] or 0.0,
        summary["skipped_records"],
        output,
    )
    return summary
