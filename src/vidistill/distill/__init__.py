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
from vidistill.distill.teacher_student import TeacherStudentDistillation
from vidistill.distill.teachers import FrozenTeacher, TeacherOutputs, teacher_representation
from vidistill.distill.terms import (
    ClassificationLoss,
    DistillationTerm,
    IntermediateRepresentationLoss,
    PredictionLoss,
    RepresentationLoss,
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
    "TeacherOutputs",
    "TeacherStudentDistillation",
    "bernoulli_kl",
    "multilabel_bce",
    "probability_mse",
    "softmax_kl",
    "squared_error",
    "teacher_representation",
]
