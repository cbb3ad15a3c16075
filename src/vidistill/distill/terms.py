"""The loss terms of teacher-student distillation (the fewer-frames paper's L_rep, L_pred, L_CE).

Each term is a small module mapping ``(student output, teachers' outputs, batch)`` to a scalar,
where the teachers' outputs are a :class:`~vidistill.distill.teachers.TeacherOutputs` (one
teacher or several, with their weights; a single teacher's ``BackboneOutput`` is taken too):

* ``rep`` (:class:`RepresentationLoss`): L_rep, squared error between the student's final
  representation and each teacher's, one learned projection per teacher where sizes differ.
* ``rep_blocks`` (:class:`IntermediateRepresentationLoss`): L_rep on intermediate
  representations (H-RNN blocks).
* ``pred`` (:class:`PredictionLoss`): L_pred, a distance between the teachers' averaged
  prediction and the student's.
* ``ce`` (:class:`ClassificationLoss`): L_CE, BCE with the labels.

Terms with one part per teacher weight the parts by the teachers' weights (which sum to 1), so
that a single teacher gives exactly the single-teacher loss. A new term is one class (here or
anywhere) plus one file in ``conf/distill/terms/``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vidistill.distill.losses import PREDICTION_DISTANCES, multilabel_bce, squared_error
from vidistill.distill.teachers import TeacherOutputs, as_teacher_outputs, teacher_representation
from vidistill.models.base import Backbone, BackboneOutput


class DistillationTerm(nn.Module):
    """One loss term: ``forward(student, teachers, batch) -> scalar``.

    ``attach`` runs once, before training, with the student and the teachers' backbones (a list,
    or one backbone): terms that need parameters sized from them (a projection) create them
    there, so the optimizer sees them.
    """

    def attach(self, student: Backbone, teachers: Sequence[Backbone] | Backbone) -> None:
        pass


class RepresentationLoss(DistillationTerm):
    """L_rep: ``sum_i w_i ||R_i - P_i(E_S)||^2`` over the teachers i, between the student's
    final representation E_S [B, E] and each teacher's R_i [B, E_i] (its embedding; a
    mixture's is its gate-weighted member embeddings, see
    :func:`~vidistill.distill.teachers.teacher_representation`), summed over the
    representation, averaged over the batch.

    Args:
        projection: map the student's embedding through a learned linear layer P_i to teacher
            i's size first. ``None``: only when the sizes differ (a student of another family
            or width, a mixture teacher); ``False`` with different sizes is an error.
    """

    def __init__(self, projection: bool | None = None):
        super().__init__()
        self.projection_mode = projection
        self.projections = nn.ModuleList()
        self._register_load_state_dict_pre_hook(_number_the_single_projection)

    def attach(self, student: Backbone, teachers: Sequence[Backbone] | Backbone) -> None:
        if isinstance(teachers, Backbone):
            teachers = [teachers]
        self.projections = nn.ModuleList(self._projection(student, t) for t in teachers)

    def _projection(self, student: Backbone, teacher: Backbone) -> nn.Module:
        sizes = (student.embedding_size, teacher.embedding_size)
        project = self.projection_mode
        if project is None:
            project = sizes[0] != sizes[1]
        if project:
            return nn.Linear(*sizes)
        if sizes[0] != sizes[1]:
            raise ValueError(
                f"L_rep compares representations of {sizes[0]} (student) and {sizes[1]} "
                "(teacher) values: allow a projection (projection: null or true)"
            )
        return nn.Identity()

    def forward(
        self, student: BackboneOutput, teachers: TeacherOutputs | BackboneOutput, batch: dict
    ) -> torch.Tensor:
        teachers = as_teacher_outputs(teachers)
        return sum(
            weight * squared_error(projection(student.embedding), teacher_representation(out))
            for projection, out, weight in zip(
                self.projections, teachers.outputs, teachers.weights, strict=True
            )
        )


def _number_the_single_projection(state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints from before several teachers hold one ``projection``; it is teacher 0's."""
    single = f"{prefix}projection."
    for key in [key for key in state_dict if key.startswith(single)]:
        state_dict[f"{prefix}projections.0.{key[len(single) :]}"] = state_dict.pop(key)


