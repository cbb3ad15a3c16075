"""Distillation: training objectives as pluggable strategies, and their loss functions."""

from vidistill.distill.losses import (
    PREDICTION_DISTANCES,
    bernoulli_kl,
    multilabel_bce,
    probability_mse,
    softmax_kl,
    squared_error,
)
from vidistill.distill.strategies import LabelLoss, OnlineMixtureDistillation
from vidistill.distill.teacher_student import (
    ClassificationLoss,
    DistillationTerm,
    FrozenTeacher,
    IntermediateRepresentationLoss,
    PredictionLoss,
    RepresentationLoss,
    TeacherStudentDistillation,
)

__all__ = [
    "PREDICTION_DISTANCES",
    "ClassificationLoss",
    "DistillationTerm",
    "FrozenTeacher",
    "IntermediateRepresentationLoss",
    "LabelLoss",
    "OnlineMixtureDistillation",
    "PredictionLoss",
    "RepresentationLoss",
    "TeacherStudentDistillation",
    "bernoulli_kl",
    "multilabel_bce",
    "probability_mse",
    "softmax_kl",
    "squared_error",
]
