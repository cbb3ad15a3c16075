"""Where a trained frame selector looks: how far its picks are from Uniform-k's frames.

A :class:`~vidistill.models.selection.SegmentFrameSelector` picks one frame per Uniform-k bin and,
untrained, exactly Uniform-k's frame of each bin. How much training moved it is measured on real
videos: the share of bins whose pick is still Uniform-k's frame, and the mean distance of the
picks from those frames in bin widths (0 to about 0.5).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

PICK_COLUMNS = ["uniform_share", "mean_move_bins", "videos"]


@torch.no_grad()
def selector_picks(
    checkpoint: str | os.PathLike, files: Sequence[str], max_videos: int = 512
) -> dict[str, float]:
    """The trained selector of ``checkpoint`` on the first ``max_videos`` videos of ``files``:
    ``uniform_share`` (bins whose pick is Uniform-k's frame), ``mean_move_bins`` (mean |pick -
    Uniform-k's frame| in bin widths) and ``videos``. ValueError for a model without one."""
    from vidistill.data import YT8MDataset, dequantize_batch
    from vidistill.data.frames import FrameSelection
    from vidistill.data.samplers import build_sampler
    from vidistill.lit.checkpoints import load_model

    model, info = load_model(checkpoint)
    selector = getattr(model, "selector", None)
    if selector is None:
        raise ValueError(f"{checkpoint}: its model has no learned frame selector")
    uniform = build_sampler("uniform", selector.k)
    frames = FrameSelection("all", max_frames=info["data"]["frames"]["max_frames"])
    dataset = YT8MDataset(
        list(files), num_classes=info["data"]["num_classes"], batch_size=128, frames=frames
    )
    same = total = 0
    moves: list[float] = []
    for batch in dataset:
        batch = dequantize_batch(batch)
        choice = selector.eval()(batch["frames"], batch["mask"])
        for row, n in enumerate(batch["num_frames"].tolist()):
            picked = choice.indices[row][choice.mask[row]].numpy()
            anchors = uniform(n)
            same += int((picked == anchors).sum())
            total += len(anchors)
            moves.append(float(np.abs(picked - anchors).mean()) * min(n, selector.k) / n)
            if len(moves) == max_videos:
                return _summary(same, total, moves)
    return _summary(same, total, moves)


def _summary(same: int, total: int, moves: list[float]) -> dict[str, float]:
    return {
        "uniform_share": same / max(total, 1),
        "mean_move_bins": float(np.mean(moves)) if moves else float("nan"),
        "videos": len(moves),
    }
