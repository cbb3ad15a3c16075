"""VideoClassifier pieces that do not need a training run."""

from __future__ import annotations

from functools import partial

import torch

from vidistill.lit import VideoClassifier
from vidistill.models import FrameMeanLogistic, build_backbone, mixture_tree


def test_per_tensor_clipping_replaces_global_clipping():
    model = VideoClassifier(FrameMeanLogistic(4), num_classes=4, clip_grad_norm_per_tensor=1.0)
    weight, bias = model.backbone.classifier.linear.weight, model.backbone.classifier.linear.bias
    weight.grad = torch.full_like(weight, 3.0)  # norm far above 1
    bias.grad = torch.full_like(bias, 0.1)  # norm 0.2, below 1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # a tiny global limit would scale everything down; per-tensor clipping ignores it
    model.configure_gradient_clipping(optimizer, gradient_clip_val=1e-6)
    assert abs(torch.linalg.vector_norm(weight.grad).item() - 1.0) < 1e-5
    assert torch.allclose(bias.grad, torch.full_like(bias, 0.1))


def test_classifier_weight_decay_applies_to_the_classifier_only():
    backbone = build_backbone("nextvlad", 4, clusters=4, hidden_size=16)
    model = VideoClassifier(backbone, num_classes=4, classifier_weight_decay=1e-5)
    rest, head = model.parameter_groups()
    assert {id(p) for p in head["params"]} == {id(p) for p in backbone.classifier.parameters()}
    assert head["weight_decay"] == 1e-5 and "weight_decay" not in rest
    assert len(rest["params"]) + len(head["params"]) == len(list(model.parameters()))


def test_classifier_weight_decay_reaches_every_member_of_a_mixture():
    tree = mixture_tree(partial(build_backbone, "nextvlad", 4, clusters=4, hidden_size=16), [2, 2])
    model = VideoClassifier(tree, num_classes=4, classifier_weight_decay=1e-5)
    rest, head = model.parameter_groups()
    leaves = [leaf for mixture in tree.members for leaf in mixture.members]
    expected = {id(p) for leaf in leaves for p in leaf.classifier.parameters()}
    assert {id(p) for p in head["params"]} == expected and len(leaves) == 4


def test_logged_l2_is_the_penalty_whose_gradient_adam_adds():
    """train/l2 = decay / 2 * sum of the classifiers' squared weights: its gradient is the
    decay * w that Adam's weight_decay adds to theirs."""
    backbone = build_backbone("nextvlad", 4, clusters=4, hidden_size=16)
    model = VideoClassifier(backbone, num_classes=4, classifier_weight_decay=1e-3)
    penalty = 0.5 * 1e-3 * sum(p.pow(2).sum() for p in backbone.classifier.parameters())
    assert torch.allclose(model._classifier_penalty(), penalty)
    logged = {}
    model.log = lambda name, value, **kwargs: logged.update({name: value})
    model.log_dict = lambda values, **kwargs: logged.update(values)
    batch = {
        "frames": torch.rand(2, 5, 1152),
        "mask": torch.ones(2, 5, dtype=torch.bool),
        "labels": torch.zeros(2, 4),
        "ids": ["a", "b"],
    }
    model.training_step(batch, 0)
    assert torch.allclose(logged["train/l2"], penalty)
