"""What a run costs per video: multiply-adds of its model at the frames it sees (a learned
frame selector's included), counted once per model config and frame count, and the feature
bytes it dequantizes."""

from __future__ import annotations

import json
from functools import cache
from typing import Any


def flops_of(config: dict[str, Any]) -> dict[str, int | None]:
    """FLOPs of the run's backbone at the frames it sees; {} without a model in the config.
    A learned frame selector's cost, scoring every frame of a ``max_frames`` video, is added to
    ``flops_total`` and given alone as ``flops_selector`` (the papers' convention counts the
    rgb frame layers only, which the selector does not read)."""
    model = config.get("model", {})
    backbone = model.get("backbone")
    if backbone is None:
        return {}
    selector = model.get("selector")
    frames = config["data"]["k"] if selector else _frames_seen(config["data"])
    counts = dict(_count_flops(json.dumps(backbone, sort_keys=True), frames))
    if selector:
        max_frames = config["data"].get("max_frames") or 300
        counts["flops_selector"] = _selector_flops(json.dumps(selector, sort_keys=True), max_frames)
        counts["flops_total"] += counts["flops_selector"]
    return counts


def bytes_dequantized(config: dict[str, Any]) -> int | None:
    """Feature bytes a run's model dequantizes per ``max_frames`` video at inference (one byte a
    feature): every feature of the frames it sees; with a learned selector, the audio of every
    frame (what the selector reads) and the rgb of its k frames. None for segment and
    video-level runs."""
    from vidistill.features import AUDIO_SIZE, FEATURE_SIZE, RGB_SIZE

    data = config.get("data", {})
    if data.get("mode", "frame") != "frame":
        return None
    if (config.get("model") or {}).get("selector"):
        return (data.get("max_frames") or 300) * AUDIO_SIZE + data["k"] * RGB_SIZE
    return _frames_seen(data) * FEATURE_SIZE


@cache
def _selector_flops(selector_json: str, frames: int) -> int:
    from hydra.utils import instantiate

    return instantiate(json.loads(selector_json)).flops_per_video(frames)


def _frames_seen(data: dict[str, Any]) -> int:
    """Frames per example: 5-frame segments, one video-level frame, or what the sampler picks
    from a video of ``max_frames`` frames (k for the k-frame samplers)."""
    # Deferred: torch and the data layer load only when FLOPs are asked for.
    from vidistill.data.frames import FrameSelection
    from vidistill.features import SEGMENT_LENGTH

    mode = data.get("mode", "frame")
    if mode == "segment":
        return SEGMENT_LENGTH
    if mode == "video":
        return 1
    return FrameSelection.from_config(data).frames_per_video


@cache
def _count_flops(backbone_json: str, frames: int) -> dict[str, int | None]:
    """Counted once per (backbone config, frames): a sweep over seeds repeats the same model."""
    from hydra.utils import instantiate

    from vidistill.models.flops import count

    return count(instantiate(json.loads(backbone_json)), frames)
