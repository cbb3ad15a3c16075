"""Temporal concept localization, the MOD paper's three phases (2019 YouTube-8M challenge).

1. **Candidates.** The video-level model scores each whole video; its ``top_candidates`` (20)
   most probable classes are the video's candidates. On rated data the *candidate recall* is the
   share of positively rated (video, class) pairs whose class is among the video's candidates
   (the paper reports 97%). Candidates are taken over the whole vocabulary, as in the paper; the
   segment whitelist applies afterwards.
2. **Segment scores.** The segment model scores every 5-frame segment of the video.
3. **Combination.** Each candidate (segment, class) pair of a whitelisted class scores
   ``P_video ** a * P_segment ** b`` (a = 0.05, b = 0.95 in the paper). ``a = 1, b = 0`` gives
   every segment its video's score (the "video scores only" baseline: the segment model is then
   not run at all); ``a = 0, b = 1`` ranks by the segment model alone.
4. **Top K per class.** Each whitelisted class keeps its K (100,000) best segments, and the lists
   form the ``Class,Segments`` submission.

Phases 1-3 on a batch are in :mod:`.scoring` (with the frames each model sees), phase 4 and its
tie rule in :mod:`.ranking`, the 2019 file formats in :mod:`.submission`. This module runs them:
:func:`localize` over batches and models in memory, :func:`run` for ``localize.py`` (checkpoints,
data, whitelist, ratings, the submission file and ``metrics.json``). Candidate classes of equal
video probability are taken in class index order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from vidistill.data.frames import FrameSelection
from vidistill.devices import resolve_device
from vidistill.inference.writers import check_output
from vidistill.layout import write_record
from vidistill.lit.checkpoints import load_model
from vidistill.localization.ranking import ClassTopK, SegmentKeys, offer
from vidistill.localization.scoring import (
    VideoFrames,
    candidate_classes,
    candidate_hits,
    combine_scores,
    positive_pairs,
    segment_index,
    segment_probabilities,
    segments_of,
)
from vidistill.localization.submission import (
    files_are_rated,
    read_segment_ratings,
    read_whitelist,
    write_submission_csv,
)
from vidistill.metrics.segments import segment_map_at_k
from vidistill.runs.builders import build_datamodule, config_record
from vidistill.runs.training import format_metrics

__all__ = ["LocalizationResult", "LocalizationSettings", "localize", "run"]

log = logging.getLogger(__name__)

SUBMISSION_FILE = "submission.csv"
WHITELIST_FILE = "segment_label_ids.csv"


@dataclass(frozen=True)
class LocalizationSettings:
    """The knobs of the pipeline, checked on construction.

    Attributes:
        top_candidates: candidate classes per video (phase 1).
        video_exponent, segment_exponent: a and b of ``P_video ** a * P_segment ** b``.
        segments_per_class: K, the segments kept per class.
        segment_batch_size: segments per forward pass of the segment model.
    """

    top_candidates: int = 20
    video_exponent: float = 0.05
    segment_exponent: float = 0.95
    segments_per_class: int = 100_000
    segment_batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.top_candidates < 1:
            raise ValueError(
                f"top_candidates={self.top_candidates}: at least one candidate class per video "
                "is needed, else no segment is scored"
            )
        for name in ("video_exponent", "segment_exponent"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value}: expected a finite number >= 0")
        if self.video_exponent == 0 and self.segment_exponent == 0:
            raise ValueError(
                "video_exponent and segment_exponent are both 0: every score would be 1"
            )
        if self.segments_per_class < 1:
            raise ValueError(f"segments_per_class={self.segments_per_class}: expected K >= 1")
        if self.segment_batch_size < 1:
            raise ValueError(f"segment_batch_size={self.segment_batch_size}: expected >= 1")

    @property
    def uses_segment_model(self) -> bool:
        return self.segment_exponent > 0


@dataclass
class LocalizationResult:
    """What :func:`localize` found.

    Attributes:
        submission: class -> segment ids ``video_id:start`` best first, whitelisted classes with
            at least one entry, in class order.
        counts: ``videos``, ``segments`` (scored), ``candidate_pairs`` ((segment, class) pairs
            ranked: segments x whitelisted candidates), ``classes_with_entries``.
        candidate_recall: phase 1 recall on the given positives (None without any).
    """

    submission: dict[int, list[str]]
    counts: dict[str, int]
    candidate_recall: float | None = None


# --------------------------------------------------------------------------------------------
# The phases over batches in memory
# --------------------------------------------------------------------------------------------


def localize(
    batches: Iterable[dict],
    video_model: nn.Module,
    segment_model: nn.Module | None,
    whitelist: Sequence[int],
    settings: LocalizationSettings,
    video_frames: VideoFrames | None = None,
    positives: Mapping[str, set[int]] | None = None,
) -> LocalizationResult:
    """Run the three phases over ``batches`` and rank each whitelisted class's segments.

    Args:
        batches: dicts with float32 ``frames`` [B, T, D] (all frames, dequantized, padding 0.0),
            bool ``mask`` [B, T] (valid frames first) and ``ids`` (B video ids), on the models'
            device.
        video_model, segment_model: map (frames, mask) to an output with ``logits`` [., C];
            run in eval mode under ``torch.inference_mode``. ``segment_model`` may be None when
            ``settings.segment_exponent`` is 0 (it is not run then anyway).
        whitelist: the classes to rank segments for, each in [0, C).
        settings: see :class:`LocalizationSettings`.
        video_frames: the video model's frame selection; None = the batch's frames as they are.
        positives: video id -> positively rated classes, for the candidate recall.
    """
    if settings.uses_segment_model and segment_model is None:
        raise ValueError(
            f"segment_exponent={settings.segment_exponent} needs a segment model (0 ranks by "
            "video scores alone)"
        )
    classes = np.unique(np.asarray(whitelist, dtype=np.int64))
    if classes.size == 0:
        raise ValueError("the class whitelist is empty: no class to rank segments for")
    keys = SegmentKeys()
    buffers = {int(c): ClassTopK(settings.segments_per_class, order=keys.order) for c in classes}
    counts = {"videos": 0, "segments": 0, "candidate_pairs": 0}
    hits = 0
    allowed: torch.Tensor | None = None  # bool [C], known once the first batch gives C
    video_model.eval()
    if settings.uses_segment_model:
        segment_model.eval()
    with torch.inference_mode():
        for batch in batches:
            frames, mask, ids = batch["frames"], batch["mask"], list(batch["ids"])
            first = keys.register(ids)
            view = video_frames(frames, mask, ids) if video_frames is not None else (frames, mask)
            p_video = torch.sigmoid(video_model(*view).logits)  # [B, C]
            if allowed is None:
                allowed = _allowed_classes(classes, p_video.shape[1], p_video.device)
            candidates, p_candidates = candidate_classes(p_video, settings.top_candidates)
            if positives is not None:
                hits += candidate_hits(ids, candidates, positives)
            video, number, scores = _segment_scores(
                frames, mask, candidates, p_candidates, segment_model, settings
            )
            segment_keys = keys.pack(video + first, number)
            counts["candidate_pairs"] += _offer_whitelisted(
                buffers, allowed, candidates[video], scores, segment_keys
            )
            counts["videos"] += len(ids)
            counts["segments"] += int(video.numel())
    return _result(buffers, keys, counts, hits, positives)


def _segment_scores(
    frames: torch.Tensor,
    mask: torch.Tensor,
    candidates: torch.Tensor,
    p_candidates: torch.Tensor,
    segment_model: nn.Module | None,
    settings: LocalizationSettings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Phases 2 and 3 on one batch: ``(video [N], number [N], scores [N, m])`` for its segments
    and the candidates ``[B, m]`` (with their video probabilities ``[B, m]``) of their videos."""
    if settings.uses_segment_model:
        segments = segments_of(frames, mask)
        video, number = segments.video, segments.number
        p_segment = segment_probabilities(
            segment_model, segments, candidates[video], settings.segment_batch_size
        )
    else:  # video scores only: segments are just positions, no frames are cut
        video, number = segment_index(mask)
        p_segment = None
    scores = combine_scores(
        p_candidates[video], p_segment, settings.video_exponent, settings.segment_exponent
    )
    return video, number, scores


