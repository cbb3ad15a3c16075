"""NetVLAD as in the YouTube-8M 2017 winner (Miech et al., "Learnable pooling with context
gating"), one of the fewer-frames paper's backbones.

Frames are batch-normalized, rgb and audio aggregated by separate NetVLAD layers, the
concatenation projected by a hidden linear layer (no activation), context-gated and classified
by a mixture of experts.
"""

from __future__ import annotations

import torch
from torch import nn

from vidistill.features import AUDIO_SIZE, RGB_SIZE
from vidistill.models.base import Backbone, BackboneOutput
from vidistill.models.layers import (
    TF_BN_EPS,
    TF_BN_MOMENTUM,
    ContextGating,
    NetVLADPooling,
    build_classifier,
    pool_modalities,
)


class NetVLAD(Backbone):
    """frames [B, T, 1152] (rgb then audio), mask [B, T] -> logits [B, C].

    The input BatchNorm normalizes valid frames only. ``embedding`` is the gated hidden
    representation [B, H]; ``intermediate["pooled"]`` the concatenated NetVLAD output.

    Presets: ``conf/model/netvlad.yaml`` (CPU-sized) and ``netvlad_paper.yaml``.
    """

    def __init__(
        self,
        num_classes: int,
        clusters: int = 256,
        audio_clusters: int = 128,
        hidden_size: int = 1024,
        dropout: float = 0.0,
        classifier: str = "moe",
        num_mixtures: int = 2,
        rgb_size: int = RGB_SIZE,
        audio_size: int = AUDIO_SIZE,
        bn_momentum: float = TF_BN_MOMENTUM,
        bn_eps: float = TF_BN_EPS,
    ):
        super().__init__()
        self.rgb_size = rgb_size
        bn = dict(bn_momentum=bn_momentum, bn_eps=bn_eps)
        self.input_bn = nn.BatchNorm1d(rgb_size + audio_size, eps=bn_eps, momentum=bn_momentum)
        self.video = NetVLADPooling(rgb_size, clusters, **bn)
        self.audio = NetVLADPooling(audio_size, audio_clusters, **bn)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(self.video.output_size + self.audio.output_size, hidden_size)
        self.gating = ContextGating(hidden_size, **bn)
        self.classifier = build_classifier(classifier, hidden_size, num_classes, num_mixtures)
        self.embedding_size = hidden_size

    def paper_flops_per_frame(self) -> int:
        """Soft assignment ``F K`` plus aggregation ``F K`` of the rgb branch."""
        return 2 * self.video.feature_size * self.video.clusters

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        pooled = pool_modalities(
            frames, mask, self.video, self.audio, self.rgb_size, frame_norm=self.input_bn
        )
        embedding = self.gating(self.hidden(self.dropout(pooled)))
        return BackboneOutput(
            logits=self.classifier(embedding),
            embedding=embedding,
            intermediate={"pooled": pooled},
        )
