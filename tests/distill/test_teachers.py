"""Teachers beyond one single model: a mixture (MOD) teacher and several teachers."""

from __future__ import annotations

import pytest
import torch

from vidistill.distill import (
    ClassificationLoss,
    PredictionLoss,
    RepresentationLoss,
    TeacherOutputs,
    TeacherStudentDistillation,
    teacher_representation,
)
from vidistill.distill.losses import bernoulli_kl, softmax_kl
from vidistill.features import FEATURE_SIZE
from vidistill.lit import VideoClassifier
from vidistill.models import NeXtVLAD, mixture_tree
from vidistill.models.base import BackboneOutput

C = 6


def small_nextvlad(hidden: int = 16) -> NeXtVLAD:
    return NeXtVLAD(C, clusters=4, groups=4, expansion=1, hidden_size=hidden)


def small_mod(hidden: int = 8):
    """A two-level tree (2 x 2 leaves), the shape of MODNeXtVLAD."""
    return mixture_tree(
        lambda: NeXtVLAD(C, clusters=4, groups=4, expansion=1, hidden_size=hidden), [2, 2]
    )


def batch_of(seed: int = 0, videos: int = 5, frames: int = 12) -> dict:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(videos, frames, FEATURE_SIZE, generator=generator)
    mask = torch.ones(videos, frames, dtype=torch.bool)
    return {
        "frames": x[:, ::3],
        "mask": mask[:, ::3],
        "teacher_frames": x,
        "teacher_mask": mask,
        "labels": (torch.rand(videos, C, generator=generator) < 0.3).float(),
        "ids": [str(i) for i in range(videos)],
    }


def objective(teachers, weights=None, **term_weights):
    terms = {"rep": RepresentationLoss(), "pred": PredictionLoss(), "ce": ClassificationLoss()}
    return TeacherStudentDistillation(
        teachers,
        terms,
        term_weights or {"rep": 1.0, "pred": 1.0, "ce": 1.0},
        teacher_weights=weights,
    )


def logits_output(logits) -> BackboneOutput:
    logits = torch.as_tensor(logits, dtype=torch.float32)
    return BackboneOutput(logits=logits, embedding=torch.zeros(len(logits), 1))


# -- averaged predictions -----------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_averaged_logits_give_the_weighted_mean_probabilities(temperature):
    torch.manual_seed(0)
    outputs = [logits_output(torch.randn(4, C) * 6) for _ in range(3)]
    teachers = TeacherOutputs(outputs, [0.5, 0.3, 0.2])
    mean = sum(
        w * torch.sigmoid(o.logits / temperature)
        for o, w in zip(outputs, [0.5, 0.3, 0.2], strict=False)
    )
    torch.testing.assert_close(
        torch.sigmoid(teachers.averaged_logits(temperature) / temperature), mean
    )
    soft = sum(
        w * (o.logits / temperature).softmax(-1)
        for o, w in zip(outputs, [0.5, 0.3, 0.2], strict=False)
    )
    got = (teachers.averaged_logits(temperature, softmax=True) / temperature).softmax(-1)
    torch.testing.assert_close(got, soft)
    # saturated teachers stay finite and exact in log space
    extreme = TeacherOutputs(
        [logits_output([[80.0, -80.0]]), logits_output([[-80.0, 80.0]])], [0.5, 0.5]
    )
    torch.testing.assert_close(extreme.averaged_logits(1.0), torch.zeros(1, 2))


def test_l_pred_of_several_teachers_targets_their_mean_and_one_teacher_is_unchanged():
    torch.manual_seed(0)
    student = logits_output(torch.randn(4, C))
    a, b = logits_output(torch.randn(4, C) * 3), logits_output(torch.randn(4, C) * 3)
    loss = PredictionLoss(temperature=2.0)
    torch.testing.assert_close(loss(student, a, {}), bernoulli_kl(a.logits, student.logits, 2.0))
    two = loss(student, TeacherOutputs([a, b], [0.25, 0.75]), {})
    p = 0.25 * torch.sigmoid(a.logits / 2) + 0.75 * torch.sigmoid(b.logits / 2)
    q = torch.sigmoid(student.logits / 2)
    by_hand = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).sum(-1).mean()
    torch.testing.assert_close(two, by_hand)
    soft = PredictionLoss("softmax_kl", 2.0)(student, TeacherOutputs([a], [1.0]), {})
    torch.testing.assert_close(soft, softmax_kl(a.logits, student.logits, 2.0))