def _offer_whitelisted(
    buffers: dict[int, ClassTopK],
    allowed: torch.Tensor,
    classes: torch.Tensor,
    scores: torch.Tensor,
    keys: torch.Tensor,
) -> int:
    """Offer the whitelisted (segment, class) pairs of ``classes`` [N, m] with ``scores``
    [N, m] and segment ``keys`` [N] to the buffers; returns how many pairs were offered."""
    keep = allowed[classes]  # [N, m]
    offer(
        buffers,
        classes[keep].cpu().numpy(),
        scores[keep].float().cpu().numpy(),
        keys[:, None].expand_as(keep)[keep].cpu().numpy(),
    )
    return int(keep.sum())


def _result(
    buffers: dict[int, ClassTopK],
    keys: SegmentKeys,
    counts: dict[str, int],
    hits: int,
    positives: Mapping[str, set[int]] | None,
) -> LocalizationResult:
    """The ranked lists as a submission, with the counts and the candidate recall."""
    submission = {}
    for c, buffer in buffers.items():
        _, ranked = buffer.ranked()
        if ranked.size:
            submission[c] = [keys.segment_id(key) for key in ranked.tolist()]
    counts["classes_with_entries"] = len(submission)
    total = sum(len(rated) for rated in positives.values()) if positives is not None else 0
    recall = hits / total if total else None
    return LocalizationResult(submission, counts, recall)


