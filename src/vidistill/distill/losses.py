"""Loss functions shared by the distillation strategies."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multilabel_bce(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE summed over classes and averaged over the batch (the papers' loss).

    logits, labels [B, C]; ``weights`` [B, C] masks pairs out of the loss (segment ratings: 1
    where the (segment, class) pair is rated, 0 elsewhere, so unrated pairs give no gradient).
    """
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if weights is not None:
        loss = loss * weights
    return loss.sum(1).mean()


def temperature_kl(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``KL(softmax(z_t / T) || softmax(z_s / T))`` over classes, averaged over the batch.

    teacher_logits, student_logits [B, C] -> scalar. The softmax runs over the class axis, as in
    the MOD paper, even though the task is multi-label.
    """
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    return (teacher.exp() * (teacher - student)).sum(-1).mean()


def squared_error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``||teacher - student||^2`` summed over every axis but the batch, averaged over the batch.

    student, teacher [B, ...] of one shape -> scalar (the fewer-frames paper's L_rep).
    """
    return (teacher - student).square().flatten(1).sum(1).mean()
