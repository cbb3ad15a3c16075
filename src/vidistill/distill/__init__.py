"""Distillation: training objectives as pluggable strategies, and their loss functions."""

from vidistill.distill.losses import multilabel_bce, temperature_kl
from vidistill.distill.strategies import LabelLoss, OnlineMixtureDistillation

__all__ = ["LabelLoss", "OnlineMixtureDistillation", "multilabel_bce", "temperature_kl"]
