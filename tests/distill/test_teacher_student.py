"""Teacher-student distillation: loss terms by hand, the frozen teacher, parallel gradients,
shared classifiers, loss weights and their schedule."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from vidistill.distill import (
    ClassificationLoss,
    IntermediateRepresentationLoss,
    PredictionLoss,
    RepresentationLoss,
    TeacherStudentDistillation,
    multilabel_bce,
)
from vidistill.lit import VideoClassifier
from vidistill.lit.callbacks import LossWeightSchedule
from vidistill.models import BackboneOutput, build_backbone

C = 6


def small_nextvlad(hidden_size: int = 16):
    return build_backbone("nextvlad", C, clusters=4, hidden_size=hidden_size)


def losses():
    return {
        "rep": RepresentationLoss(),
        "rep_blocks": IntermediateRepresentationLoss(),
        "pred": PredictionLoss(),
        "ce": ClassificationLoss(),
    }


def strategy(teacher, parallel=False, classifier="separate", **weights):
    weights = weights or {"rep": 1.0, "pred": 1.0, "ce": 1.0}
    return TeacherStudentDistillation(teacher, losses(), weights, parallel, classifier)


def make_batch(seed: int = 0, b: int = 4, t: int = 12, k: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed)
    teacher_frames = torch.rand(b, t, 1152, generator=g) * 4 - 2
    picks = torch.linspace(0, t - 1, k).round().long()
    labels = (torch.rand(b, C, generator=g) < 0.3).float()
    return {
        "frames": teacher_frames[:, picks].clone(),
        "mask": torch.ones(b, k, dtype=torch.bool),
        "num_frames": torch.full((b,), k),
        "teacher_frames": teacher_frames,
        "teacher_mask": torch.ones(b, t, dtype=torch.bool),
        "teacher_num_frames": torch.full((b,), t),
        "labels": labels,
        "ids": [str(i) for i in range(b)],
    }


def out(logits, embedding=None, **intermediate):
    logits = torch.tensor(logits)
    embedding = logits if embedding is None else torch.tensor(embedding)
    return BackboneOutput(logits=logits, embedding=embedding, intermediate=intermediate)


# -- terms by hand ---------------------------------------------------------------------------


def _sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))


def test_prediction_loss_by_hand():
    z_t = [[2.0, -1.0, 0.5], [-3.0, 0.0, 4.0]]
    z_s = [[0.0, 1.0, -0.5], [1.0, -2.0, 3.0]]
    teacher, student = out(z_t), out(z_s)
    temperature = 2.0
    # Bernoulli KL per class, summed over classes, averaged over the 2 videos.
    p, q = _sigmoid(np.array(z_t) / temperature), _sigmoid(np.array(z_s) / temperature)
    bernoulli = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    got = PredictionLoss(temperature=temperature)(student, teacher, {})
    assert PredictionLoss().distance == "bernoulli_kl"
    assert got.item() == pytest.approx(float(bernoulli.sum(1).mean()), rel=1e-6)
    # Squared error of the probabilities.
    mse = PredictionLoss("mse", temperature)(student, teacher, {})
    assert mse.item() == pytest.approx(float(((p - q) ** 2).sum(1).mean()), rel=1e-6)
    # The softmax KL over classes, kept under its own name.
    soft_p = np.exp(np.array(z_t) / temperature)
    soft_p /= soft_p.sum(1, keepdims=True)
    soft_q = np.exp(np.array(z_s) / temperature)
    soft_q /= soft_q.sum(1, keepdims=True)
    softmax = PredictionLoss("softmax_kl", temperature)(student, teacher, {})
    expected = (soft_p * np.log(soft_p / soft_q)).sum(1).mean()
    assert softmax.item() == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="one of bernoulli_kl, mse, softmax_kl, got 'l1'"):
        PredictionLoss("l1")
    with pytest.raises(ValueError, match="now named softmax_kl"):
        PredictionLoss("kl")


def test_prediction_loss_sees_a_per_video_logit_shift():
    """Student logits = teacher logits + 3: the same class ranking, every probability higher.
    The softmax KL cannot tell; the probability distances can."""
    torch.manual_seed(0)
    z_t = torch.randn(8, 20) * 2
    teacher, student = out(z_t.tolist()), out((z_t + 3.0).tolist())
    assert PredictionLoss("softmax_kl")(student, teacher, {}).item() < 1e-6
    assert PredictionLoss("bernoulli_kl")(student, teacher, {}).item() > 1.0
    assert PredictionLoss("mse")(student, teacher, {}).item() > 0.5
    assert PredictionLoss("bernoulli_kl")(teacher, teacher, {}).item() == pytest.approx(0, abs=1e-6)


def test_bernoulli_kl_is_finite_and_exact_for_saturated_logits():
    """Computed from logits, it stays finite where the probabilities round to 0 or 1 in
    float32, and keeps its gradient."""
    z_t = torch.tensor([[40.0, -40.0, 0.0]])
    z_s = torch.tensor([[-40.0, 40.0, 0.0]], requires_grad=True)
    student = BackboneOutput(logits=z_s, embedding=z_s, intermediate={})
    loss = PredictionLoss()(student, out(z_t.tolist()), {})
    # Each saturated class contributes -log sigmoid(-40) = 40 nats; the third one nothing
    # (float32 probabilities would give log(1 / 0) instead).
    assert loss.item() == pytest.approx(80.0, rel=1e-4)
    loss.backward()
    assert torch.isfinite(z_s.grad).all() and z_s.grad.abs()[0, :2].min() > 0.9


def test_representation_loss_is_summed_over_dims_and_averaged_over_the_batch():
    student = out([[0.0]], embedding=[[1.0, 2.0], [0.0, 0.0]])
    teacher = out([[0.0]], embedding=[[0.0, 0.0], [3.0, 0.0]])
    loss = RepresentationLoss(projection=False)
    loss.attach(small_nextvlad(16), small_nextvlad(16))
    assert loss(student, teacher, {}).item() == pytest.approx((1 + 4 + 9) / 2)


def test_representation_projection_only_when_sizes_differ():
    same, other = RepresentationLoss(), RepresentationLoss()
    same.attach(small_nextvlad(16), small_nextvlad(16))
    other.attach(small_nextvlad(8), small_nextvlad(16))
    assert isinstance(same.projections[0], torch.nn.Identity)
    assert isinstance(other.projections[0], torch.nn.Linear)
    assert other.projections[0].weight.shape == (16, 8)
    with pytest.raises(ValueError, match="8 \\(student\\) and 16 \\(teacher\\)"):
        RepresentationLoss(projection=False).attach(small_nextvlad(8), small_nextvlad(16))


def test_intermediate_loss_matches_each_student_block_with_its_teacher_group():
    teacher_blocks = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    student_blocks = torch.zeros(2, 2, 3)
    student, teacher = out([[0.0]]), out([[0.0]])
    student.intermediate["blocks"], teacher.intermediate["blocks"] = student_blocks, teacher_blocks
    last = IntermediateRepresentationLoss(reduce="last")(student, teacher, {})
    mean = IntermediateRepresentationLoss(reduce="mean")(student, teacher, {})
    assert last.item() == pytest.approx(teacher_blocks[:, [1, 3]].square().sum().item() / 2)
    groups = teacher_blocks.view(2, 2, 2, 3).mean(2)
    assert mean.item() == pytest.approx(groups.square().sum().item() / 2)
    with pytest.raises(ValueError, match="multiple of the student's"):
        student.intermediate["blocks"] = torch.zeros(2, 3, 3)
        IntermediateRepresentationLoss()(student, teacher, {})
    with pytest.raises(ValueError, match="not produced by the student and teacher"):
        IntermediateRepresentationLoss()(out([[0.0]]), out([[0.0]]), {})


def test_hrnn_blocks_feed_the_intermediate_loss():
    teacher, student = (
        build_backbone("hrnn", C, num_blocks=4),
        build_backbone("hrnn", C, num_blocks=2),
    )
    batch = make_batch(k=6)
    term = IntermediateRepresentationLoss()
    value = term(
        student(batch["frames"], batch["mask"]),
        teacher(batch["teacher_frames"], batch["teacher_mask"]),
        batch,
    )
    assert value.item() > 0 and value.requires_grad


# -- the strategy ---------------------------------------------------------------------------


def test_serial_terms_are_the_weighted_terms_with_a_frozen_teacher():
    torch.manual_seed(0)
    teacher, student = small_nextvlad(), small_nextvlad()
    objective = strategy(teacher, rep=0.5, pred=2.0, ce=1.0, rep_blocks=0.0)
    objective.attach(student)
    batch = make_batch()
    student.train()
    s = student(batch["frames"], batch["mask"])
    terms = objective(s, batch)
    assert set(terms) == {"rep", "pred", "ce"}  # rep_blocks has weight 0: not computed
    teacher.eval()
    with torch.no_grad():
        t = teacher(batch["teacher_frames"], batch["teacher_mask"])
    torch.testing.assert_close(terms["ce"], multilabel_bce(s.logits, batch["labels"]))
    torch.testing.assert_close(
        terms["rep"], 0.5 * (s.embedding - t.embedding).square().sum(1).mean()
    )
    torch.testing.assert_close(terms["pred"], 2.0 * PredictionLoss()(s, t, batch))


def test_unknown_or_negative_weights_and_missing_teacher_are_refused():
    with pytest.raises(ValueError, match="unknown loss term\\(s\\) rpe .* rep, rep_blocks, pred"):
        strategy(small_nextvlad(), rpe=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        strategy(small_nextvlad(), ce=-1.0)
    with pytest.raises(ValueError, match="serial distillation needs a teacher"):
        strategy(None)
    with pytest.raises(ValueError, match="classifier must be one of separate, shared"):
        strategy(small_nextvlad(), classifier="tied")
    objective = strategy(small_nextvlad())
    batch = make_batch()
    del batch["teacher_frames"]
    student = small_nextvlad()
    with pytest.raises(KeyError, match="data.teacher_sampler"):
        objective(student(batch["frames"], batch["mask"]), batch)


def test_frozen_teacher_stays_in_eval_mode_and_out_of_the_state_dict():
    teacher = small_nextvlad()
    reference = {k: v.clone() for k, v in teacher.state_dict().items()}
    model = VideoClassifier(small_nextvlad(), C, objective=strategy(teacher))
    model.train()
    assert not model.objective.teachers[0].training and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not any(key.startswith("objective.teacher") for key in model.state_dict())
    saved = model.state_dict()
    fresh_teacher = small_nextvlad()
    own = {k: v.clone() for k, v in fresh_teacher.state_dict().items()}
    fresh = VideoClassifier(small_nextvlad(), C, objective=strategy(fresh_teacher))
    fresh.load_state_dict(saved, strict=True)  # the teacher keeps its own weights
    for key, value in fresh_teacher.state_dict().items():
        assert torch.equal(value, own[key]), key
    assert torch.equal(
        fresh.backbone.classifier.linear.weight, model.backbone.classifier.linear.weight
    )
    trainable = {id(p) for group in model.parameter_groups() for p in group["params"]}
    assert not trainable & {id(p) for p in teacher.parameters()}
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_frozen_teacher_weights_and_statistics_do_not_change_over_a_lightning_run():
    """A real fit with validation in between (after which Lightning calls model.train()): the
    teacher's weights and BatchNorm statistics are exactly those it started with."""
    torch.manual_seed(0)
    teacher = small_nextvlad()
    teacher.eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    model = VideoClassifier(
        small_nextvlad(), C, objective=strategy(teacher), init_output_bias=False
    )
    student_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    train = [make_batch(seed) for seed in range(4)]
    val = [{k: v for k, v in make_batch(9).items() if not k.startswith("teacher")}]
    trainer = pl.Trainer(
        max_epochs=2,
        val_check_interval=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(train, batch_size=None), DataLoader(val, batch_size=None))
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    changed = [
        k for k, v in model.backbone.state_dict().items() if not torch.equal(v, student_before[k])
    ]
    assert changed  # the student did train


