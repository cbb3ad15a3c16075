"""NeXtVLAD (Lin et al., 2018), the backbone of both papers' strongest models.

rgb and audio frames are aggregated by separate NeXtVLAD layers; the concatenation goes through
dropout, a hidden linear layer with BatchNorm (no activation), squeeze-and-excitation context
gating and a classifier (logistic in the papers).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import nn

from vidistill.features import AUDIO_SIZE, RGB_SIZE
from vidistill.models.base import Backbone, BackboneOutput
from vidistill.models.layers import (
    TF_BN_EPS,
    TF_BN_MOMENTUM,
    SEContextGating,
    build_classifier,
    pack,
)
from vidistill.models.nextvlad_pooling import NeXtVLADPooling, pool_together


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
        return self.forward_together([self], frames, mask)[0]

    def together_key(self) -> Hashable:
        """NeXtVLADs whose rgb and audio layers have equal keys pool together (the heads, which
        cost little, run one by one and may differ)."""
        return (type(self), self.rgb_size, self.video.together_key(), self.audio.together_key())

    @classmethod
    def forward_together(
        cls, backbones: Sequence[NeXtVLAD], frames: torch.Tensor, mask: torch.Tensor
    ) -> list[BackboneOutput]:
        """The outputs of NeXtVLADs of equal :meth:`together_key` on the same frames [B, T, D]
        and mask [B, T]: the frames are packed once, each branch's layers pool together
        (:func:`~vidistill.models.nextvlad_pooling.pool_together`), then each head runs."""
        x = pack(frames, mask)
        rgb = backbones[0].rgb_size
        video = pool_together([b.video for b in backbones], x[:, :rgb], mask)  # [B, M, P_v]
        audio = pool_together([b.audio for b in backbones], x[:, rgb:], mask)  # [B, M, P_a]
        return [
            backbone.head(torch.cat([video[:, m], audio[:, m]], 1))
            for m, backbone in enumerate(backbones)
        ]

    def head(self, pooled: torch.Tensor) -> BackboneOutput:
        """pooled [B, P_video + P_audio] -> logits [B, C], embedding [B, H]."""
        embedding = self.gating(self.hidden_bn(self.hidden(self.dropout(pooled))))
        return BackboneOutput(
            logits=self.classifier(embedding),
            embedding=embedding,
            intermediate={"pooled": pooled},
        )
