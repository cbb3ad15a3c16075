"""Teacher-student distillation with fewer frames (the fewer-frames paper).

The teacher sees every frame of a video (``batch["teacher_frames"]``, delivered by the data
module's ``teacher_sampler``), the student the ``k`` frames its sampler picks (``batch["frames"]``).
The student is trained on a weighted sum of named loss terms, each a small module mapping
``(student output, teacher output, batch)`` to a scalar:

* ``rep`` (:class:`RepresentationLoss`): L_rep, squared error between the final representations.
* ``rep_blocks`` (:class:`IntermediateRepresentationLoss`): L_rep on intermediate
  representations (H-RNN blocks).
* ``pred`` (:class:`PredictionLoss`): L_pred, KL(teacher || student) or squared error on the
  predicted probabilities.
* ``ce`` (:class:`ClassificationLoss`): L_CE, BCE with the labels.

A new term is one class here (or anywhere) plus one file in ``conf/distill/terms/``.

Serial mode: the teacher was trained before (a checkpoint) and is a :class:`FrozenTeacher`.
Parallel mode: the teacher is trained in the same steps by its own L_CE (``teacher/ce``); the
student's terms see a detached copy of its outputs, so none of their gradient reaches it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from vidistill.distill.losses import PREDICTION_DISTANCES, multilabel_bce, squared_error
from vidistill.models.base import Backbone, BackboneOutput

CLASSIFIER_MODES = ("separate", "shared")


# --------------------------------------------------------------------------------------------
# Loss terms
# --------------------------------------------------------------------------------------------


class DistillationTerm(nn.Module):
    """One loss term: ``forward(student, teacher, batch) -> scalar``.

    ``attach`` runs once, before training, with both backbones: terms that need parameters sized
    from them (a projection) create them there, so the optimizer sees them.
    """

    def attach(self, student: Backbone, teacher: Backbone) -> None:
        pass


class RepresentationLoss(DistillationTerm):
    """L_rep: ``||E_T - P(E_S)||^2`` between the final representations ([B, E] each), summed
    over the representation, averaged over the batch.

    Args:
        projection: map the student's embedding through a learned linear layer to the teacher's
            size first. ``None``: only when the sizes differ (a student of another family or
            width); ``False`` with different sizes is an error.
    """

    def __init__(self, projection: bool | None = None):
        super().__init__()
        self.projection_mode = projection
        self.projection: nn.Module = nn.Identity()

    def attach(self, student: Backbone, teacher: Backbone) -> None:
        sizes = (student.embedding_size, teacher.embedding_size)
        project = self.projection_mode
        if project is None:
            project = sizes[0] != sizes[1]
        if project:
            self.projection = nn.Linear(*sizes)
        elif sizes[0] != sizes[1]:
            raise ValueError(
                f"L_rep compares representations of {sizes[0]} (student) and {sizes[1]} "
                "(teacher) values: allow a projection (projection: null or true)"
            )

    def forward(
        self, student: BackboneOutput, teacher: BackboneOutput, batch: dict
    ) -> torch.Tensor:
        return squared_error(self.projection(student.embedding), teacher.embedding)


class IntermediateRepresentationLoss(DistillationTerm):
    """L_rep on intermediate representations: ``intermediate[key]`` [B, b, D] of the student
    against the teacher's [B, r b, D], each student block matched with its group of ``r``
    teacher blocks (H-RNN: teacher blocks ``r j .. r j + r - 1`` cover the span of student
    block ``j``, see :mod:`vidistill.models.hrnn`).

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
        self, student: BackboneOutput, teacher: BackboneOutput, batch: dict
    ) -> torch.Tensor:
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
    """L_pred: distance between the teacher's and the student's predictions [B, C].

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
        self, student: BackboneOutput, teacher: BackboneOutput, batch: dict
    ) -> torch.Tensor:
        return PREDICTION_DISTANCES[self.distance](teacher.logits, student.logits, self.temperature)


class ClassificationLoss(DistillationTerm):
    """L_CE: the student's BCE with the labels."""

    def forward(
        self, student: BackboneOutput, teacher: BackboneOutput, batch: dict
    ) -> torch.Tensor:
        return multilabel_bce(student.logits, batch["labels"], batch.get("label_weights"))


# --------------------------------------------------------------------------------------------
# The teacher
# --------------------------------------------------------------------------------------------


