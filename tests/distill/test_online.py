"""Online mixture distillation: KL terms by hand, T = 0, stop-gradient, trees of any depth."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch

from hydra_helpers import compose_config
from vidistill.distill import OnlineMixtureDistillation, multilabel_bce, softmax_kl
from vidistill.models import BackboneOutput, build_backbone, mixture_tree
from vidistill.models.mixture import subtree
from vidistill.runs import evaluate, train


def node(logits, members=()):
    logits = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    return BackboneOutput(logits=logits, embedding=logits, members=list(members))


def kl_by_hand(parent: list[float], child: list[float], t: float) -> float:
    p = np.exp(np.array(parent) / t) / np.exp(np.array(parent) / t).sum()
    q = np.exp(np.array(child) / t) / np.exp(np.array(child) / t).sum()
    return float((p * np.log(p / q)).sum())


def test_softmax_kl_equals_the_formula():
    parent, child = [[2.0, -1.0, 0.5]], [[0.0, 1.0, -0.5]]
    got = softmax_kl(torch.tensor(parent), torch.tensor(child), 2.0)
    assert got.item() == pytest.approx(kl_by_hand(parent[0], child[0], 2.0), rel=1e-6)
    assert softmax_kl(torch.tensor(parent), torch.tensor(parent), 3.0).item() == pytest.approx(0)


def test_two_level_tree_terms_by_hand():
    leaves = [node([[1.0, 0.0, -1.0]]), node([[0.0, 2.0, 0.0]]), node([[-1.0, 0.5, 3.0]])]
    middle = node([[0.5, 1.0, 0.0]], leaves[:2])
    root = node([[1.0, 1.0, 1.0]], [middle, leaves[2]])
    batch = {"labels": torch.tensor([[1.0, 0.0, 1.0]])}
    t = 4.0
    terms = OnlineMixtureDistillation(temperature=t)(root, batch)
    assert set(terms) == {"bce/level0", "bce/level1", "bce/level2", "kl/level1", "kl/level2"}
    bce = lambda n: multilabel_bce(n.logits, batch["labels"]).item()  # noqa: E731
    assert terms["bce/level1"].item() == pytest.approx(bce(middle) + bce(leaves[2]))
    level1 = kl_by_hand([1, 1, 1], [0.5, 1, 0], t) + kl_by_hand([1, 1, 1], [-1, 0.5, 3], t)
    level2 = kl_by_hand([0.5, 1, 0], [1, 0, -1], t) + kl_by_hand([0.5, 1, 0], [0, 2, 0], t)
    assert terms["kl/level1"].item() == pytest.approx(t**2 * level1, rel=1e-5)
    assert terms["kl/level2"].item() == pytest.approx(t**2 * level2, rel=1e-5)
    weighted = OnlineMixtureDistillation(temperature=t, weight=0.5)(root, batch)
    assert weighted["kl/level1"].item() == pytest.approx(0.5 * level1, rel=1e-5)


def test_temperature_zero_is_pure_bce_on_every_node():
    leaves = [node([[1.0, -2.0]]), node([[0.3, 0.1]])]
    root = node([[0.7, 0.2]], leaves)
    batch = {"labels": torch.tensor([[0.0, 1.0]])}
    terms = OnlineMixtureDistillation(temperature=0)(root, batch)
    assert set(terms) == {"bce/level0", "bce/level1"}
    expected = sum(multilabel_bce(n.logits, batch["labels"]) for n in (root, *leaves))
    assert sum(terms.values()).item() == pytest.approx(expected.item())


def test_stop_gradient_keeps_kl_out_of_the_parent():
    for stop, parent_moves in ((True, False), (False, True)):
        child = node([[1.0, -1.0, 0.0]])
        root = node([[0.0, 0.5, 2.0]], [child])
        terms = OnlineMixtureDistillation(temperature=2.0, stop_gradient=stop)(
            root, {"labels": torch.zeros(1, 3)}
        )
        terms["kl/level1"].backward()
        assert child.logits.grad.abs().sum() > 0
        assert (root.logits.grad is not None and root.logits.grad.abs().sum() > 0) == parent_moves


def test_negative_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature T must be >= 0"):
        OnlineMixtureDistillation(temperature=-1)


def test_mixture_mixes_member_logits_with_gate_weights():
    model = mixture_tree(
        partial(build_backbone, "nextvlad", 5, clusters=4, hidden_size=16), [3]
    ).eval()
    frames, mask = torch.randn(2, 6, 1152), torch.ones(2, 6, dtype=torch.bool)
    out = model(frames, mask)
    gate = out.intermediate["gate"]
    torch.testing.assert_close(gate.sum(1), torch.ones(2))
    members = torch.stack([m.logits for m in out.members], 1)
    torch.testing.assert_close(out.logits, (gate.unsqueeze(-1) * members).sum(1))


@pytest.mark.slow
def test_depth_three_tree_trains_with_online_distillation(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            "model=mix",
            "model.backbone.branching=[2,2,2]",
            "model.backbone.leaf.clusters=4",
            "model.backbone.leaf.hidden_size=16",
            "distill=online",
            "T=20",
            "trainer.max_epochs=1",
            "trainer.log_every_n_steps=1",
            "test=false",
        ],
    )
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert 0.0 < metrics["val/gap"] <= 1.0
    header = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for term in ("train/bce/level0", "train/bce/level3", "train/kl/level1", "train/kl/level3"):
        assert term in header, term
    # one leaf of the trained tree, evaluated alone from the tree's checkpoint
    checkpoint = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    whole = evaluate(compose_config(tmp_path, [f"ckpt={checkpoint}"], "eval", run="whole"))
    leaf = evaluate(
        compose_config(tmp_path, [f"ckpt={checkpoint}", "member=[1,0,1]"], "eval", run="leaf")
    )
    assert 0.0 < leaf["test/gap"] <= 1.0 and leaf["test/gap"] != whole["test/gap"]
    # member=0 and member=0.0 (Hydra parses them as an int and a float; 0 is falsy) are [0].
    first = [
        evaluate(compose_config(tmp_path, [f"ckpt={checkpoint}", f"member={m}"], "eval", run=r))
        for m, r in (("[0]", "list"), ("0", "int"), ("0.0", "float"))
    ]
    assert first[0]["test/gap"] != whole["test/gap"]
    # The whole tree's evaluation also scores each root member alone, as member=[i] does.
    for metric in ("gap", "map"):
        assert whole[f"test/member0/{metric}"] == pytest.approx(
            first[0][f"test/{metric}"], abs=1e-6
        )
    assert "test/member1/gap" in whole and not any("member" in key for key in leaf)
    assert first[1] == first[0] and first[2] == first[0]
    with pytest.raises(ValueError, match="index 2 is out of range for a mixture of 2 at"):
        evaluate(compose_config(tmp_path, [f"ckpt={checkpoint}", "member=[2]"], "eval", run="x"))


def test_subtree_is_the_member_used_alone():
    tree = mixture_tree(
        partial(build_backbone, "nextvlad", 5, clusters=4, hidden_size=16), [2, 3]
    ).eval()
    frames, mask = torch.randn(2, 6, 1152), torch.ones(2, 6, dtype=torch.bool)
    out = tree(frames, mask)
    torch.testing.assert_close(
        subtree(tree, [1, 2])(frames, mask).logits, out.members[1].members[2].logits
    )
    assert subtree(tree, []) is tree and subtree(tree, None) is tree
    assert subtree(tree, 1) is subtree(tree, [1]) is subtree(tree, 1.0) is subtree(tree, "1")
    shape = r"\(the model is a mixture of 2 mixtures of 3 NeXtVLADs\)"
    with pytest.raises(ValueError, match="is a NeXtVLAD, not a mixture " + shape):
        subtree(tree, [0, 0, 0])
    with pytest.raises(
        ValueError, match="index 3 is out of range for a mixture of 3 at .1. " + shape
    ):
        subtree(tree, [1, 3])
    for bad in (0.5, "first", [0, 1.5], True):
        with pytest.raises(ValueError, match="a member path is a list of member indices"):
            subtree(tree, bad)
