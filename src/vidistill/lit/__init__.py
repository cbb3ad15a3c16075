"""The LightningModule that trains the backbones (:mod:`.classifier`), its callbacks
(:mod:`.callbacks`) and the checkpoints that describe their run (:mod:`.checkpoints`)."""

from vidistill.lit.classifier import VideoClassifier

__all__ = ["VideoClassifier"]
