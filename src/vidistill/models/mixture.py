"""Mixtures of backbones and trees of mixtures (the MOD paper's MixNeXtVLAD and MODNeXtVLAD).

A :class:`Mixture` is itself a backbone, so mixtures nest without special cases: a mixture of
three NeXtVLADs is MixNeXtVLAD, a mixture of four such mixtures is the paper's two-level
MODNeXtVLAD, and deeper trees are built the same way (:func:`mixture_tree`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidistill.data.records import FEATURE_SIZE
from vidistill.models.base import Backbone, BackboneOutput, masked_mean
from vidistill.models.layers import TF_BN_EPS, TF_BN_MOMENTUM


class Mixture(Backbone):
    """Mixes the logits of ``members`` with gate weights computed from the video.

    Gate: masked mean of the input frames [B, D] -> BatchNorm -> Linear(D -> N) -> softmax, as in
    the MOD paper. The mixture's logits are ``sum_m w_m z_m`` [B, C]; its ``embedding`` is the
    concatenation of the members' embeddings, ``intermediate["gate"]`` the weights [B, N], and
    ``members`` the members' own outputs, which the online distillation loss walks.

    Parameters: the members' plus ``2 D + (D + 1) N`` for the gate.
    """

    def __init__(
        self,
        members: Sequence[Backbone],
        feature_size: int = FEATURE_SIZE,
        bn_momentum: float = TF_BN_MOMENTUM,
        bn_eps: float = TF_BN_EPS,
    ):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a mixture needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.gate_bn = nn.BatchNorm1d(feature_size, eps=bn_eps, momentum=bn_momentum)
        self.gate = nn.Linear(feature_size, len(members))

    def initialize_output_bias(self, log_odds: torch.Tensor) -> None:
        """Every member starts at the priors, so their gate-weighted mixture does too."""
        for member in self.members:
            member.initialize_output_bias(log_odds)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        weights = F.softmax(self.gate(self.gate_bn(masked_mean(frames, mask))), dim=-1)
        outputs = [member(frames, mask) for member in self.members]
        logits = torch.stack([out.logits for out in outputs], 1)  # [B, N, C]
        return BackboneOutput(
            logits=(weights.unsqueeze(-1) * logits).sum(1),
            embedding=torch.cat([out.embedding for out in outputs], 1),
            intermediate={"gate": weights},
            members=outputs,
        )


def mixture_tree(
    leaf: Callable[[], Backbone],
    branching: Sequence[int],
    feature_size: int = FEATURE_SIZE,
    bn_momentum: float = TF_BN_MOMENTUM,
    bn_eps: float = TF_BN_EPS,
) -> Mixture:
    """A tree of mixtures: ``branching[0]`` children at the root, each a tree of
    ``branching[1:]``, down to ``leaf()`` backbones (each call builds a new, independent one).

    ``[3]`` is MixNeXtVLAD with ``leaf`` a NeXtVLAD, ``[4, 3]`` the MOD paper's MODNeXtVLAD (12
    leaves), ``[2, 2, 2]`` a depth-3 tree.
    """
    if not branching:
        raise ValueError("branching must list at least one level, e.g. [3] or [4, 3]")

    def build(levels: Sequence[int]) -> Backbone:
        if not levels:
            return leaf()
        return Mixture(
            [build(levels[1:]) for _ in range(levels[0])], feature_size, bn_momentum, bn_eps
        )

    return build(list(branching))


def subtree(model: Backbone, path: Sequence[int]) -> Backbone:
    """The member of a mixture tree at ``path`` (member indices from the root), to use alone:
    ``()`` is the whole model, ``(0,)`` the root's first member (in MixNeXtVLAD, one NeXtVLAD,
    the paper's "NeXtVLAD distill"), ``(1, 2)`` the third leaf of the second sub-mixture."""
    node = model
    for depth, index in enumerate(path):
        members = getattr(node, "members", None)
        if not isinstance(members, nn.ModuleList):
            raise ValueError(
                f"member path {list(path)}: the node at {list(path[:depth])} is a "
                f"{type(node).__name__}, not a mixture"
            )
        if not 0 <= index < len(members):
            raise ValueError(
                f"member path {list(path)}: index {index} out of range for a mixture of "
                f"{len(members)} at {list(path[:depth])}"
            )
        node = members[index]
    return node


def leaves(output: BackboneOutput) -> list[BackboneOutput]:
    """The leaf outputs of a (possibly nested) mixture output, left to right."""
    if not output.members:
        return [output]
    return [leaf for member in output.members for leaf in leaves(member)]
