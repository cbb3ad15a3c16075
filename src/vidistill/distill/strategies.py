"""Training objectives as objects: each maps a model output and a batch to named loss terms.

The LightningModule sums the terms and logs each one (``train/<name>``), so adding a method is one
class here plus one file in ``conf/distill/``.
"""

from __future__ import annotations

import torch

from vidistill.distill.losses import multilabel_bce, softmax_kl
from vidistill.models.base import BackboneOutput


class LabelLoss:
    """Plain supervised training: ``{"bce": BCE(labels, sigmoid(logits))}``."""

    def __call__(self, output: BackboneOutput, batch: dict) -> dict[str, torch.Tensor]:
        return {"bce": multilabel_bce(output.logits, batch["labels"], batch.get("label_weights"))}


class OnlineMixtureDistillation:
    """The MOD paper's objective for a mixture (or tree of mixtures) trained in one pass.

    Every node of the tree (the root, each sub-mixture, each leaf) gets a BCE term with the labels;
    every parent teaches each of its children with ``weight * KL(softmax(z_parent / T) ||
    softmax(z_child / T))``. Terms are summed per tree level: ``bce/level0`` is the root's,
    ``bce/level1`` the sum over its children, and so on; ``kl/level1`` holds the distillation
    from the root into its children, ``kl/level2`` from those into theirs.

    Args:
        temperature: T; 0 switches distillation off (pure BCE on every node).
        weight: lambda; ``None`` means ``T ** 2``, the paper's factor.
        stop_gradient: detach the parent side of every KL term (the paper does not).
    """

    def __init__(
        self, temperature: float, weight: float | None = None, stop_gradient: bool = False
    ):
        if temperature < 0:
            raise ValueError(
                f"temperature T must be >= 0 (0 disables distillation), got {temperature}"
            )
        self.temperature = float(temperature)
        self.weight = self.temperature**2 if weight is None else float(weight)
        self.stop_gradient = stop_gradient

    def __call__(self, output: BackboneOutput, batch: dict) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        labels, label_weights = batch["labels"], batch.get("label_weights")

        def add(name: str, value: torch.Tensor) -> None:
            terms[name] = terms[name] + value if name in terms else value

        def visit(node: BackboneOutput, level: int) -> None:
            add(f"bce/level{level}", multilabel_bce(node.logits, labels, label_weights))
            parent = node.logits.detach() if self.stop_gradient else node.logits
            for child in node.members:
                if self.temperature > 0:
                    kl = softmax_kl(parent, child.logits, self.temperature)
                    add(f"kl/level{level + 1}", self.weight * kl)
                visit(child, level + 1)

        visit(output, 0)
        return terms
