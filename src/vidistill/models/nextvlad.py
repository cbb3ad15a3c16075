"""NeXtVLAD (Lin et al., 2018), the backbone of both papers' strongest models.

rgb and audio frames are aggregated by separate NeXtVLAD layers; the concatenation goes through
dropout, a hidden linear layer with BatchNorm (no activation), squeeze-and-excitation context
gating and a classifier (logistic in the papers).
"""

from __future__ import annotations

import torch
from torch import nn

from vidistill.features import AUDIO_SIZE, RGB_SIZE
from vidistill.models.base import Backbone, BackboneOutput
from vidistill.models.layers import (
    TF_BN_EPS,
    TF_BN_MOMENTUM,
    NeXtVLADPooling,
    SEContextGating,
    build_classifier,
    pool_modalities,
)


class NeXtVLAD(Backbone):
    """frames [B, T, 1152] (rgb then audio), mask [B, T] -> logits [B, C].

    The audio branch uses half the clusters and half the groups of the rgb branch. The output's
    ``embedding`` is the gated hidden representation [B, H] the classifier reads;
    ``intermediate["pooled"]`` is the concatenated NeXtVLAD output.

    Presets: ``conf/model/nextvlad.yaml`` (CPU-sized) and ``nextvlad_paper.yaml`` (8G, 128K, X2,
    2048H).
    """

    def __init__(
        self,
        num_classes: int,
        clusters: int = 128,
        groups: int = 8,
        expansion: int = 2,
        hidden_size: int = 2048,
        gating_reduction: int = 8,
        dropout: float = 0.5,
        classifier: str = "logistic",
        num_mixtures: int = 2,
        rgb_size: int = RGB_SIZE,
        audio_size: int = AUDIO_SIZE,
        bn_momentum: float = TF_BN_MOMENTUM,
        bn_eps: float = TF_BN_EPS,
    ):
        super().__init__()
        self.rgb_size = rgb_size
        bn = dict(bn_momentum=bn_momentum, bn_eps=bn_eps)
        self.video = NeXtVLADPooling(rgb_size, clusters, groups, expansion, **bn)
        self.audio = NeXtVLADPooling(audio_size, clusters // 2, groups // 2, expansion, **bn)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(
            self.video.output_size + self.audio.output_size, hidden_size, bias=False
        )
        self.hidden_bn = nn.BatchNorm1d(hidden_size, eps=bn_eps, momentum=bn_momentum)
        self.gating = SEContextGating(hidden_size, gating_reduction, **bn)
        self.classifier = build_classifier(classifier, hidden_size, num_classes, num_mixtures)
        self.embedding_size = hidden_size

    def paper_flops_per_frame(self) -> int:
        """Expansion ``F * lambda F`` + assignment ``lambda F * G K`` + aggregation
        ``K * lambda F`` of the rgb branch (the group attention, ``lambda F * G``, left out as
        in the fewer-frames paper's Table 6)."""
        wide = self.video.expand.out_features
        assign = self.video.assign.out_features
        return self.video.expand.in_features * wide + wide * assign + self.video.clusters * wide

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        pooled = pool_modalities(frames, mask, self.video, self.audio, self.rgb_size)
        embedding = self.gating(self.hidden_bn(self.hidden(self.dropout(pooled))))
        return BackboneOutput(
            logits=self.classifier(embedding),
            embedding=embedding,
            intermediate={"pooled": pooled},
        )
