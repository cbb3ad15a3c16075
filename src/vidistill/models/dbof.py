"""Deep Bag of Frames (DBoF), the YouTube-8M starter code's frame-level model.

Each frame is batch-normalized and projected to a large "cluster" space (BatchNorm, ReLU6);
the projections are max-pooled over the video's frames, then a hidden layer (BatchNorm, ReLU6)
feeds the classifier (a mixture of experts by default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.features import FEATURE_SIZE, RGB_SIZE
from vidistill.models.base import Backbone, BackboneOutput
from vidistill.models.layers import TF_BN_EPS, TF_BN_MOMENTUM, build_classifier, pack, unpack


class DBoF(Backbone):
    """frames [B, T, D], mask [B, T] -> logits [B, C].

    ``pooling`` is ``"max"`` (the starter default) or ``"mean"``, over valid frames only.
    ``embedding`` is the hidden representation [B, H].

    The defaults are the starter code's (cluster 8192, hidden 1024, MoE with 2 experts);
    ``conf/model/dbof_paper.yaml`` is the MOD paper's smaller baseline.
    """

    def __init__(
        self,
        num_classes: int,
        cluster_size: int = 8192,
        hidden_size: int = 1024,
        pooling: str = "max",
        classifier: str = "moe",
        num_mixtures: int = 2,
        feature_size: int = FEATURE_SIZE,
        bn_momentum: float = TF_BN_MOMENTUM,
        bn_eps: float = TF_BN_EPS,
    ):
        super().__init__()
        if pooling not in ("max", "mean"):
            raise ValueError(f"DBoF pooling must be 'max' or 'mean', got {pooling!r}")
        self.pooling = pooling
        bn = dict(eps=bn_eps, momentum=bn_momentum)
        self.input_bn = nn.BatchNorm1d(feature_size, **bn)
        self.project = nn.Linear(feature_size, cluster_size, bias=False)
        self.project_bn = nn.BatchNorm1d(cluster_size, **bn)
        self.hidden = nn.Linear(cluster_size, hidden_size, bias=False)
        self.hidden_bn = nn.BatchNorm1d(hidden_size, **bn)
        self.classifier = build_classifier(classifier, hidden_size, num_classes, num_mixtures)
        self.embedding_size = hidden_size

    def paper_flops_per_frame(self) -> int:
        """The frame projection's rgb columns, ``1024 * cluster_size``."""
        return RGB_SIZE * self.project.out_features

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        x = F.relu6(self.project_bn(self.project(self.input_bn(pack(frames, mask)))))
        if self.pooling == "max":
            pooled = unpack(x, mask, fill=float("-inf")).amax(1)
        else:
            pooled = unpack(x, mask).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        embedding = F.relu6(self.hidden_bn(self.hidden(pooled)))
        return BackboneOutput(
            logits=self.classifier(embedding), embedding=embedding, intermediate={"pooled": pooled}
        )
