"""Backbones: each maps (frames [B, T, D], mask [B, T]) to a :class:`BackboneOutput`."""

from vidistill.models.base import Backbone, BackboneOutput, count_parameters, masked_mean
from vidistill.models.dbof import DBoF
from vidistill.models.hrnn import HRNN
from vidistill.models.logistic import FrameMeanLogistic
from vidistill.models.mixture import Mixture, mixture_tree, place, subtree
from vidistill.models.netvlad import NetVLAD
from vidistill.models.nextvlad import NeXtVLAD
from vidistill.models.presets import build_backbone

__all__ = [
    "Backbone",
    "BackboneOutput",
    "DBoF",
    "FrameMeanLogistic",
    "Mixture",
    "HRNN",
    "NeXtVLAD",
    "NetVLAD",
    "build_backbone",
    "count_parameters",
    "masked_mean",
    "mixture_tree",
    "place",
    "subtree",
]