def _allowed_classes(classes: np.ndarray, num_classes: int, device: torch.device) -> torch.Tensor:
    """bool [C], True on the whitelist; ValueError for a class outside the model's outputs."""
    if classes[0] < 0 or classes[-1] >= num_classes:
        outside = classes[(classes < 0) | (classes >= num_classes)].tolist()
        raise ValueError(
            f"whitelist classes {outside[:5]} are outside the models' {num_classes} classes"
        )
    allowed = torch.zeros(num_classes, dtype=torch.bool, device=device)
    allowed[torch.from_numpy(classes).to(device)] = True
    return allowed


# --------------------------------------------------------------------------------------------
# localize.py
# --------------------------------------------------------------------------------------------


def run(cfg: DictConfig) -> dict[str, Any]:
    """``localize.py``: localize ``cfg.files`` with the models of ``cfg.video_ckpt`` and
    ``cfg.segment_ckpt``, write the submission CSV and ``metrics.json`` to the run directory.

    Every input is checked before scoring starts. On segment-rated files (``cfg.evaluate``:
    auto, true or false) the submission is scored with the 2019 MAP@K over the whitelisted
    classes. Returns the ``metrics.json`` record's ``metrics``.
    """
    settings = LocalizationSettings(
        top_candidates=cfg.top_candidates,
        video_exponent=cfg.video_exponent,
        segment_exponent=cfg.segment_exponent,
        segments_per_class=cfg.segments_per_class,
        segment_batch_size=cfg.segment_batch_size,
    )
    output = Path(cfg.get("output") or Path(cfg.paths.output_dir) / SUBMISSION_FILE)
    check_output(output, cfg.overwrite)
    device = resolve_device(cfg.device)
    video_model, video_info, segment_model = _models(cfg, settings)
    num_classes = video_info["data"]["num_classes"]
    video_frames = FrameSelection.from_dict(video_info["data"]["frames"])
    datamodule = _datamodule(cfg, video_frames, num_classes)
    files = datamodule.datasets["predict"].files
    whitelist = read_whitelist(_whitelist_path(cfg, datamodule), num_classes)
    ratings = _ratings(cfg, files, num_classes)

    for model in (video_model, segment_model):
        if model is not None:
            model.to(device)
    result = localize(
        _batches_on(datamodule, device),
        video_model,
        segment_model,
        whitelist,
        settings,
        VideoFrames(video_frames),
        positive_pairs(ratings) if ratings is not None else None,
    )
    write_submission_csv(output, result.submission, overwrite=cfg.overwrite)
    log.info("submission written to %s", output)

    metrics: dict[str, Any] = {}
    if ratings is not None:
        metrics["map_at_k"] = segment_map_at_k(
            result.submission, ratings, k=settings.segments_per_class, classes=whitelist.tolist()
        )
        metrics["candidate_recall"] = result.candidate_recall
    metrics.update(result.counts)
    _write_record(cfg, metrics, output, files, segment_model is not None)
    print(format_metrics(metrics))
    return metrics