@pytest.mark.parametrize("classifier", ["separate", "shared"])
def test_parallel_teacher_gradients_come_from_its_own_ce_only(classifier):
    torch.manual_seed(0)
    teacher, student = small_nextvlad(), small_nextvlad()
    objective = strategy(teacher, parallel=True, classifier=classifier)
    objective.attach(student)
    if classifier == "shared":
        assert student.classifier is teacher.classifier
    teacher.eval(), student.eval()  # dropout off, so the two passes below see the same network
    batch = make_batch()

    def teacher_grads(loss_of_terms):
        for p in [*teacher.parameters(), *student.parameters()]:
            p.grad = None
        terms = objective(student(batch["frames"], batch["mask"]), batch)
        loss_of_terms(terms).backward()
        return {n: p.grad.clone() for n, p in teacher.named_parameters() if p.grad is not None}

    everything = teacher_grads(lambda terms: sum(terms.values()))
    own_ce = teacher_grads(lambda terms: terms["teacher/ce"])
    shared = {n for n, _ in teacher.named_parameters() if n.startswith("classifier.")}
    assert set(own_ce) - shared == set(everything) - shared
    for name in set(own_ce) - shared:
        torch.testing.assert_close(everything[name], own_ce[name], rtol=0, atol=0)
    if classifier == "separate":
        assert set(everything) == set(own_ce)


