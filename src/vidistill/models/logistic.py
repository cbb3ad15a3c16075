"""Frame-mean logistic regression: the simplest YT8M baseline."""

from __future__ import annotations

import torch

from vidistill.features import FEATURE_SIZE
from vidistill.models.base import Backbone, BackboneOutput, masked_mean
from vidistill.models.layers import LogisticClassifier


class FrameMeanLogistic(Backbone):
    """Average the valid frames, then one linear layer.

    Frames [B, T, D] with mask [B, T] -> logits [B, C]; the embedding is the frame mean [B, D].
    On video-level data (one "frame" holding the mean features) it is the starter code's
    video-level logistic model. Parameters: (D + 1) * C, 4.45M at D = 1152 and C = 3862.
    """

    def __init__(self, num_classes: int, feature_size: int = FEATURE_SIZE):
        super().__init__()
        self.classifier = LogisticClassifier(feature_size, num_classes)
        self.embedding_size = feature_size

    def paper_flops_per_frame(self) -> int:
        """Averaging frames takes no multiplications."""
        return 0

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        pooled = masked_mean(frames, mask)
        return BackboneOutput(logits=self.classifier(pooled), embedding=pooled)
