"""Reusable layers of the papers' video models: frame packing, NetVLAD pooling, BatchNorms run
together, gating, classifiers (NeXtVLAD pooling: :mod:`vidistill.models.nextvlad_pooling`).

Frame-level layers run on *packed* frames: the valid frames of a batch gathered into one
``[N, D]`` matrix (``N = mask.sum()``). Padding is then never computed on, which saves the
padded share of every frame-level matmul (about half of a YT8M batch padded to 300 frames), and
batch statistics of frame-level BatchNorms come from real frames only, so padding can never change
an output, in training or evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# TensorFlow's BatchNorm defaults used by the papers' code (decay 0.999, epsilon 1e-3), in
# PyTorch's convention (momentum = 1 - decay).
TF_BN_MOMENTUM = 0.001
TF_BN_EPS = 1e-3


def pack(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The valid frames of a batch, row after row: frames [B, T, D], mask [B, T] -> [N, D].

    A batch without padding (k-frame students) gives a view of ``frames``, not a copy: the
    result is read, never written in place. (Not in a traced graph, which would keep whichever
    branch its example input took.)"""
    if not torch.jit.is_tracing() and mask.all():
        return frames.reshape(-1, frames.shape[-1])
    return frames[mask]


def unpack(packed: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Inverse of :func:`pack`: [N, ...] -> [B, T, ...] with ``fill`` at padded positions."""
    out = packed.new_full((*mask.shape, *packed.shape[1:]), fill)
    out[mask] = packed
    return out


def pool_modalities(
    frames: torch.Tensor,
    mask: torch.Tensor,
    video: nn.Module,
    audio: nn.Module,
    rgb_size: int,
    frame_norm: nn.Module | None = None,
) -> torch.Tensor:
    """Pool rgb and audio with their own layers and concatenate: frames [B, T, rgb + audio],
    mask [B, T] -> [B, P_video + P_audio]. The pooling layers take packed frames and the mask;
    ``frame_norm`` (e.g. a BatchNorm) runs on the packed frames first."""
    x = pack(frames, mask)
    if frame_norm is not None:
        x = frame_norm(x)
    return torch.cat([video(x[:, :rgb_size], mask), audio(x[:, rgb_size:], mask)], 1)


# --------------------------------------------------------------------------------------------
# VLAD pooling
# --------------------------------------------------------------------------------------------


class NetVLADPooling(nn.Module):
    """NetVLAD aggregation as in the YT8M 2017 winner (Willow): packed frames [N, F] -> [B, F * K].

    Soft assignment ``softmax(BN(x W))`` to ``K`` clusters, residuals to learned centres summed
    over frames, intra-normalization (L2 per cluster), flatten, global L2.

    Parameters: ``F K`` (assignment) ``+ 2 K`` (BN) ``+ F K`` (centres).
    """

    def __init__(
        self,
        feature_size: int,
        clusters: int = 64,
        bn_momentum: float = TF_BN_MOMENTUM,
        bn_eps: float = TF_BN_EPS,
    ):
        super().__init__()
        self.feature_size, self.clusters = feature_size, clusters
        self.assign = nn.Linear(feature_size, clusters, bias=False)
        self.assign_bn = nn.BatchNorm1d(clusters, eps=bn_eps, momentum=bn_momentum)
        self.centers = nn.Parameter(
            torch.randn(1, feature_size, clusters) / math.sqrt(feature_size)
        )
        nn.init.normal_(self.assign.weight, std=1 / math.sqrt(feature_size))

    @property
    def output_size(self) -> int:
        return self.feature_size * self.clusters

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """packed frames x [N, F] (see :func:`pack`), mask [B, T] -> [B, F * K]."""
        assignment = unpack(F.softmax(self.assign_bn(self.assign(x)), dim=-1), mask)  # [B, T, K]
        vlad = torch.bmm(assignment.transpose(1, 2), unpack(x, mask)).transpose(1, 2)  # [B, F, K]
        vlad = vlad - assignment.sum(1, keepdim=True) * self.centers
        vlad = F.normalize(vlad, dim=1)
        # flatten(1), not reshape(len(vlad), -1): a traced or exported graph keeps the batch
        # size free only if it is never read as a Python number.
        return F.normalize(vlad.flatten(1), dim=1)


def batch_norm_together(norms: Sequence[nn.BatchNorm1d], x: torch.Tensor) -> torch.Tensor:
    """M BatchNorms of C channels each, with the same settings (eps, momentum, affine, tracking,
    training flag), as one: x [N, M * C] (norm m reads channels m C .. (m + 1) C) -> [N, M * C].

    What each norm's own forward computes and updates (to float32 round-off): batch statistics
    are per channel either way, and the running statistics updated on the concatenation are
    copied back.
    """
    if len(norms) == 1:
        return norms[0](x)
    first = norms[0]  # the settings of all (see NeXtVLADPooling.together_key)
    updating = first.training and first.track_running_stats
    factor = 0.0 if first.momentum is None else first.momentum
    if updating:
        for norm in norms:
            norm.num_batches_tracked.add_(1)
        if first.momentum is None:  # cumulative average
            factor = 1.0 / float(first.num_batches_tracked)

    def joined(name: str) -> torch.Tensor | None:
        if getattr(first, name) is None:
            return None
        return torch.cat([getattr(norm, name) for norm in norms])

    # As nn.BatchNorm1d.forward: running statistics are read in evaluation, updated in training.
    use_buffers = not first.training or first.track_running_stats
    mean = joined("running_mean") if use_buffers else None
    var = joined("running_var") if use_buffers else None
    training = first.training or mean is None
    weight, bias = joined("weight"), joined("bias")
    output = F.batch_norm(x, mean, var, weight, bias, training, factor, first.eps)
    if updating:  # F.batch_norm updated the concatenations: hand each norm its share
        with torch.no_grad():
            for norm, m, v in zip(
                norms, mean.chunk(len(norms)), var.chunk(len(norms)), strict=True
            ):
                norm.running_mean.copy_(m)
                norm.running_var.copy_(v)
    return output


# --------------------------------------------------------------------------------------------
# Gating
# --------------------------------------------------------------------------------------------


class ContextGating(nn.Module):
    """Willow's context gating ``h * sigmoid(BN(W h))`` (BatchNorm in place of a bias).

    Parameters: ``D^2 + 2 D``.
    """

    def __init__(self, dim: int, bn_momentum: float = TF_BN_MOMENTUM, bn_eps: float = TF_BN_EPS):
        super().__init__()
        self.gate = nn.Linear(dim, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim, eps=bn_eps, momentum=bn_momentum)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, D] -> [B, D]."""
        return h * torch.sigmoid(self.bn(self.gate(h)))


class SEContextGating(nn.Module):
    """NeXtVLAD's squeeze-and-excitation gating ``h * sigmoid(W2 ReLU(BN(W1 h)))``.

    ``W1``: D -> D / r and ``W2``: D / r -> D, without biases. Parameters: ``2 D^2 / r + 2 D / r``
    (1,049,088 at D = 2048, r = 8).
    """

    def __init__(
        self,
        dim: int,
        reduction: int = 8,
        bn_momentum: float = TF_BN_MOMENTUM,
        bn_eps: float = TF_BN_EPS,
    ):
        super().__init__()
        if dim % reduction:
            raise ValueError(f"gating dim {dim} is not divisible by its reduction {reduction}")
        self.squeeze = nn.Linear(dim, dim // reduction, bias=False)
        self.bn = nn.BatchNorm1d(dim // reduction, eps=bn_eps, momentum=bn_momentum)
        self.excite = nn.Linear(dim // reduction, dim, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, D] -> [B, D]."""
        return h * torch.sigmoid(self.excite(F.relu(self.bn(self.squeeze(h)))))


# --------------------------------------------------------------------------------------------
# Classifiers: representation [B, D] -> logits [B, C]
# --------------------------------------------------------------------------------------------


def build_classifier(
    kind: str, dim: int, num_classes: int, num_mixtures: int = 2
) -> LogisticClassifier | MoEClassifier:
    """``"logistic"`` or ``"moe"`` (``num_mixtures`` experts per class)."""
    if kind == "logistic":
        return LogisticClassifier(dim, num_classes)
    if kind == "moe":
        return MoEClassifier(dim, num_classes, num_mixtures)
    raise ValueError(f"unknown classifier {kind!r}; choose 'logistic' or 'moe'")


class LogisticClassifier(nn.Module):
    """One linear layer. Parameters: ``(D + 1) C``."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, D] -> logits [B, C]."""
        return self.linear(h)

    def initialize_output_bias(self, log_odds: torch.Tensor) -> None:
        """Start every class at its prior (log-odds [C]) instead of p = 0.5."""
        with torch.no_grad():
            self.linear.bias.copy_(log_odds)


class MoEClassifier(nn.Module):
    """The YT8M starter code's mixture of logistic experts, per class.

    ``p_c = sum_m g_cm sigmoid(e_cm)`` with gates ``g_c = softmax`` over ``M + 1`` entries, the
    last one a "dummy" expert that always says 0. Returned as logits ``log p - log(1 - p)``,
    computed in log space, so the BCE on logits is exactly the BCE on ``p`` and distillation can
    treat every backbone alike. Parameters: ``D C (M + 1)`` (gates, no bias) ``+ (D + 1) C M``.
    """

    def __init__(self, dim: int, num_classes: int, num_mixtures: int = 2):
        super().__init__()
        self.num_classes, self.num_mixtures = num_classes, num_mixtures
        self.gates = nn.Linear(dim, num_classes * (num_mixtures + 1), bias=False)
        self.experts = nn.Linear(dim, num_classes * num_mixtures)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, D] -> logits [B, C]."""
        c, m = self.num_classes, self.num_mixtures
        log_gates = F.log_softmax(self.gates(h).view(-1, c, m + 1), dim=-1)
        experts = self.experts(h).view(-1, c, m)
        log_p = torch.logsumexp(log_gates[..., :m] + F.logsigmoid(experts), dim=-1)
        log_not_p = torch.logsumexp(
            torch.cat([log_gates[..., :m] + F.logsigmoid(-experts), log_gates[..., m:]], -1),
            dim=-1,
        )
        return log_p - log_not_p

    def initialize_output_bias(self, log_odds: torch.Tensor) -> None:
        """Start near the class priors: with gates near uniform, ``p = M / (M + 1) sigmoid(b)``."""
        m = self.num_mixtures
        prior = torch.sigmoid(log_odds) * (m + 1) / m
        with torch.no_grad():
            self.experts.bias.copy_(torch.logit(prior.clamp(1e-6, 1 - 1e-6)).repeat_interleave(m))