def test_serial_shared_classifier_starts_as_a_copy_of_the_teachers():
    teacher, student = small_nextvlad(), small_nextvlad()
    objective = strategy(teacher, classifier="shared")
    model = VideoClassifier(student, C, objective=objective)
    assert student.classifier is not teacher.classifier
    for key, value in teacher.classifier.state_dict().items():
        assert torch.equal(student.classifier.state_dict()[key], value)
    # the copied classifier keeps the teacher's biases when outputs are initialized
    objective.initialize_output_bias(student, torch.full((C,), -3.0))
    bias = student.classifier.state_dict()
    assert all(torch.equal(bias[k], v) for k, v in teacher.classifier.state_dict().items())
    assert model.objective is objective
    with pytest.raises(ValueError, match="classifier=shared needs classifiers of one type"):
        strategy(small_nextvlad(16), classifier="shared").attach(small_nextvlad(8))


def test_checkpoint_of_a_student_loads_without_the_objective(tmp_path):
    """The objective's state (a parallel teacher, a projection) is training-only."""
    from vidistill.lit.checkpoints import CHECKPOINT_KEY, load_model

    objective = strategy(small_nextvlad(16), parallel=True)
    model = VideoClassifier(small_nextvlad(8), C, objective=objective)
    assert any(key.startswith("objective.terms.rep.projections.0") for key in model.state_dict())
    config = {
        "_target_": "vidistill.lit.VideoClassifier",
        "num_classes": C,
        "backbone": {
            "_target_": "vidistill.models.NeXtVLAD",
            "num_classes": C,
            "clusters": 4,
            "hidden_size": 8,
        },
    }
    path = tmp_path / "student.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            CHECKPOINT_KEY: {"model": config, "data": {}, "version": 1},
        },
        path,
    )
    loaded, _ = load_model(path)
    assert not any(key.startswith("objective") for key in loaded.state_dict())
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value)


