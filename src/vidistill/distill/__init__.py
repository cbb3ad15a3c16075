"""Distillation: training objectives as pluggable strategies, and their loss functions."""

from vidistill.distill.losses import multilabel_bce, squared_error, temperature_kl
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
    "ClassificationLoss",
    "DistillationTerm",
    "FrozenTeacher",
    "IntermediateRepresentationLoss",
    "LabelLoss",
    "OnlineMixtureDistillation",
    "PredictionLoss",
    "RepresentationLoss",
    "TeacherStudentDistillation",
    "multilabel_bce",
    "squared_error",
    "temperature_kl",
]
