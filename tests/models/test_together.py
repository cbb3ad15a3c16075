"""Mixture members computed together: what the tree computes member by member
(``model_reference.member_by_member``: every leaf alone, by the layer's definition), to 1e-5:
every node's logits, embeddings and gate weights, every gradient, every BatchNorm statistic."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from model_reference import (
    assert_close,
    assert_same_outputs,
    assert_same_state,
    member_by_member,
)
from vidistill.distill import OnlineMixtureDistillation
from vidistill.models import FrameMeanLogistic, Mixture, NeXtVLAD, mixture_tree, place, subtree
from vidistill.models import nextvlad as nextvlad_module

NUM_CLASSES = 6
RGB, AUDIO = 24, 8
SMALL = {
    "num_classes": NUM_CLASSES,
    "clusters": 4,
    "groups": 2,
    "expansion": 1,
    "hidden_size": 16,
    "gating_reduction": 4,
    "rgb_size": RGB,
    "audio_size": AUDIO,
    "bn_momentum": 0.1,
}


def leaf(**settings) -> NeXtVLAD:
    return NeXtVLAD(**{**SMALL, **settings})


def tree(branching, make_leaf=leaf, seed: int = 0) -> Mixture:
    torch.manual_seed(seed)
    return mixture_tree(make_leaf, branching, feature_size=RGB + AUDIO, bn_momentum=0.1)


def batch(seed: int = 0):
    """frames [5, 7, 32] (zero padding, one empty video), mask [5, 7], labels [5, C]."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.arange(7) < torch.tensor([7, 3, 0, 5, 6])[:, None]
    frames = torch.randn(5, 7, RGB + AUDIO, generator=generator) * 2 * mask.unsqueeze(-1)
    labels = (torch.rand(5, NUM_CLASSES, generator=generator) < 0.4).float()
    return frames, mask, labels


def assert_training_step_matches(model: Mixture) -> None:
    """Forward (dropout on: the heads draw in the same order), the online distillation loss,
    backward: outputs, gradients and BatchNorm statistics of every node as member by member."""
    reference = copy.deepcopy(model)
    frames, mask, labels = batch()
    loss = OnlineMixtureDistillation(temperature=2.0)
    outputs = []
    for network, run in ((model, model), (reference, partial(member_by_member, reference))):
        torch.manual_seed(3)
        output = run.train()(frames, mask) if run is network else run(frames, mask)
        sum(loss(output, {"labels": labels}).values()).backward()
        outputs.append(output)
    assert_same_outputs(*outputs)
    assert_same_state(model, reference)


@pytest.mark.parametrize("branching", [[3], [4, 3], [2, 2, 2]])
def test_a_training_step_of_leaves_together_is_the_step_member_by_member(branching):
    assert_training_step_matches(tree(branching))


@pytest.fixture
def pooled_together(monkeypatch) -> list[int]:
    """The number of layers of every pool_together call, as the calls happen."""
    calls = []
    original = nextvlad_module.pool_together

    def counting(layers, *args):
        calls.append(len(layers))
        return original(layers, *args)

    monkeypatch.setattr(nextvlad_module, "pool_together", counting)
    return calls


def test_leaves_run_together_when_they_share_an_architecture(pooled_together):
    frames, mask, _ = batch()
    tree([4, 3]).eval()(frames, mask)
    assert pooled_together == [12, 12], "one call per branch (rgb, audio) for all twelve leaves"


def test_leaves_of_different_architectures_run_in_groups():
    """Leaves of two NeXtVLAD shapes and a model of another family: each shape's leaves pool
    together, the rest alone, and the tree still computes what it computes member by member.
    (The groups run one after the other, so dropout would draw in another order: off here.)"""
    shapes = [
        partial(leaf, dropout=0.0),
        partial(leaf, dropout=0.0, clusters=2),
        partial(leaf, dropout=0.0),
        partial(FrameMeanLogistic, NUM_CLASSES, RGB + AUDIO),
    ]
    makers = iter(shapes * 2)
    model = tree([2, 4], make_leaf=lambda: next(makers)())
    assert_training_step_matches(model)


def test_evaluation_and_inference_without_gradients_match():
    model = tree([4, 3]).eval()
    frames, mask, _ = batch()
    with torch.no_grad():
        assert_same_outputs(model(frames, mask), member_by_member(model, frames, mask))


def test_subtrees_and_checkpoints_are_unchanged_by_running_together():
    """State dict names are the modules' (checkpoints of before load), and a member taken out
    with ``subtree`` computes alone what it computes inside the tree."""
    model = tree([4, 3]).eval()
    names = set(model.state_dict())
    assert {"members.3.members.2.video.expand.weight", "members.0.gate_bn.running_var"} <= names
    assert "members.1.members.0.audio.assign_bn.running_mean" in names
    fresh = tree([4, 3], seed=1).eval()
    fresh.load_state_dict(model.state_dict())
    frames, mask, _ = batch()
    output = fresh(frames, mask)
    assert_same_outputs(output, model(frames, mask))
    for path in ([2], [1, 2], [3, 0]):
        node = output
        for index in path:
            node = node.members[index]
        assert_same_outputs(subtree(fresh, path)(frames, mask), node)


def test_placed_mixtures_run_their_members_one_by_one(pooled_together):
    """Under model parallelism each placed mixture runs its members itself (each unplaced
    sub-mixture still runs its own leaves together)."""
    model = tree([4, 3]).eval()
    frames, mask, _ = batch()
    expected = model(frames, mask)
    pooled_together.clear()
    assert_same_outputs(place(model, ["cpu"] * 4)(frames, mask), expected)
    assert pooled_together == [3, 3] * 4


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_a_traced_tree_keeps_batch_and_frames_free():
    """Export traces the whole tree: the graph serves other batch sizes and frame counts."""
    model = Logits(tree([2, 3])).eval()
    frames, mask, _ = batch()
    traced = torch.jit.trace(model, (frames, mask), check_trace=False)
    other = torch.randn(3, 11, RGB + AUDIO)
    other_mask = torch.arange(11) < torch.tensor([11, 1, 4])[:, None]
    assert_close(traced(other, other_mask), model(other, other_mask))


class Logits(torch.nn.Module):
    """A backbone returning only its logits, as the export wrapper does."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(frames, mask).logits


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_a_tree_exported_to_onnx_keeps_batch_and_frames_free(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = Logits(tree([2, 3])).eval()
    frames, mask, _ = batch()
    axes = {0: "batch", 1: "time"}
    torch.onnx.export(
        model,
        (frames, mask),
        str(tmp_path / "tree.onnx"),
        input_names=["frames", "mask"],
        dynamic_axes={"frames": axes, "mask": axes},
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(str(tmp_path / "tree.onnx"))
    other = torch.randn(3, 11, RGB + AUDIO)
    other_mask = torch.arange(11) < torch.tensor([11, 1, 4])[:, None]
    got = session.run(None, {"frames": other.numpy(), "mask": other_mask.numpy()})[0]
    assert_close(torch.from_numpy(got), model(other, other_mask))
