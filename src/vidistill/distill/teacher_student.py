"""Teacher-student distillation with fewer frames (the fewer-frames paper), from one teacher or
several.

The teachers see every frame of a video (``batch["teacher_frames"]``, delivered by the data
module's ``teacher_sampler``), the student the ``k`` frames its sampler picks (``batch["frames"]``).
The student is trained on a weighted sum of named loss terms (:mod:`vidistill.distill.terms`:
L_rep, L_pred, L_CE and L_rep on H-RNN blocks).

Serial mode: each teacher was trained before (a checkpoint), possibly a mixture (MOD) or of
another family than the student, and is a :class:`~vidistill.distill.teachers.FrozenTeacher`:
run once per batch without autograd, in eval mode. Parallel mode: one teacher, trained in the
same steps by its own L_CE (``teacher/ce``); the student's terms see a detached copy of its
outputs, so none of their gradient reaches it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from vidistill.distill.losses import multilabel_bce
from vidistill.distill.teachers import (
    FrozenTeacher,
    TeacherOutputs,
    detached,
    normalized_weights,
)
from vidistill.distill.terms import DistillationTerm
from vidistill.models.base import Backbone, BackboneOutput

CLASSIFIER_MODES = ("separate", "shared")


class TeacherStudentDistillation(nn.Module):
    """Trains the student (the LightningModule's backbone) to mimic teachers that see more
    frames; the objective of ``distill=serial`` and ``distill=parallel``.

    Args:
        teacher: the teacher backbone (trained, for serial mode), or a list of them (several
            teachers, serial mode only; ``distill.teachers``, built by the run).
        terms: the available loss terms by name (``rep``, ``rep_blocks``, ``pred``, ``ce``;
            ``distill.terms``, conf/distill/terms/).
        weights: weight of each term (``distill.weights``, conf/distill/weights/); terms with
            weight 0 (or absent) are not computed. A name that is not in ``terms`` is an
            error. :class:`vidistill.lit.callbacks.LossWeightSchedule` changes them between
            epochs (the two-stage variant).
        parallel: train the teacher in the same steps with its own L_CE instead of freezing it.
        classifier: ``separate`` (each its own, as in the authors' code) or ``shared`` (as in
            the paper; one teacher only): in parallel mode student and teacher use one
            classifier module, trained by both; in serial mode the student's classifier starts
            as a copy of the teacher's.
        teacher_weights: each teacher's weight in L_pred's averaged probabilities and in the
            per-teacher terms (normalized to sum to 1; None: equal).
        teachers: several teacher backbones, in place of ``teacher`` (the config's
            ``distill.teachers`` holds their specs, which :func:`vidistill.runs.build_objective`
            builds; None or empty: ``teacher``).

    Returned terms (logged as ``train/<name>``): each weighted student term by its name, and in
    parallel mode ``teacher/ce``. Each training batch also gets ``teachers``, the teachers'
    :class:`~vidistill.distill.teachers.TeacherOutputs`: their averaged probabilities are what a
    learned frame selector is rewarded for agreeing with, computed only when one asks.
    """

    def __init__(
        self,
        teacher: Backbone | Sequence[Backbone] | None,
        terms: Mapping[str, DistillationTerm],
        weights: Mapping[str, float],
        parallel: bool = False,
        classifier: str = "separate",
        teacher_weights: Sequence[float] | None = None,
        teachers: Sequence[Backbone] | None = None,
    ):
        super().__init__()
        teachers = _teacher_list(teachers or teacher, parallel)
        if classifier not in CLASSIFIER_MODES:
            raise ValueError(
                f"classifier must be one of {', '.join(CLASSIFIER_MODES)}, got {classifier!r}"
            )
        if classifier == "shared" and len(teachers) > 1:
            raise ValueError("classifier=shared needs one teacher, got several")
        self.parallel, self.classifier = parallel, classifier
        self.teacher_weights = normalized_weights(teacher_weights, len(teachers))
        if parallel:
            self.teacher = teachers[0]
        else:
            self.teachers = nn.ModuleList(FrozenTeacher(t) for t in teachers)
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = weights
        self._register_load_state_dict_pre_hook(_rename_legacy_terms)

    @property
    def teacher_backbones(self) -> list[Backbone]:
        if self.parallel:
            return [self.teacher]
        return [teacher.backbone for teacher in self.teachers]

    @property
    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    @weights.setter
    def weights(self, weights: Mapping[str, float]) -> None:
        unknown = sorted(set(weights) - set(self.terms))
        if unknown:
            raise ValueError(
                f"unknown loss term(s) {', '.join(unknown)} in the distillation weights; the "
                f"terms are: {', '.join(self.terms)}"
            )
        negative = {name: w for name, w in weights.items() if w < 0}
        if negative:
            raise ValueError(f"loss weights must be >= 0, got {negative}")
        self._weights = {name: float(w) for name, w in weights.items()}

    # -- hooks called by the LightningModule ---------------------------------------------------

    def attach(self, student: Backbone) -> None:
        """Called once with the student: shares the classifier and sizes the terms."""
        teachers = self.teacher_backbones
        if self.classifier == "shared":
            _check_shareable(student, teachers[0])
            if self.parallel:
                student.classifier = teachers[0].classifier
            else:
                student.classifier.load_state_dict(teachers[0].classifier.state_dict())
        for term in self.terms.values():
            term.attach(student, teachers)

    def initialize_output_bias(self, student: Backbone, log_odds: torch.Tensor) -> None:
        """Start the outputs that are trained from scratch at the class priors; a classifier
        copied from a trained teacher keeps the teacher's biases."""
        if self.parallel:
            self.teacher.initialize_output_bias(log_odds)
            if self.classifier == "shared":
                return
        if self.classifier == "separate":
            student.initialize_output_bias(log_odds)

    # -- the objective ------------------------------------------------------------------------

    def forward(self, output: BackboneOutput, batch: dict) -> dict[str, torch.Tensor]:
        if "teacher_frames" not in batch:
            raise KeyError(
                "teacher-student training needs the teacher's view in each training batch "
                "(teacher_frames): set data.teacher_sampler (e.g. all)"
            )
        frames, mask = batch["teacher_frames"], batch["teacher_mask"]
        terms: dict[str, torch.Tensor] = {}
        if self.parallel:
            teacher = self.teacher(frames, mask)
            terms["teacher/ce"] = multilabel_bce(
                teacher.logits, batch["labels"], batch.get("label_weights")
            )
            outputs = [detached(teacher)]
        else:  # each frozen teacher runs once, without autograd
            outputs = [teacher(frames, mask) for teacher in self.teachers]
        teachers = TeacherOutputs(outputs, self.teacher_weights)
        batch["teachers"] = teachers
        for name, weight in self._weights.items():
            if weight:
                terms[name] = weight * self.terms[name](output, teachers, batch)
        return terms


def _teacher_list(teacher: Backbone | Sequence[Backbone] | None, parallel: bool) -> list[Backbone]:
    mode = "parallel" if parallel else "serial"
    teachers = [teacher] if teacher is None or isinstance(teacher, nn.Module) else list(teacher)
    if not teachers or any(t is None for t in teachers):
        raise ValueError(
            f"{mode} distillation needs a teacher: distill.teacher.checkpoint=PATH (a trained "
            "teacher) or distill.teacher.model (its architecture)"
        )
    if parallel and len(teachers) > 1:
        raise ValueError("parallel distillation trains one teacher; several are serial only")
    unbuilt = [t for t in teachers if not isinstance(t, nn.Module)]
    if unbuilt:
        raise ValueError(
            f"a teacher must be a backbone, got {type(unbuilt[0]).__name__}: a teacher spec "
            "(model, checkpoint) is built by vidistill.runs.build_objective"
        )
    return teachers


def _rename_legacy_terms(state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints written before the terms were named ``terms`` keep them under ``losses.``."""
    legacy = f"{prefix}losses."
    for key in [key for key in state_dict if key.startswith(legacy)]:
        state_dict[f"{prefix}terms.{key[len(legacy) :]}"] = state_dict.pop(key)


def _check_shareable(student: Backbone, teacher: Backbone) -> None:
    for name, model in (("student", student), ("teacher", teacher)):
        if not isinstance(getattr(model, "classifier", None), nn.Module):
            raise ValueError(
                f"classifier=shared: the {name} ({type(model).__name__}) has no single classifier"
            )
    shapes = [
        {key: value.shape for key, value in model.classifier.state_dict().items()}
        for model in (student, teacher)
    ]
    if type(student.classifier) is not type(teacher.classifier) or shapes[0] != shapes[1]:
        raise ValueError(
            "classifier=shared needs classifiers of one type and size: the student has "
            f"{type(student.classifier).__name__} on {student.embedding_size} inputs, the teacher "
            f"{type(teacher.classifier).__name__} on {teacher.embedding_size}"
        )
