"""LightningModules wrapping the backbones."""

from vidistill.lit.classifier import VideoClassifier, multilabel_bce

__all__ = ["VideoClassifier", "multilabel_bce"]
