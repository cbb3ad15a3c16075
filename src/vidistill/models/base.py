"""The contract every backbone keeps: frames and mask in, logits and representations out."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class BackboneOutput:
    """What a backbone returns.

    Attributes:
        logits: [B, C] class scores before the sigmoid.
        embedding: [B, E] the representation the classifier reads (used by representation
            losses in distillation).
        intermediate: named intermediate representations, e.g. per-block states [B, b, H].
    """

    logits: torch.Tensor
    embedding: torch.Tensor
    intermediate: dict[str, torch.Tensor] = field(default_factory=dict)


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames: frames [B, T, D], mask [B, T] -> [B, D]; empty rows give 0."""
    weights = mask.to(frames.dtype).unsqueeze(-1)
    return (frames * weights).sum(1) / weights.sum(1).clamp_min(1.0)
