"""Backbones: each maps (frames [B, T, D], mask [B, T]) to a :class:`BackboneOutput`."""

from vidistill.models.base import BackboneOutput, masked_mean
from vidistill.models.logistic import FrameMeanLogistic

__all__ = ["BackboneOutput", "FrameMeanLogistic", "masked_mean"]