def _models(
    cfg: DictConfig, settings: LocalizationSettings
) -> tuple[nn.Module, dict[str, Any], nn.Module | None]:
    """``(video model, its checkpoint info, segment model or None when it is not used)``."""
    video_model, video_info = _load(cfg.video_ckpt, "video_ckpt")
    num_classes = video_info["data"]["num_classes"]
    if not settings.uses_segment_model:
        if cfg.get("segment_ckpt"):
            log.info("segment_exponent=0: segment_ckpt=%s is not used", cfg.segment_ckpt)
        return video_model, video_info, None
    if not cfg.get("segment_ckpt"):
        raise ValueError(
            f"segment_ckpt is needed for segment_exponent={settings.segment_exponent} "
            "(segment_exponent=0 ranks by the video model alone)"
        )
    segment_model, segment_info = _load(cfg.segment_ckpt, "segment_ckpt")
    if segment_info["data"]["num_classes"] != num_classes:
        raise ValueError(
            f"segment_ckpt={cfg.segment_ckpt} predicts {segment_info['data']['num_classes']} "
            f"classes but video_ckpt={cfg.video_ckpt} predicts {num_classes}"
        )
    return video_model, video_info, segment_model


def _load(path: str, name: str) -> tuple[nn.Module, dict[str, Any]]:
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"{name}={path}: no such checkpoint file")
    model, info = load_model(path)
    if info["data"].get("mode") == "video":
        raise ValueError(
            f"{name}={path} was trained on video-level features (data.mode=video); "
            "localization feeds frames, so it needs a frame- or segment-level model"
        )
    return model, info


def _datamodule(
    cfg: DictConfig, video_frames: FrameSelection, num_classes: int
) -> pl.LightningDataModule:
    """The input files as all-frames batches, truncated to ``data.max_frames`` (null: the video
    model's), checked against the video model's vocabulary size (``num_classes``)."""
    with open_dict(cfg):
        cfg.data.mode = "frame"
        cfg.data.sampler = "all"
        if cfg.data.get("max_frames") is None:
            cfg.data.max_frames = video_frames.max_frames
    datamodule = build_datamodule(cfg)
    if cfg.num_classes != num_classes:
        raise ValueError(
            f"video_ckpt={cfg.video_ckpt} predicts {num_classes} classes but the "
            f"data's vocabulary has {cfg.num_classes}"
        )
    datamodule.setup("predict")
    return datamodule


def _whitelist_path(cfg: DictConfig, datamodule: pl.LightningDataModule) -> Path:
    if cfg.get("whitelist"):
        path = Path(cfg.whitelist)
    else:
        directory = getattr(datamodule, "directory", None)
        if directory is None:
            raise ValueError(
                "whitelist=null needs data that ships its segment_label_ids.csv "
                "(data=synthetic); give whitelist=/path/to/segment_label_ids.csv"
            )
        path = Path(directory) / WHITELIST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"whitelist={path}: no such file")
    return path


def _ratings(
    cfg: DictConfig, files: Sequence[str], num_classes: int
) -> list[tuple[str, int, float]] | None:
    """The files' segment ratings when the run evaluates (``cfg.evaluate``), else None."""
    if cfg.evaluate not in ("auto", True, False):
        raise ValueError(f"evaluate={cfg.evaluate!r}: expected auto, true or false")
    rated = cfg.evaluate is not False and files_are_rated(files)
    if cfg.evaluate is True and not rated:
        raise ValueError(f"evaluate=true but {files[0]} carries no segment ratings")
    # Read before scoring: a bad rating stops the run before the models spend their time.
    return list(read_segment_ratings(files, num_classes)) if rated else None


def _batches_on(datamodule: pl.LightningDataModule, device: torch.device) -> Iterator[dict]:
    """The prediction loader's batches moved to ``device`` and dequantized there."""
    for batch in datamodule.predict_dataloader():
        moved = {
            key: value.to(device) if torch.is_tensor(value) else value
            for key, value in batch.items()
        }
        yield datamodule.on_after_batch_transfer(moved, 0)


def _write_record(
    cfg: DictConfig, metrics: dict[str, Any], output: Path, files: list[str], segment_used: bool
) -> None:
    """``metrics.json`` of the run: the metrics, what produced them and where the output is."""
    record = {
        "metrics": metrics,
        "submission": str(output.resolve()),
        "video_checkpoint": str(Path(cfg.video_ckpt).resolve()),
        "segment_checkpoint": str(Path(cfg.segment_ckpt).resolve()) if segment_used else None,
        "files": files,
        "config": config_record(cfg),
    }
    path = write_record(cfg.paths.output_dir, record)
    log.info("metrics written to %s", path)
