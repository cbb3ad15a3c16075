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


def softmax_kl(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``KL(softmax(z_t / T) || softmax(z_s / T))`` over classes, averaged over the batch.

    teacher_logits, student_logits [B, C] -> scalar. One distribution over all classes per
    video, as in the MOD paper's online distillation. Adding the same constant to every logit of
    a video leaves it unchanged, so it cannot see whether the student's per-class probabilities
    match the teacher's in a multi-label task (see :func:`bernoulli_kl`).
    """
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    return (teacher.exp() * (teacher - student)).sum(-1).mean()


def bernoulli_kl(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Per-class Bernoulli KL, summed over classes and averaged over the batch.

    teacher_logits, student_logits [B, C] -> scalar::

        sum_c p_t log(p_t / p_s) + (1 - p_t) log((1 - p_t) / (1 - p_s)),  p = sigmoid(z / T)

    Each class is its own yes/no prediction, as the multi-label sigmoid outputs are, so a
    student whose logits are the teacher's shifted by a constant is penalised. Computed from
    logits with log-sigmoids (``log(1 - sigmoid(z)) = logsigmoid(-z)``), so no probability is
    rounded to 0 or 1 before its logarithm.
    """
    teacher = teacher_logits / temperature
    student = student_logits / temperature
    p_teacher = torch.sigmoid(teacher)
    positive = F.logsigmoid(teacher) - F.logsigmoid(student)
    negative = F.logsigmoid(-teacher) - F.logsigmoid(-student)
    return (p_teacher * positive + (1 - p_teacher) * negative).sum(-1).mean()


def probability_mse(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``||sigmoid(z_t / T) - sigmoid(z_s / T)||^2`` over classes, averaged over the batch.

    teacher_logits, student_logits [B, C] -> scalar.
    """
    return squared_error(
        torch.sigmoid(student_logits / temperature), torch.sigmoid(teacher_logits / temperature)
    )


def squared_error(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``||teacher - student||^2`` summed over every axis but the batch, averaged over the batch.

    student, teacher [B, ...] of one shape -> scalar (the fewer-frames paper's L_rep).
    """
    return (teacher - student).square().flatten(1).sum(1).mean()


PREDICTION_DISTANCES = {
    "bernoulli_kl": bernoulli_kl,
    "mse": probability_mse,
    "softmax_kl": softmax_kl,
}
"""L_pred's distances by name: each ``(teacher_logits, student_logits, temperature) -> scalar``."""