class IntermediateRepresentationLoss(DistillationTerm):
    """L_rep on intermediate representations: ``intermediate[key]`` [B, b, D] of the student
    against each teacher's [B, r b, D], each student block matched with its group of ``r``
    teacher blocks (H-RNN: teacher blocks ``r j .. r j + r - 1`` cover the span of student
    block ``j``, see :mod:`vidistill.models.hrnn`); teachers weighted as in L_rep.

    Args:
        key: which intermediate representation (``blocks`` for H-RNN).
        reduce: how a group of teacher blocks becomes one target: ``last`` (the block that ends
            where the student's ends) or ``mean``.
    """

    def __init__(self, key: str = "blocks", reduce: str = "last"):
        super().__init__()
        if reduce not in ("last", "mean"):
            raise ValueError(f"reduce must be 'last' or 'mean', got {reduce!r}")
        self.key, self.reduce = key, reduce

    def forward(
        self, student: BackboneOutput, teachers: TeacherOutputs | BackboneOutput, batch: dict
    ) -> torch.Tensor:
        teachers = as_teacher_outputs(teachers)
        return sum(
            weight * self._one(student, teacher)
            for teacher, weight in zip(teachers.outputs, teachers.weights, strict=True)
        )

    def _one(self, student: BackboneOutput, teacher: BackboneOutput) -> torch.Tensor:
        missing = [
            who
            for who, out in (("student", student), ("teacher", teacher))
            if self.key not in out.intermediate
        ]
        if missing:
            raise ValueError(
                f"intermediate representation {self.key!r} is not produced by the "
                f"{' and '.join(missing)} backbone (it has: "
                f"{', '.join(student.intermediate) or 'none'}); the block loss needs H-RNNs"
            )
        s, t = student.intermediate[self.key], teacher.intermediate[self.key]
        if t.shape[1] % s.shape[1] or t.shape[2] != s.shape[2]:
            raise ValueError(
                f"intermediate {self.key!r}: teacher {tuple(t.shape[1:])} cannot be matched with "
                f"student {tuple(s.shape[1:])} (the teacher's count must be a multiple of the "
                "student's and their sizes equal)"
            )
        groups = t.unflatten(1, (s.shape[1], t.shape[1] // s.shape[1]))  # [B, b, r, D]
        target = groups[:, :, -1] if self.reduce == "last" else groups.mean(2)
        return squared_error(s, target)


class PredictionLoss(DistillationTerm):
    """L_pred: distance between the teachers' prediction and the student's, [B, C] each.

    With several teachers the target is their averaged probabilities at the temperature,
    ``sum_i w_i sigmoid(z_i / T)`` (``softmax`` for ``softmax_kl``), passed to the distance as
    the logits that give exactly those probabilities
    (:meth:`~vidistill.distill.teachers.TeacherOutputs.averaged_logits`).

    Args:
        distance: ``bernoulli_kl`` (default): the per-class Bernoulli KL of the sigmoid
            probabilities, summed over classes (:func:`~vidistill.distill.losses.bernoulli_kl`);
            ``mse``: squared error of the sigmoid probabilities, summed over classes;
            ``softmax_kl``: ``KL(softmax(z_T / T) || softmax(z_S / T))`` over classes.
        temperature: T, dividing both sides' logits before the distance.

    Why the default is not the softmax KL: the models are multi-label (one sigmoid per class)
    and the fewer-frames paper's L_pred matches those per-class probabilities. A softmax over
    classes is blind to a shift of all of a video's logits by one constant, which moves every
    sigmoid, so a softmax-KL student can agree with the teacher on the ranking of classes while
    its probabilities, and with them GAP's pooled ranking across videos, drift.
    """

    def __init__(self, distance: str = "bernoulli_kl", temperature: float = 1.0):
        super().__init__()
        if distance not in PREDICTION_DISTANCES:
            raise ValueError(
                f"L_pred distance must be one of {', '.join(PREDICTION_DISTANCES)}, got "
                f"{distance!r}" + (" (now named softmax_kl)" if distance == "kl" else "")
            )
        if temperature <= 0:
            raise ValueError(f"L_pred temperature must be > 0, got {temperature}")
        self.distance, self.temperature = distance, float(temperature)

    def forward(
        self, student: BackboneOutput, teachers: TeacherOutputs | BackboneOutput, batch: dict
    ) -> torch.Tensor:
        teachers = as_teacher_outputs(teachers)
        softmax = self.distance == "softmax_kl"
        target = teachers.averaged_logits(self.temperature, softmax=softmax)
        return PREDICTION_DISTANCES[self.distance](target, student.logits, self.temperature)


class ClassificationLoss(DistillationTerm):
    """L_CE: the student's BCE with the labels."""

    def forward(
        self, student: BackboneOutput, teachers: TeacherOutputs | BackboneOutput, batch: dict
    ) -> torch.Tensor:
        teachers = as_teacher_outputs(teachers)
        return multilabel_bce(student.logits, batch["labels"], batch.get("label_weights"))
