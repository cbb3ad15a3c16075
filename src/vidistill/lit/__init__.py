"""LightningModules wrapping the backbones."""

from vidistill.distill import multilabel_bce
from vidistill.lit.classifier import VideoClassifier

__all__ = ["VideoClassifier", "multilabel_bce"]