def test_several_teachers_get_one_projection_each_and_weighted_rep_terms():
    torch.manual_seed(0)
    teachers = [small_nextvlad(16), small_nextvlad(8), small_mod(8)]
    student = small_nextvlad(24)
    strategy = objective(teachers, weights=[2.0, 1.0, 1.0], rep=1.0)
    strategy.attach(student)
    projections = strategy.terms["rep"].projections
    assert [p.weight.shape for p in projections] == [(16, 24), (8, 24), (32, 24)]
    assert strategy.teacher_weights == [0.5, 0.25, 0.25]
    batch = batch_of()
    out = student(batch["frames"], batch["mask"])
    terms = strategy(out, batch)
    with torch.no_grad():
        targets = [
            teacher_representation(t.eval()(batch["teacher_frames"], batch["teacher_mask"]))
            for t in teachers
        ]
    by_hand = sum(
        w * (proj(out.embedding) - target).square().sum(1).mean()
        for w, proj, target in zip([0.5, 0.25, 0.25], projections, targets, strict=False)
    )
    torch.testing.assert_close(terms["rep"], by_hand)
    mean = sum(
        w * torch.sigmoid(t(batch["teacher_frames"], batch["teacher_mask"]).logits)
        for w, t in zip([0.5, 0.25, 0.25], teachers, strict=False)
    )
    torch.testing.assert_close(batch["teachers"].probabilities(), mean)


def test_bad_teacher_lists_are_refused():
    with pytest.raises(ValueError, match="3 teacher weights for 2 teachers"):
        objective([small_nextvlad(), small_nextvlad()], weights=[1, 2, 3])
    with pytest.raises(ValueError, match="not all 0"):
        objective([small_nextvlad(), small_nextvlad()], weights=[0, 0])
    with pytest.raises(ValueError, match="several are serial only"):
        TeacherStudentDistillation([small_nextvlad(), small_nextvlad()], {}, {}, parallel=True)
    with pytest.raises(ValueError, match="classifier=shared needs one teacher"):
        TeacherStudentDistillation(
            [small_nextvlad(), small_nextvlad()], {}, {}, classifier="shared"
        )


# -- a mixture as teacher -----------------------------------------------------------------------


def test_the_mixture_representation_is_what_its_prediction_is_read_from():
    """With logistic leaves, the mixture's logits are a linear read-out of the gate-weighted
    member embeddings: [W_1 ... W_M] r + sum_m w_m b_m, the gate weights multiplied down the tree."""
    torch.manual_seed(0)
    teacher = small_mod(8).eval()
    batch = batch_of()
    with torch.no_grad():
        out = teacher(batch["teacher_frames"], batch["teacher_mask"])
        representation = teacher_representation(out)
    assert representation.shape == (5, teacher.embedding_size)
    leaves = [leaf for sub in teacher.members for leaf in sub.members]
    weights = torch.cat(
        [
            out.intermediate["gate"][:, i : i + 1] * sub.intermediate["gate"]
            for i, sub in enumerate(out.members)
        ],
        1,
    )  # [B, 4], each leaf's weight in the root's mixing
    readout = torch.cat([leaf.classifier.linear.weight for leaf in leaves], 1)  # [C, 4 E]
    biases = torch.stack([leaf.classifier.linear.bias for leaf in leaves])  # [4, C]
    torch.testing.assert_close(
        representation @ readout.T + weights @ biases, out.logits, atol=1e-5, rtol=1e-5
    )


def test_a_frozen_mixture_teacher_runs_once_per_batch_without_gradient_or_training():
    torch.manual_seed(0)
    teacher = small_mod(8)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    calls = []
    teacher.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    student = small_nextvlad(24)
    model = VideoClassifier(student, C, objective=objective([teacher]), init_output_bias=False)
    model.train()
    assert not any(m.training for m in teacher.modules())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for seed in range(3):
        batch = batch_of(seed)
        loss = sum(model.objective(model(batch["frames"], batch["mask"]), batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert all(p.grad is None for p in teacher.parameters())
    assert calls == [False, False, False]  # once per batch, autograd off
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm statistics included
    assert not any(key.startswith("objective.teachers") for key in model.state_dict())


def test_the_distill_config_instantiates_with_backbones_in_place_of_its_specs(tmp_path):
    """Instantiating conf/distill/serial.yaml directly (as the bench does): ``teacher`` or
    ``teachers`` given as backbones; a spec left unbuilt is named."""
    from hydra.utils import instantiate

    from hydra_helpers import compose_config

    cfg = compose_config(tmp_path, ["distill=serial"])
    assert isinstance(
        instantiate(cfg.distill, teacher=small_nextvlad()), TeacherStudentDistillation
    )
    several = instantiate(cfg.distill, teachers=[small_nextvlad(), small_nextvlad(8)])
    assert len(several.teachers) == 2
    with pytest.raises(Exception, match="a teacher must be a backbone"):
        instantiate(cfg.distill)