def test_objective_state_saved_under_the_former_names_still_loads():
    """Checkpoints written before the terms were renamed (``objective.losses.*``) and before
    several teachers (one ``rep.projection``) resume."""
    saved = VideoClassifier(small_nextvlad(8), C, objective=strategy(small_nextvlad(16)))
    legacy = {
        key.replace("objective.terms.", "objective.losses.").replace(
            ".projections.0.", ".projection."
        ): value
        for key, value in saved.state_dict().items()
    }
    assert any(key.startswith("objective.losses.rep.projection.") for key in legacy)
    restored = VideoClassifier(small_nextvlad(8), C, objective=strategy(small_nextvlad(16)))
    restored.load_state_dict(legacy)
    projection = "objective.terms.rep.projections.0.weight"
    assert torch.equal(restored.state_dict()[projection], saved.state_dict()[projection])


# -- the two-stage schedule --------------------------------------------------------------------


def test_loss_weight_schedule_by_epoch():
    schedule = LossWeightSchedule(
        [{"epochs": 2, "weights": {"rep": 1.0}}, {"epochs": None, "weights": {"ce": 1.0}}]
    )
    assert [schedule.weights_at(e) for e in range(4)] == [{"rep": 1.0}] * 2 + [{"ce": 1.0}] * 2
    objective = strategy(small_nextvlad())
    model = VideoClassifier(small_nextvlad(), C, objective=objective)

    class Epoch:
        current_epoch = 2

    schedule.on_fit_start(None, model)
    schedule.on_train_epoch_start(Epoch, model)
    assert objective.weights == {"rep": 0.0, "pred": 0.0, "ce": 1.0}
    with pytest.raises(ValueError, match="unknown loss term"):
        LossWeightSchedule([{"epochs": None, "weights": {"rpe": 1.0}}]).on_fit_start(None, model)
    with pytest.raises(ValueError, match="unless it is the last, 'epochs'"):
        LossWeightSchedule([{"weights": {"rep": 1.0}}, {"weights": {"ce": 1.0}}])
    with pytest.raises(TypeError, match="LabelLoss has none"):
        LossWeightSchedule([{"weights": {"ce": 1.0}}]).on_fit_start(
            None, VideoClassifier(small_nextvlad(), C)
        )
