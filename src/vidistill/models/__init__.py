"""Backbones: each maps (frames [B, T, D], mask [B, T]) to a :class:`BackboneOutput`."""

from vidistill.models.base import Backbone, BackboneOutput, count_parameters, masked_mean
from vidistill.models.dbof import DBoF, dbof_paper, dbof_small
from vidistill.models.hrnn import HRNN, hrnn_paper, hrnn_small
from vidistill.models.logistic import FrameMeanLogistic
from vidistill.models.mixture import Mixture, mixture_tree, place, subtree
from vidistill.models.netvlad import NetVLAD, netvlad_paper, netvlad_small
from vidistill.models.nextvlad import NeXtVLAD, nextvlad_paper, nextvlad_small

__all__ = [
    "Backbone",
    "BackboneOutput",
    "DBoF",
    "FrameMeanLogistic",
    "Mixture",
    "HRNN",
    "NeXtVLAD",
    "NetVLAD",
    "count_parameters",
    "dbof_paper",
    "dbof_small",
    "hrnn_paper",
    "hrnn_small",
    "masked_mean",
    "mixture_tree",
    "place",
    "subtree",
    "netvlad_paper",
    "netvlad_small",
    "nextvlad_paper",
    "nextvlad_small",
]
