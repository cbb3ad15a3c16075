"""The contract every backbone keeps: frames and mask in, logits and representations out."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class BackboneOutput:
    """What a backbone returns.

    Attributes:
        logits: [B, C] class scores before the sigmoid.
        embedding: [B, E] the representation the classifier reads (used by representation
            losses in distillation).
        intermediate: named intermediate representations, e.g. per-block states [B, b, H].
        members: the outputs of a mixture's members (empty for a single backbone).
    """

    logits: torch.Tensor
    embedding: torch.Tensor
    intermediate: dict[str, torch.Tensor] = field(default_factory=dict)
    members: list[BackboneOutput] = field(default_factory=list)


class Backbone(nn.Module):
    """Base class: ``forward(frames [B, T, D], mask [B, T]) -> BackboneOutput``.

    Subclasses keep their classifier in ``self.classifier`` (a module mapping [B, E] to logits
    [B, C]), which lets a LightningModule start it at the class priors and lets distillation share
    or swap classifiers, and set ``embedding_size`` (E), which lets distillation size a projection
    between two backbones' embeddings before training starts.
    """

    classifier: nn.Module
    embedding_size: int
    # Whether a traced or exported graph of this backbone is fixed to the number of frames of
    # its example input (an unrolled recurrence); the batch size stays free either way.
    export_fixed_frames: bool = False

    def initialize_output_bias(self, log_odds: torch.Tensor) -> None:
        """Start every class at its prior (log-odds [C]) instead of p = 0.5."""
        self.classifier.initialize_output_bias(log_odds)

    def together_key(self) -> Hashable | None:
        """Backbones of one class with equal keys can compute their outputs on the same input in
        one :meth:`forward_together` call (a mixture's members); None: this one runs alone."""
        return None

    @classmethod
    def forward_together(
        cls, backbones: Sequence[Backbone], frames: torch.Tensor, mask: torch.Tensor
    ) -> list[BackboneOutput]:
        """The outputs of ``backbones`` (of this class, equal :meth:`together_key`) on frames
        [B, T, D] and mask [B, T], as their own forward passes give them, in order. (A class
        that computes them together does not call the backbones' forward hooks.)"""
        return [backbone(frames, mask) for backbone in backbones]

    def paper_flops_per_frame(self) -> int | None:
        """Multiply-adds per frame in the papers' convention: the frame-level layers of the rgb
        branch only (see :mod:`vidistill.models.flops`); None for a family the papers do not
        count."""
        return None


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames: frames [B, T, D], mask [B, T] -> [B, D]; empty rows give 0."""
    weights = mask.to(frames.dtype).unsqueeze(1)  # [B, 1, T]
    # A matmul reads the frames once; frames * weights would first write a copy of them.
    total = torch.bmm(weights, frames).squeeze(1)  # [B, D]
    return total / weights.sum(-1).clamp_min(1.0)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