class FrozenTeacher(nn.Module):
    """A trained backbone used as a fixed target.

    Its parameters never receive gradients, it stays in eval mode whatever ``train()`` is called
    with (Lightning puts the whole model back in training mode after every validation), and its
    weights are left out of the state dict: the student's checkpoints do not carry a copy of the
    teacher's checkpoint. Loading a state dict keeps the teacher's current weights.
    """

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.register_state_dict_post_hook(_drop_own_entries)
        self.register_load_state_dict_pre_hook(_keep_own_entries)

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> BackboneOutput:
        return self.backbone(frames, mask)


def _drop_own_entries(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    for key in [key for key in state_dict if key.startswith(prefix)]:
        del state_dict[key]


def _keep_own_entries(module: FrozenTeacher, state_dict: dict, prefix: str, *args) -> None:
    own = module.backbone.state_dict(prefix=f"{prefix}backbone.", keep_vars=True)
    for key, value in own.items():
        state_dict.setdefault(key, value)


def _rename_legacy_terms(state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints written before the terms were named ``terms`` keep them under ``losses.``."""
    legacy = f"{prefix}losses."
    for key in [key for key in state_dict if key.startswith(legacy)]:
        state_dict[f"{prefix}terms.{key[len(legacy) :]}"] = state_dict.pop(key)


# --------------------------------------------------------------------------------------------
# The strategy
# --------------------------------------------------------------------------------------------


class TeacherStudentDistillation(nn.Module):
    """Trains the student (the LightningModule's backbone) to mimic a teacher that sees more
    frames; the objective of ``distill=serial`` and ``distill=parallel``.

    Args:
        teacher: the teacher backbone (trained, for serial mode).
        terms: the available loss terms by name (``rep``, ``rep_blocks``, ``pred``, ``ce``;
            ``distill.terms``, conf/distill/terms/).
        weights: weight of each term (``distill.weights``, conf/distill/weights/); terms with
            weight 0 (or absent) are not computed. A name that is not in ``terms`` is an error. :class:`vidistill.lit.callbacks.LossWeightSchedule`
            changes them between epochs (the two-stage variant).
        parallel: train the teacher in the same steps with its own L_CE instead of freezing it.
        classifier: ``separate`` (each its own, as in the authors' code) or ``shared`` (as in
            the paper): in parallel mode student and teacher use one classifier module, trained by
            both; in serial mode the student's classifier starts as a copy of the teacher's.

    Returned terms (logged as ``train/<name>``): each weighted student term by its name, and in
    parallel mode ``teacher/ce``.
    """

    def __init__(
        self,
        teacher: Backbone | None,
        terms: Mapping[str, DistillationTerm],
        weights: Mapping[str, float],
        parallel: bool = False,
        classifier: str = "separate",
    ):
        super().__init__()
        if teacher is None:
            raise ValueError(
                f"{'parallel' if parallel else 'serial'} distillation needs a teacher: "
                "distill.teacher.checkpoint=PATH (a trained teacher) or distill.teacher.model "
                "(its architecture)"
            )
        if classifier not in CLASSIFIER_MODES:
            raise ValueError(
                f"classifier must be one of {', '.join(CLASSIFIER_MODES)}, got {classifier!r}"
            )
        self.parallel, self.classifier = parallel, classifier
        self.teacher = teacher if parallel else FrozenTeacher(teacher)
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = weights
        self._register_load_state_dict_pre_hook(_rename_legacy_terms)

    @property
    def teacher_backbone(self) -> Backbone:
        return self.teacher if self.parallel else self.teacher.backbone

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
        teacher = self.teacher_backbone
        if self.classifier == "shared":
            _check_shareable(student, teacher)
            if self.parallel:
                student.classifier = teacher.classifier
            else:
                student.classifier.load_state_dict(teacher.classifier.state_dict())
        for term in self.terms.values():
            term.attach(student, teacher)

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
        teacher = self.teacher(batch["teacher_frames"], batch["teacher_mask"])
        terms: dict[str, torch.Tensor] = {}
        if self.parallel:
            terms["teacher/ce"] = multilabel_bce(
                teacher.logits, batch["labels"], batch.get("label_weights")
            )
            teacher = _detached(teacher)
        for name, weight in self._weights.items():
            if weight:
                terms[name] = weight * self.terms[name](output, teacher, batch)
        return terms


def _detached(output: BackboneOutput) -> BackboneOutput:
    return BackboneOutput(
        logits=output.logits.detach(),
        embedding=output.embedding.detach(),
        intermediate={key: value.detach() for key, value in output.intermediate.items()},
    )


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
